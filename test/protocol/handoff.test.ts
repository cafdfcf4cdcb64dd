/**
 * PROTOCOL.md §2–§3 (and ARCHITECTURE-NOTES decision 5): the replay→live handoff has no
 * gap and no duplicate. Publishers publish continuously while subscribers join with
 * `after: 0` at different moments; the actor cache is tiny so catch-up reads the engine,
 * and maxInFlight is small so catch-up and live delivery pause and resume.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import type { TestClient } from '../helpers/ws-client.ts';
import {
  assertContiguous,
  autoAck,
  closeAll,
  hello,
  history,
  newSession,
  publish,
  publisher,
  seqs,
  sleep,
  SUBPROTOCOLS,
  transcriptPub,
  waitSeq,
  type Sub,
} from './support.ts';

const TOTAL = 300;
const BURST = 10;
const MAX_IN_FLIGHT = 16;

for (const cache of [4, 64]) {
  describe(`§3 replay→live handoff under concurrent publishing (ACTOR_CACHE_EVENTS=${cache})`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startTestGateway({
        ACTOR_CACHE_EVENTS: String(cache),
        REPLAY_BATCH: '7',
        MAX_IN_FLIGHT: String(MAX_IN_FLIGHT),
      });
    });
    afterEach(closeAll);
    after(() => gw.stop());

    for (const sub of SUBPROTOCOLS) {
      it(`§3 handoff [${sub}]: subscribers joining with after: 0 mid-stream each get 1..N exactly once, in order, replayed once`, async () => {
        const s = await newSession(gw);
        const pubs = [await publisher(gw, s, 'json'), await publisher(gw, s, 'msgpack')];
        const joinAfterBursts = new Set([0, 2, 5, 9, 14, 20, 27, 29]);
        const joiners: Array<Promise<TestClient>> = [];
        let n = 0;
        for (let burst = 0; burst * BURST < TOTAL; burst++) {
          if (joinAfterBursts.has(burst)) {
            const subOf: Sub = joiners.length % 2 === 0 ? sub : SUBPROTOCOLS.find((x) => x !== sub)!;
            const mode = joiners.length % 3 === 2 ? 'lazy' : 'eager';
            // Not awaited: the hello races the bursts that follow.
            joiners.push(
              hello(gw, subOf, { sessionId: s.sessionId, token: s.ownerToken, after: 0 }).then(
                ({ client }) => {
                  autoAck(client, mode, MAX_IN_FLIGHT);
                  return client;
                },
              ),
            );
          }
          const answers = await Promise.all(
            Array.from({ length: BURST }, (_, i) =>
              publish(pubs[(burst + i) % 2]!, transcriptPub(`b${burst}-${i}`)),
            ),
          );
          for (const a of answers) assert.equal(a.op, 'puback', JSON.stringify(a));
          n += BURST;
          if (burst % 3 === 0) await sleep(1);
        }
        const head = n + 1;
        const clients = await Promise.all(joiners);
        const stored = await history(gw, s);
        assert.equal(stored.length, head);
        assertContiguous(
          stored.map((e) => e.seq),
          0,
          'stored seqs',
        );
        for (const client of clients) {
          await waitSeq(client, head, 10_000);
          await sleep(20);
          const got = seqs(client);
          assertContiguous(got, 0, `subscriber ${client.sub}`);
          assert.equal(got.length, head, 'every event exactly once');
          const replayed = client.frames.filter((f) => f.op === 'replayed');
          assert.equal(replayed.length, 1, 'replayed is sent exactly once');
          const delivery = client.frames.filter((f) => f.op === 'ev' || f.op === 'replayed');
          const at = delivery.findIndex((f) => f.op === 'replayed');
          const rseq = replayed[0]!.seq as number;
          assert.ok(rseq >= 1 && rseq <= head);
          assert.equal(delivery[at - 1]?.seq, rseq, 'replayed names the last seq delivered by the catch-up');
          // the whole envelope, in either codec, whichever frame of it the node made first
          assert.deepEqual(
            client.frames.filter((f) => f.op === 'ev').map((f) => f.event),
            stored.map((e) => e.event),
            'each seq carries the event stored at that seq',
          );
          assert.equal(client.closeInfo, undefined);
        }
      });
    }
  });
}
