/**
 * An actor starts watching a session, then reads its head. Another node's append that
 * Redis runs just after that read sends its notice over the pub/sub connection, which may
 * reach this node before the read's reply does (two sockets, no order between them). The
 * notice must not be lost to the load: nothing else tells the actor of that event until
 * the session's next append, and a session's last event would never be delivered here.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StreamHead } from '../../src/engine/engine.ts';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { makeEvent } from '../engine/contract.ts';
import { SESSION, freshHello, nextTurn, realtimeHarness, turnsUntil } from '../helpers/realtime-harness.ts';

const LIMITS = { historyMaxEvents: 1000, historyTtlAfterEndS: 60 };

/** Head reads that answer only at `release()`, with what the stream held when they were made. */
class SlowHeadEngine extends MemoryEngine {
  #gate: Promise<void> | undefined;
  release = (): void => {};
  heldReads = 0;

  holdHeads(): void {
    this.#gate = new Promise((resolve) => (this.release = resolve));
  }

  override async head(sessionId: string): Promise<StreamHead> {
    const head = await super.head(sessionId);
    if (this.#gate) {
      this.heldReads++;
      await this.#gate;
    }
    return head;
  }
}

describe('a notice that arrives while the actor reads its head', () => {
  it('is applied once the head is read: the event it announces is delivered', async () => {
    const { engine, metrics, open, send } = await realtimeHarness(
      (clock) => new SlowHeadEngine(clock, LIMITS),
    );
    await engine.append(SESSION, [makeEvent(SESSION, 'before')]);
    engine.holdHeads();
    const { conn, sink } = open();
    // From seq 1 on: nothing to read back, so only the head tells the actor of seq 2.
    send(conn, freshHello({ after: 1 }));
    await turnsUntil(() => engine.heldReads === 1);
    assert.equal(engine.heldReads, 1, 'the hello is reading the head');
    // Another node appends now: its notice reaches the watching actor before the reply.
    const { outcomes } = await engine.append(SESSION, [makeEvent(SESSION, 'during')]);
    assert.equal(outcomes[0]!.seq, 2);
    await nextTurn(); // the notice is delivered (a tick after the append, like Redis's)
    engine.release();
    await turnsUntil(() => sink.frames.some((f) => f['op'] === 'ev'));
    const welcome = sink.frames.find((f) => f['op'] === 'welcome');
    assert.equal(welcome?.['after'], 1);
    const delivered = sink.frames.filter((f) => f['op'] === 'ev').map((f) => f['seq']);
    assert.deepEqual(delivered, [2], 'the event announced during the load');
    const counted = (await metrics.remoteNotices.get()).values.find(
      (v) => v.labels['kind'] === 'head_during_load',
    );
    assert.equal(counted?.value, 1, 'counted as a notice that overtook the head read');
  });
});
