/**
 * AppendQueue on its own, over the memory engine with replies the test releases by hand:
 * what goes out as one append, what waits for the next, and how each publish is answered.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AppendResult, Engine, SeenPosition } from '../../src/engine/engine.ts';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { EngineUnavailableError, GatewayError } from '../../src/errors/gateway-error.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import type { Envelope } from '../../src/protocol/envelope.ts';
import { AppendQueue, type AppendHost, type PendingPublish } from '../../src/session/append-queue.ts';
import type { Connection } from '../../src/session/connection.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { CONTRACT_LIMITS, makeEvent } from '../engine/contract.ts';

const metrics = new Metrics();
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A queue on a memory engine whose appends wait in `held` until released (or failed). */
function harness(host: Partial<AppendHost<null>> = {}) {
  const memory = new MemoryEngine(new ManualClock(), CONTRACT_LIMITS);
  const appends: { ids: string[]; seen: SeenPosition | undefined }[] = [];
  const held: { release(): void; fail(err: Error): void }[] = [];
  const engine = {
    append: (sessionId: string, events: readonly Envelope[], seen?: SeenPosition) => {
      appends.push({ ids: events.map((e) => e.eventId), seen });
      return new Promise<AppendResult>((resolve, reject) => {
        held.push({ release: () => resolve(memory.append(sessionId, events)), fail: reject });
      });
    },
  } as unknown as Engine;
  const log: string[] = [];
  const queue = new AppendQueue(
    's1',
    { engine, metrics, logger: silentLogger() },
    {
      loading: () => undefined,
      ended: () => false,
      seen: () => ({ epoch: '', headSeq: 0 }),
      // the actor answers a stored append itself (pubacks go with its fan-out)
      applied: (_owner, batch: readonly PendingPublish[], result: AppendResult) => {
        log.push(`applied ${batch.length}`);
        batch.forEach((p, i) => p.resolve(result.outcomes[i]!));
      },
      failed: (_owner, batch: readonly PendingPublish[], error: GatewayError) =>
        void log.push(`failed ${batch.length} ${error.code}`),
      settled: (_owner, queued: number) => void log.push(`settled, ${queued} queued`),
      ...host,
    },
    null,
  );
  const publish = (id: string) => queue.push(makeEvent('s1', id));
  const releaseAll = async () => {
    for (const h of held.splice(0)) h.release();
    await turn(); // the replies are applied
    await turn(); // the next append, if any, is sent
  };
  return { queue, appends, held, log, publish, releaseAll };
}

describe('AppendQueue', () => {
  it('sends the publishes of one tick as one append, in order, each answered with its seq', async () => {
    const h = harness();
    const answers = ['a', 'b', 'c'].map(h.publish);
    assert.equal(h.queue.queued, 3);
    await turn();
    assert.deepEqual(
      h.appends.map((a) => a.ids),
      [['a', 'b', 'c']],
    );
    assert.equal(h.queue.appending, true);
    await h.releaseAll();
    assert.deepEqual(
      (await Promise.all(answers)).map((o) => o.seq),
      [1, 2, 3],
    );
    assert.deepEqual(h.log, ['applied 3', 'settled, 0 queued']);
    assert.equal(h.queue.appending, false);
  });

  it('holds what is published while an append is out for the next one, and caps an append at 512', async () => {
    const h = harness();
    void h.publish('first');
    await turn();
    for (let i = 0; i < 600; i++) void h.publish(`e${i}`);
    await turn();
    assert.equal(h.appends.length, 1, 'one append out at a time');
    await h.releaseAll();
    assert.deepEqual(
      h.appends.map((a) => a.ids.length),
      [1, 512],
    );
    assert.deepEqual(h.log, ['applied 1', 'settled, 600 queued']);
    await h.releaseAll();
    assert.deepEqual(
      h.appends.map((a) => a.ids.length),
      [1, 512, 88],
    );
    assert.equal(h.appends[2]!.ids[87], 'e599');
  });

  it('answers every publish of a refused append, promises rejected and pub frames nacked, then tells the host', async () => {
    const h = harness();
    const frames: unknown[] = [];
    const conn = { pendingPubs: 1, sendFrame: (f: unknown) => frames.push(f) } as unknown as Connection;
    const answer = h.publish('a');
    h.queue.pushFrom(conn, makeEvent('s1', 'b'));
    await turn();
    h.held[0]!.fail(new EngineUnavailableError('redis append failed: timed out'));
    await assert.rejects(answer, (err: GatewayError) => err.code === 'unavailable' && err.retryable);
    await turn();
    assert.equal(conn.pendingPubs, 0);
    assert.deepEqual(frames, [
      {
        op: 'nack',
        id: 'b',
        code: 'unavailable',
        message: 'redis append failed: timed out',
        retryable: true,
      },
    ]);
    assert.deepEqual(h.log, ['failed 2 unavailable', 'settled, 0 queued']);
  });

  it('refuses the batch as session_ended without an engine call once the host knows the stream ended', async () => {
    let ended = false;
    let loaded!: () => void;
    const loading = new Promise<void>((resolve) => (loaded = resolve));
    const h = harness({ loading: () => loading, ended: () => ended });
    const answer = h.publish('a');
    await turn();
    // the head read of a fresh actor finds the stream ended
    ended = true;
    loaded();
    await assert.rejects(answer, (err: GatewayError) => err.code === 'session_ended');
    assert.equal(h.appends.length, 0);
    assert.deepEqual(h.log, ['failed 1 session_ended', 'settled, 0 queued']);
  });

  it('refuses the batch when the host cannot apply the reply, rather than losing it silently', async () => {
    const h = harness({
      applied: () => {
        throw new Error('a reply the actor cannot apply');
      },
    });
    const refused = assert.rejects(h.publish('a'), (err: GatewayError) => err.code === 'internal');
    await turn();
    await h.releaseAll();
    await refused;
    assert.deepEqual(h.log, ['failed 1 internal', 'settled, 0 queued']);
  });
});
