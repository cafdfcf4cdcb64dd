/**
 * A drain closes its connections a slice at a time (ActorRegistry.stopAll): between
 * slices the loop turns, so the releases and checkpoints of the slice just closed reach
 * the engine while the next slice closes, not all after the last close. Every connection
 * still gets 1001 and every subscriber is released exactly once, also one whose
 * connection went away on its own while the loop turned.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { CloseCodes } from '../../src/protocol/close-codes.ts';
import { DRAIN_SLICE } from '../../src/session/actor-registry.ts';
import { freshHello, realtimeHarness, SESSION } from '../helpers/realtime-harness.ts';

/** Records the subscriber of each release, in order. */
class ReleaseLog extends MemoryEngine {
  readonly released: string[] = [];

  override releaseSubscriber(...args: Parameters<MemoryEngine['releaseSubscriber']>): Promise<void> {
    const [, subscriberId] = args;
    this.released.push(subscriberId);
    return super.releaseSubscriber(...args);
  }
}

async function drainable(count: number) {
  const h = await realtimeHarness(
    (clock) => new ReleaseLog(clock, { historyMaxEvents: 1000, historyTtlAfterEndS: 60 }),
  );
  const subs = await Promise.all(Array.from({ length: count }, () => h.hello(freshHello())));
  h.engine.released.length = 0;
  const closedSoFar = (): number => subs.filter((s) => s.sink.closedWith).length;
  return { ...h, subs, closedSoFar };
}

describe('draining in slices', () => {
  it('closes a slice, lets the loop turn, and closes the next; every socket gets 1001 and every subscriber one release', async () => {
    const count = 2 * DRAIN_SLICE + 7;
    const { registry, engine, subs, closedSoFar } = await drainable(count);
    let closedAtFirstTurn = -1;
    setImmediate(() => (closedAtFirstTurn = closedSoFar()));
    await registry.stopAll(CloseCodes.going_away, 'going_away');

    assert.equal(
      closedAtFirstTurn,
      DRAIN_SLICE,
      'the loop turned after the first slice, not after the last close',
    );
    assert.ok(subs.every((s) => s.sink.closedWith?.code === CloseCodes.going_away));
    assert.equal(engine.released.length, count);
    assert.equal(new Set(engine.released).size, count, 'each subscriber released once');
    for (const { conn } of subs) {
      const record = await engine.getSubscriber(SESSION, conn.subscriberId);
      assert.equal(record?.connected, false, 'released: its resume window runs');
    }
  });

  it('releases a subscriber whose socket went away during the drain once, and does not close it again', async () => {
    const { registry, engine, handler, subs } = await drainable(DRAIN_SLICE + 3);
    const last = subs.at(-1)!;
    // The client hangs up while the loop turns between slices, as uWS would report it.
    setImmediate(() => {
      assert.equal(last.sink.closedWith, undefined, 'not closed by the drain yet');
      handler.closed(last.conn);
    });
    await registry.stopAll(CloseCodes.going_away, 'going_away');

    assert.equal(last.sink.closedWith, undefined, 'the drain did not close it after it went away');
    assert.equal(engine.released.filter((id) => id === last.conn.subscriberId).length, 1);
    assert.equal(engine.released.length, subs.length);
    assert.ok(subs.slice(0, -1).every((s) => s.sink.closedWith?.code === CloseCodes.going_away));
  });
});
