/**
 * PROTOCOL.md §4: paused or slow subscribers never make the gateway buffer without
 * bound; a connection whose socket buffer stays over its limit is closed with 4101
 * (slow_consumer) and can resume; other subscribers are unaffected.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import type { TestClient } from '../helpers/ws-client.ts';
import {
  assertContiguous,
  autoAck,
  closeAll,
  expectClose,
  hello,
  newSession,
  publish,
  publisher,
  seqs,
  SUBPROTOCOLS,
  transcriptPub,
  waitFor,
  waitSeq,
} from './support.ts';

// 16 000 three-byte characters: ~48 KB per event frame, under MAX_FRAME_BYTES.
const BIG_TEXT = '\u20ac'.repeat(16_000);
/** Loopback socket buffers may absorb tens of MB; publish until the gateway gave up, at most this many. */
const MAX_EVENTS = 2000;

/** How many connections the gateway closed with `code` so far (its own metric). */
async function closedWith(gw: TestGateway, code: number): Promise<number> {
  const metric = await gw.gateway.metrics.closes.get();
  return metric.values.find((v) => v.labels.code === String(code))?.value ?? 0;
}

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({
    SOCKET_BACKPRESSURE_BYTES: '4096',
    SLOW_CONSUMER_TIMEOUT_MS: '300',
    MAX_IN_FLIGHT: '100000',
    MAX_FRAME_BYTES: '65536',
  });
});
afterEach(closeAll);
after(() => gw.stop());

function socketOf(client: TestClient): { pause(): void; resume(): void } {
  return (client.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
}

for (const sub of SUBPROTOCOLS) {
  describe(`§4 slow consumer [${sub}]`, () => {
    it('§4 slow consumer: a subscriber that stops reading is closed with 4101, others are unaffected, it can resume', async () => {
      const s = await newSession(gw);
      const { client: slow, welcome } = await hello(gw, sub, {
        sessionId: s.sessionId,
        token: s.ownerToken,
        after: 0,
      });
      await waitSeq(slow, 1);
      const { client: healthy } = await hello(gw, sub, {
        sessionId: s.sessionId,
        token: s.ownerToken,
        after: 0,
      });
      autoAck(healthy);
      socketOf(slow).pause();

      const pub = await publisher(gw, s, 'json');
      autoAck(pub); // the publisher is a subscriber too: keep it reading
      const before4101 = await closedWith(gw, 4101);
      let head = 1;
      for (let i = 0; i < MAX_EVENTS && (await closedWith(gw, 4101)) === before4101; i += 20) {
        const answers = await Promise.all(
          Array.from({ length: 20 }, () => publish(pub, transcriptPub(BIG_TEXT))),
        );
        for (const a of answers) assert.equal(a.op, 'puback', JSON.stringify(a));
        head = Math.max(head, ...answers.map((a) => a.seq as number));
      }

      assert.equal(
        await closedWith(gw, 4101),
        before4101 + 1,
        'the gateway closed the slow connection with 4101',
      );
      const afterCut = await publish(pub, transcriptPub('after the cut'));
      assert.equal(afterCut.op, 'puback');
      head = afterCut.seq as number;

      // The healthy subscriber got everything, in order, and is still open.
      await waitSeq(healthy, head, 10_000);
      assertContiguous(seqs(healthy), 0, 'healthy subscriber');
      assert.equal(healthy.closeInfo, undefined);

      // The slow one: read what the socket holds; it must end with 4101.
      socketOf(slow).resume();
      await expectClose(slow, 4101, 10_000);
      const got = seqs(slow);
      assertContiguous(got, 0, 'slow subscriber before the close');
      assert.ok(
        got.length < head,
        `the slow subscriber was cut off before the head (${got.length} of ${head})`,
      );

      // It resumes with its token and gets the rest, exactly once.
      const lastSeq = got.at(-1)!;
      const r = await hello(gw, sub, {
        sessionId: s.sessionId,
        resume: { token: welcome.resumeToken, lastSeq },
      });
      assert.equal(r.welcome.resumed, true);
      autoAck(r.client);
      await waitSeq(r.client, head, 10_000);
      await waitFor(r.client, (f) => f.op === 'replayed');
      assertContiguous(seqs(r.client), lastSeq, 'resumed slow subscriber');
      assert.equal(healthy.closeInfo, undefined);
    });
  });
}
