/**
 * A catch-up read that brings back nothing after the connection's last seq, though the
 * head says there is more (an engine with a hole, or one behind its own head), must not
 * read again at once: a memory engine answers within the same turn, so that loop kept
 * the event loop busy and the gateway stopped answering anyone. It reads again later,
 * and delivers once the engine has the events.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { freshHello, realtimeHarness, SESSION, turnsUntil } from '../helpers/realtime-harness.ts';

class HoleEngine extends MemoryEngine {
  hiding = false;
  reads = 0;
  override async read(...args: Parameters<MemoryEngine['read']>) {
    this.reads++;
    const result = await super.read(...args);
    return this.hiding ? { ...result, events: [] } : result;
  }
}

const event = (i: number) => ({
  eventId: `hole-${i}`,
  sessionId: SESSION,
  ts: '2026-12-02T16:00:00.000Z',
  type: 'transcript.final' as const,
  schemaVersion: 1 as const,
  payload: { segmentId: `seg-${i}`, revision: 0, text: `line ${i}` },
});

describe('catch-up over a hole', () => {
  it('reads again after a pause, not in a loop, and delivers once the events are there', async () => {
    const { engine, open, send } = await realtimeHarness(
      (clock) => new HoleEngine(clock, { historyMaxEvents: 1000, historyTtlAfterEndS: 60 }),
    );
    await engine.append(SESSION, [event(1), event(2), event(3)]);
    engine.hiding = true;
    const { conn, sink } = open();
    send(conn, freshHello({ after: 0 }));
    await turnsUntil(() => engine.reads > 0);
    const before = engine.reads;
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.ok(engine.reads - before <= 2, `${engine.reads - before} reads in 100 ms: a loop`);
    engine.hiding = false;
    for (let i = 0; i < 100 && !sink.frames.some((f) => f['op'] === 'replayed'); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const seqs = sink.frames.filter((f) => f['op'] === 'ev').map((f) => f['seq']);
    assert.deepEqual(seqs, [1, 2, 3]);
  });
});
