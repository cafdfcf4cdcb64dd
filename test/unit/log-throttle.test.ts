import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import type { CheckpointWrite } from '../../src/engine/engine.ts';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { EngineUnavailableError } from '../../src/errors/gateway-error.ts';
import { LogThrottle } from '../../src/observability/log-throttle.ts';
import { makeEvent } from '../engine/contract.ts';
import { freshHello, realtimeHarness, SESSION, turnsUntil } from '../helpers/realtime-harness.ts';

function sink(): { lines: Array<{ fields: object; msg: string }>; warn(fields: object, msg: string): void } {
  const lines: Array<{ fields: object; msg: string }> = [];
  return { lines, warn: (fields, msg) => lines.push({ fields, msg }) };
}

describe('LogThrottle', () => {
  it('writes the first line of a message at once, counts the rest of its window, and closes the window with one line saying how many', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const out = sink();
      const log = new LogThrottle(out, 5000);
      const first = new Error('redis read failed: Command timed out');
      log.warn({ sessionId: 's1', err: first }, 'gap fill failed');
      for (let i = 2; i <= 300; i++)
        log.warn({ sessionId: `s${i}`, err: new Error(`failure ${i}`) }, 'gap fill failed');
      // another message has its own window
      log.warn({ sessionId: 's7', err: first }, 'checkpoint write failed');
      assert.deepEqual(
        out.lines.map((l) => [l.msg, l.fields]),
        [
          ['gap fill failed', { sessionId: 's1', err: first }],
          ['checkpoint write failed', { sessionId: 's7', err: first }],
        ],
      );

      mock.timers.tick(4999);
      assert.equal(out.lines.length, 2, 'nothing more within the window');
      mock.timers.tick(1);
      assert.deepEqual(out.lines.slice(2), [
        {
          msg: 'gap fill failed',
          fields: { suppressed: 299, intervalMs: 5000, sessionId: 's300', lastErr: 'failure 300' },
        },
      ]);

      // the window is closed: the next line goes out at once and opens a new one
      log.warn({ sessionId: 's1' }, 'gap fill failed');
      assert.deepEqual(out.lines.at(-1), { msg: 'gap fill failed', fields: { sessionId: 's1' } });
      mock.timers.tick(5000);
      assert.equal(out.lines.length, 4, 'a window with nothing suppressed closes silently');
    } finally {
      mock.timers.reset();
    }
  });
});

/** An engine whose checkpoint writes fail, as they all do while Redis stalls. */
class StalledCheckpoints extends MemoryEngine {
  override saveCheckpoints(_sessionId: string, _writes: readonly CheckpointWrite[]): Promise<number[]> {
    return Promise.reject(new EngineUnavailableError('redis saveCheckpoint failed: Command timed out'));
  }
}

describe("a session actor's warnings", () => {
  it('go to the node-wide throttled sink, not one line each to the logger', async () => {
    const out = sink();
    const h = await realtimeHarness(
      (clock) => new StalledCheckpoints(clock, { historyMaxEvents: 1000, historyTtlAfterEndS: 60 }),
      { warnings: out },
    );
    const { conn } = await h.hello(freshHello());
    const head = await h.engine.append(SESSION, [makeEvent(SESSION, 'e1')]);
    await turnsUntil(() => conn.sentSeq === head.headSeq);
    h.send(conn, { op: 'ack', seq: head.headSeq });
    await turnsUntil(() => out.lines.length > 0);
    assert.deepEqual(
      out.lines.map((l) => l.msg),
      ['checkpoint write failed'],
    );
    assert.match(String((out.lines[0]!.fields as { err: Error }).err.message), /Command timed out/);
  });
});
