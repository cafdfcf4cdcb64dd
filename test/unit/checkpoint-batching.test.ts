/**
 * A session actor's checkpoint writes (issue 6: at a few events a second every delivery
 * is acked, and an ack's checkpoint write cost as much as the rest of the ack): the acks
 * of one tick, of all the actor's connections, reach the engine as one saveCheckpoints
 * call, each connection at its latest ack; a connection with a write out waits for it and
 * then writes its newest ack.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CheckpointWrite } from '../../src/engine/engine.ts';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { makeEvent } from '../engine/contract.ts';
import { freshHello, nextTurn, realtimeHarness, SESSION, turnsUntil } from '../helpers/realtime-harness.ts';

/** Records each saveCheckpoints call; its replies wait until released. */
class RecordingEngine extends MemoryEngine {
  readonly calls: CheckpointWrite[][] = [];
  readonly #held: (() => void)[] = [];
  hold = false;

  override async saveCheckpoints(sessionId: string, writes: readonly CheckpointWrite[]): Promise<number[]> {
    this.calls.push(writes.map((w) => ({ ...w })));
    if (this.hold) await new Promise<void>((resolve) => this.#held.push(resolve));
    return super.saveCheckpoints(sessionId, writes);
  }

  release(): void {
    for (const resolve of this.#held.splice(0)) resolve();
  }
}

async function withSubscribers(count: number) {
  const h = await realtimeHarness(
    (clock) => new RecordingEngine(clock, { historyMaxEvents: 1000, historyTtlAfterEndS: 60 }),
  );
  const subs: Awaited<ReturnType<typeof h.hello>>[] = [];
  for (let i = 0; i < count; i++) subs.push(await h.hello(freshHello()));
  const publish = async (n: number) => {
    const before = h.engine.calls.length;
    const head = await h.engine.append(
      SESSION,
      Array.from({ length: n }, (_, i) => makeEvent(SESSION, `e${Math.random()}-${i}`)),
    );
    await turnsUntil(() => subs.every((s) => s.conn.sentSeq === head.headSeq));
    assert.equal(h.engine.calls.length, before, 'no checkpoint write without an ack');
    return head.headSeq;
  };
  return { ...h, subs, publish };
}

describe('checkpoint writes of a session actor', () => {
  it('writes the acks of one tick, of every connection, with one saveCheckpoints call', async () => {
    const { engine, subs, send, publish } = await withSubscribers(20);
    const head = await publish(3);
    for (const { conn } of subs) send(conn, { op: 'ack', seq: head - 1 });
    for (const { conn } of subs) send(conn, { op: 'ack', seq: head }); // same tick: coalesced
    await turnsUntil(() => engine.calls.length > 0);
    await nextTurn();
    assert.equal(engine.calls.length, 1);
    assert.deepEqual(
      engine.calls[0],
      subs.map(({ conn }) => ({ subscriberId: conn.subscriberId, generation: conn.generation, seq: head })),
    );
    await turnsUntil(() => subs.every(({ conn }) => conn.savedSeq === head));
    for (const { conn } of subs) {
      assert.equal((await engine.getSubscriber(SESSION, conn.subscriberId))?.checkpoint, head);
    }
  });

  it('holds a newer ack while its connection has a write out, then writes the newest', async () => {
    const { engine, subs, send, publish } = await withSubscribers(2);
    const [a, b] = subs.map((s) => s.conn);
    const head = await publish(4);
    engine.hold = true;
    send(a!, { op: 'ack', seq: head - 3 });
    await turnsUntil(() => engine.calls.length === 1);
    send(a!, { op: 'ack', seq: head - 2 }); // a's write is out: waits
    send(a!, { op: 'ack', seq: head - 1 });
    send(b!, { op: 'ack', seq: head }); // b has none out: goes now
    await turnsUntil(() => engine.calls.length === 2);
    await nextTurn();
    assert.deepEqual(
      engine.calls.map((writes) => writes.map((w) => [w.subscriberId, w.seq])),
      [[[a!.subscriberId, head - 3]], [[b!.subscriberId, head]]],
    );
    engine.hold = false;
    engine.release();
    await turnsUntil(() => engine.calls.length === 3);
    assert.deepEqual(engine.calls[2], [
      { subscriberId: a!.subscriberId, generation: a!.generation, seq: head - 1 },
    ]);
    await turnsUntil(() => a!.savedSeq === head - 1 && b!.savedSeq === head);
    assert.equal(a!.savedSeq, head - 1);
    assert.equal(b!.savedSeq, head);
  });
});
