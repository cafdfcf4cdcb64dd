/**
 * A node whose view of a stream's head lags (the cross-node notice is still on its way,
 * or was lost across a Redis reconnect) must not refuse a resume as `history_gone` when
 * the client's lastSeq is beyond that view: the stream is the truth. Found by the chaos
 * soak (spurious 4011s after Redis restarts).
 *
 * Two gateways in this process share one memory engine; node A's engine drops every
 * cross-node head notice, so A's actor keeps an old head while B appends.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Engine, SessionListener } from '../../src/engine/engine.ts';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { systemClock } from '../../src/util/clock.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { subscribe } from '../helpers/ws-client.ts';

/** The engine as node A sees it: head notices never arrive. */
function deafToHeads(inner: Engine): Engine {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'watch') {
        return (sessionId: string, listener: SessionListener) =>
          target.watch(sessionId, (notice) => {
            if (notice.kind !== 'head') listener(notice);
          });
      }
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

describe('resume on a node whose head lags the stream', () => {
  let a: TestGateway;
  let b: TestGateway;
  before(async () => {
    const engine = new MemoryEngine(systemClock, { historyMaxEvents: 10_000, historyTtlAfterEndS: 3600 });
    a = await startTestGateway({}, { engine: deafToHeads(engine) });
    b = await startTestGateway({}, { engine });
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('reads the head from the stream instead of answering 4011', async () => {
    const owner = await a.token('alice');
    const agent = await a.token('bot', 'agent');
    const sessionId = await a.createSession(owner);
    // A watcher on A keeps A's actor loaded (and deaf) while B appends.
    const { client: watcher, welcome: watched } = await subscribe(a.wsUrl, {
      sessionId,
      token: owner,
      after: 'latest',
    });
    const { client: sub, welcome } = await subscribe(b.wsUrl, { sessionId, token: owner, after: 0 });
    const { client: pub } = await subscribe(b.wsUrl, { sessionId, token: agent });
    try {
      for (let i = 1; i <= 4; i++) {
        pub.send({
          op: 'pub',
          id: `e${i}`,
          type: 'transcript.partial',
          payload: { segmentId: 's', revision: i, text: 't' },
        });
        await pub.op('puback');
      }
      const seqs = (await sub.events(5)).map((f) => f.seq as number);
      assert.deepEqual(seqs, [1, 2, 3, 4, 5]);
      sub.close();

      const { client: resumed, welcome: again } = await subscribe(a.wsUrl, {
        sessionId,
        resume: { token: welcome.resumeToken, lastSeq: 5, epoch: welcome.epoch },
      });
      try {
        assert.equal(again.resumed, true);
        assert.equal(again.after, 5);
        assert.ok((again.headSeq as number) >= 5, `welcome headSeq ${String(again.headSeq)}`);
        assert.equal(watched.headSeq, 1, 'A knew only call.created when its watcher subscribed');
      } finally {
        resumed.close();
      }
    } finally {
      watcher.close();
      pub.close();
    }
  });
});
