/**
 * PROTOCOL.md §3 ("then live events"): a connection that was welcomed receives the
 * session's live events, also when its hello arrived just as the session's actor was
 * being dropped for idleness (ACTOR_IDLE_MS). Many sessions are probed at once, each
 * hello timed around its actor's idle deadline; a correct gateway passes every time.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { api, closeAll, connect, hello, newSession, seqs, sleep, waitFor, waitSeq } from './support.ts';

const IDLE_MS = 1000;
const TRIALS = 80;

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ ACTOR_IDLE_MS: String(IDLE_MS) });
});
afterEach(closeAll);
after(() => gw.stop());

describe('§3 live delivery across actor idleness', () => {
  it('§3 live events: a connection welcomed while its session actor goes idle still receives live events', async () => {
    const trials = await Promise.all(
      Array.from({ length: TRIALS }, async (_, i) => {
        const s = await newSession(gw);
        const first = await hello(gw, 'json', { sessionId: s.sessionId, token: s.ownerToken });
        const late = await connect(gw, 'json');
        await sleep(i * 7);
        // The last connection leaves: the actor is dropped IDLE_MS later, unless someone attaches.
        first.client.close();
        await first.client.closed;
        const target = Date.now() + IDLE_MS + ((i % 8) - 4) * 0.5;
        while (Date.now() < target - 3) await sleep(1);
        while (Date.now() < target) {
          /* spin to land the hello close to the idle deadline */
        }
        late.send({ op: 'hello', sessionId: s.sessionId, token: s.ownerToken });
        await waitFor(late, (f) => f.op === 'welcome');
        return { s, late };
      }),
    );
    for (const { s } of trials) {
      const res = await api(gw, 'POST', `/v1/call/sessions/${s.sessionId}/events`, s.agentToken, {
        type: 'transcript.final',
        payload: { segmentId: 'live', revision: 0, text: 'live' },
      });
      assert.equal(res.body.seq, 2, JSON.stringify(res.body));
    }
    const results = await Promise.allSettled(trials.map(({ late }) => waitSeq(late, 2, 2000)));
    const missed = results.filter((r) => r.status === 'rejected').length;
    assert.equal(missed, 0, `${missed} of ${TRIALS} welcomed connections never received the live event`);
    for (const { late } of trials) assert.deepEqual(seqs(late), [2]);
  });
});
