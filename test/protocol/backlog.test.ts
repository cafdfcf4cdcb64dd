/**
 * PROTOCOL.md §3 ("then every event with seq > after in order") and ARCHITECTURE-NOTES
 * ("delivered seqs strictly increase by 1"), when the catch-up is large: a backlog of big
 * events that the actor cache does not hold is read from the engine and must reach the
 * client without a gap, however much the socket buffers can take at once. Default socket
 * limits; only the actor cache is small (as for any client more than ACTOR_CACHE_EVENTS
 * behind).
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import {
  assertContiguous,
  autoAck,
  closeAll,
  hello,
  newSession,
  publish,
  publisher,
  roundTrip,
  seqs,
  SUBPROTOCOLS,
  transcriptPub,
  waitFor,
  waitSeq,
} from './support.ts';

// ~48 KB per event frame (16 000 three-byte characters); 300 of them are ~14 MB.
const BIG_TEXT = '\u20ac'.repeat(16_000);
const EVENTS = 300;

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ ACTOR_CACHE_EVENTS: '4' });
});
afterEach(closeAll);
after(() => gw.stop());

for (const sub of SUBPROTOCOLS) {
  describe(`§3 large catch-up [${sub}]`, () => {
    it('§3 catch-up: a backlog larger than the socket buffers is delivered without a gap (after: 0, engine reads)', async () => {
      const s = await newSession(gw);
      const pub = await publisher(gw, s, 'json');
      autoAck(pub);
      let head = 1;
      for (let i = 0; i < EVENTS; i += 20) {
        const answers = await Promise.all(
          Array.from({ length: 20 }, () => publish(pub, transcriptPub(BIG_TEXT))),
        );
        for (const a of answers) assert.equal(a.op, 'puback', JSON.stringify(a));
        head = Math.max(head, ...answers.map((a) => a.seq as number));
      }
      const { client } = await hello(gw, sub, { sessionId: s.sessionId, token: s.ownerToken, after: 0 });
      autoAck(client);
      await waitSeq(client, head, 15_000);
      await waitFor(client, (f) => f.op === 'replayed');
      await roundTrip(client);
      const got = seqs(client);
      assertContiguous(got, 0, 'catch-up');
      assert.equal(got.length, head, `every event exactly once (${got.length} of ${head})`);
      assert.equal(client.closeInfo, undefined);
    });
  });
}
