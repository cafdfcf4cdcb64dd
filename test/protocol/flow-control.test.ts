/**
 * PROTOCOL.md §4 flow control: never more than `maxInFlight` events delivered and not
 * acknowledged on one connection; acks (cumulative) open the window again. Run with the
 * default actor cache (live events from memory) and with a 4-event cache (catch-up from
 * the engine), over both subprotocols.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import type { TestClient } from '../helpers/ws-client.ts';
import {
  assertContiguous,
  closeAll,
  hello,
  newSession,
  publisher,
  publishMany,
  roundTrip,
  seqs,
  sleep,
  SUBPROTOCOLS,
  waitFor,
  waitSeq,
} from './support.ts';

const MAX_IN_FLIGHT = 5;

/**
 * Watches a client's incoming `ev` frames against the acks it sent: the gateway can only
 * have seen acks we sent, so received − acked-sent > maxInFlight is a violation.
 */
function inFlightMonitor(
  client: TestClient,
  after: number,
): { ack(seq: number): void; maxSeen: () => number } {
  let acked = after;
  let maxSeen = 0;
  client.ws.on('message', () => {
    const f = client.frames.at(-1);
    if (f?.op === 'ev') maxSeen = Math.max(maxSeen, (f.seq as number) - acked);
  });
  return {
    ack(seq: number) {
      acked = Math.max(acked, seq);
      client.send({ op: 'ack', seq });
    },
    maxSeen: () => maxSeen,
  };
}

for (const cache of [1024, 4]) {
  describe(`§4 flow control (ACTOR_CACHE_EVENTS=${cache})`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startTestGateway({
        MAX_IN_FLIGHT: String(MAX_IN_FLIGHT),
        ACTOR_CACHE_EVENTS: String(cache),
        REPLAY_BATCH: '3',
      });
    });
    afterEach(closeAll);
    after(() => gw.stop());

    for (const sub of SUBPROTOCOLS) {
      it(`§4 flow control [${sub}]: a live subscriber that does not ack gets exactly maxInFlight events, then the next ones as it acks`, async () => {
        const s = await newSession(gw);
        const { client, welcome } = await hello(gw, sub, { sessionId: s.sessionId, token: s.ownerToken });
        assert.equal(welcome.maxInFlight, MAX_IN_FLIGHT);
        assert.equal(welcome.after, 1);
        const mon = inFlightMonitor(client, 1);
        // The publisher does not ack either: its own window fills, publishing goes on.
        const pub = await publisher(gw, s, sub);
        const published = await publishMany(pub, 20); // seqs 2..21
        assert.deepEqual(
          published,
          Array.from({ length: 20 }, (_, i) => i + 2),
        );

        await waitSeq(client, 6);
        await roundTrip(client);
        await sleep(30);
        assert.deepEqual(seqs(client), [2, 3, 4, 5, 6], 'exactly maxInFlight events before any ack');

        mon.ack(6); // cumulative: all five at once
        await waitSeq(client, 11);
        await sleep(30);
        await roundTrip(client);
        assert.deepEqual(
          seqs(client),
          [2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
          'the next maxInFlight after acking them',
        );

        mon.ack(8); // a partial ack opens the window by two
        await waitSeq(client, 13);
        await sleep(30);
        await roundTrip(client);
        assert.deepEqual(seqs(client).slice(-3), [11, 12, 13]);
        assert.equal(seqs(client).length, 12);

        // Ack one by one to the end.
        for (let seq = 9; seq <= 21; seq++) {
          await waitSeq(client, Math.min(seq, 21));
          mon.ack(seq);
        }
        await waitSeq(client, 21);
        await roundTrip(client);
        assertContiguous(seqs(client), 1);
        assert.equal(seqs(client).at(-1), 21);
        assert.ok(mon.maxSeen() <= MAX_IN_FLIGHT, `in flight reached ${mon.maxSeen()}`);
      });

      it(`§4 flow control [${sub}]: catch-up (after: 0) is paused at maxInFlight too, and replayed comes once it is caught up`, async () => {
        const s = await newSession(gw);
        const pub = await publisher(gw, s, sub);
        await publishMany(pub, 20); // head 21
        const { client } = await hello(gw, sub, { sessionId: s.sessionId, token: s.ownerToken, after: 0 });
        const mon = inFlightMonitor(client, 0);
        await waitSeq(client, 5);
        await sleep(30);
        await roundTrip(client);
        assert.deepEqual(seqs(client), [1, 2, 3, 4, 5]);
        assert.equal(
          client.frames.find((f) => f.op === 'replayed'),
          undefined,
          'not replayed before the catch-up is done',
        );
        let acked = 0;
        while (acked < 21) {
          const last = seqs(client).at(-1)!;
          if (last > acked) {
            mon.ack(last);
            acked = last;
          }
          if (acked < 21) await waitSeq(client, acked + 1);
        }
        const replayed = await waitFor(client, (f) => f.op === 'replayed');
        assert.equal(replayed.seq, 21);
        assertContiguous(seqs(client), 0);
        assert.equal(seqs(client).length, 21);
        assert.ok(mon.maxSeen() <= MAX_IN_FLIGHT, `in flight reached ${mon.maxSeen()}`);
        // live events after the catch-up still respect the window
        await publishMany(pub, 12);
        await waitSeq(client, 26);
        await sleep(30);
        await roundTrip(client);
        assert.equal(seqs(client).at(-1), 26);
        assert.ok(mon.maxSeen() <= MAX_IN_FLIGHT, `in flight reached ${mon.maxSeen()}`);
      });
    }
  });
}
