/**
 * PROTOCOL.md §3 `after: 0` ("everything still retained") and §5 4011 history_gone
 * ("seq no longer retained"), with a stream longer than HISTORY_MAX_EVENTS and a tiny
 * actor cache so positions are served from the engine.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import {
  api,
  assertContiguous,
  closeAll,
  connect,
  expectClose,
  hello,
  newSession,
  publisher,
  publishMany,
  seqs,
  SUBPROTOCOLS,
  waitFor,
  waitSeq,
  type Session,
} from './support.ts';

const RETAINED = 10;

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ HISTORY_MAX_EVENTS: String(RETAINED), ACTOR_CACHE_EVENTS: '4' });
});
afterEach(closeAll);
after(() => gw.stop());

/** A session with head 25 of which only 16..25 are retained. */
async function trimmedSession(): Promise<Session> {
  const s = await newSession(gw);
  const pub = await publisher(gw, s);
  await publishMany(pub, 24);
  const res = await api(gw, 'GET', `/v1/call/sessions/${s.sessionId}/events?after=0&limit=100`, s.ownerToken);
  assert.deepEqual(
    res.body.events.map((e: any) => e.seq),
    Array.from({ length: RETAINED }, (_, i) => 16 + i),
    'the engine retains the last HISTORY_MAX_EVENTS events',
  );
  return s;
}

for (const sub of SUBPROTOCOLS) {
  describe(`§3 retention [${sub}]`, () => {
    it('§3 after: 0 delivers everything still retained, contiguous from welcome.after + 1, when older events were trimmed', async () => {
      const s = await trimmedSession();
      const { client, welcome } = await hello(gw, sub, {
        sessionId: s.sessionId,
        token: s.ownerToken,
        after: 0,
      });
      const replayed = await waitFor(client, (f) => f.op === 'replayed');
      assert.equal(replayed.seq, 25);
      const got = seqs(client);
      assert.equal(got[0], (welcome.after as number) + 1, 'the first delivered seq is welcome.after + 1');
      assertContiguous(got, welcome.after as number);
      assert.equal(got.at(-1), 25);
      assert.ok((got[0] ?? Infinity) <= 16, 'every retained event is delivered');
    });

    it('§5 history_gone: a fresh hello with after: n for a seq no longer retained closes with 4011', async () => {
      const s = await trimmedSession();
      const client = await connect(gw, sub);
      client.send({ op: 'hello', sessionId: s.sessionId, token: s.ownerToken, after: 3 });
      await expectClose(client, 4011);
      assert.deepEqual(seqs(client), [], 'nothing is delivered from a broken position');
    });

    it('§5 history_gone: a resume whose lastSeq is no longer retained closes with 4011', async () => {
      const s = await newSession(gw);
      const { client, welcome } = await hello(gw, sub, {
        sessionId: s.sessionId,
        token: s.ownerToken,
        after: 0,
      });
      await waitSeq(client, 1);
      client.close();
      await client.closed;
      const pub = await publisher(gw, s);
      await publishMany(pub, 24);
      const r = await hello(gw, sub, {
        sessionId: s.sessionId,
        resume: { token: welcome.resumeToken, lastSeq: 1 },
      });
      await expectClose(r.client, 4011);
      assert.deepEqual(seqs(r.client), []);
    });
  });
}
