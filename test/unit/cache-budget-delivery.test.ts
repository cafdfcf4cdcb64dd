/**
 * The node-wide cache budget (NODE_CACHE_BYTES) only ever costs engine reads: events it
 * evicted before the fan-out reached them, or before a client asked for them, still reach
 * every subscriber exactly once and in order (PROTOCOL.md §3).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { MIN_ENTRY_BYTES } from '../../src/session/cache-budget.ts';

/** Room for one or two of these events (about 1 KB each) on the whole node. */
const MIN_BUDGET = 4 * MIN_ENTRY_BYTES;
import { freshHello, realtimeHarness, turnsUntil, type WriteLog } from '../helpers/realtime-harness.ts';

/** Counts the engine reads: what the evicted events cost. */
class CountingEngine extends MemoryEngine {
  reads = 0;
  override read(...args: Parameters<MemoryEngine['read']>) {
    this.reads++;
    return super.read(...args);
  }
}

const EVENTS = 30;

const evSeqs = (sink: WriteLog): number[] =>
  sink.frames.filter((f) => f['op'] === 'ev').map((f) => f['seq'] as number);

const pub = (i: number) => ({
  op: 'pub',
  id: `budget-${i}`,
  type: 'transcript.final',
  payload: { segmentId: `seg-${i}`, revision: 0, text: `line ${i}` },
});

describe('node cache budget', () => {
  it('delivers every event once, in order, when the budget evicted them before the fan-out', async () => {
    // room for about two cached events on the node, 30 appended in one batch
    const { engine, hello, send } = await realtimeHarness(
      (clock) => new CountingEngine(clock, { historyMaxEvents: 1000, historyTtlAfterEndS: 60 }),
      { cacheBudgetBytes: MIN_BUDGET },
    );
    const live = await hello(freshHello());
    const publisher = await hello(freshHello());
    for (let i = 1; i <= EVENTS; i++) send(publisher.conn, pub(i));
    await turnsUntil(() => evSeqs(live.sink).length >= EVENTS);
    assert.deepEqual(
      evSeqs(live.sink),
      Array.from({ length: EVENTS }, (_, i) => i + 1),
    );
    const liveReads = engine.reads;
    assert.ok(liveReads > 0, 'the evicted events were read from the engine');
    // and a client that asks for all of it later reads what the cache no longer holds
    const late = await hello(freshHello({ after: 0 }));
    assert.deepEqual(
      evSeqs(late.sink),
      Array.from({ length: EVENTS }, (_, i) => i + 1),
    );
    assert.ok(engine.reads > liveReads);
  });
});
