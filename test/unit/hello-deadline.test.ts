/**
 * The hello deadline and the unattached set of RealtimeHandler: one timer for all
 * connections still saying hello (not one per connection), 4001 for those that sent no
 * hello in time, nothing for those whose hello is being checked, and `closeUnattached`
 * (drain) closing exactly the connections not attached to a session yet.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { CloseCodes } from '../../src/protocol/close-codes.ts';
import { freshHello, realtimeHarness, turnsUntil } from '../helpers/realtime-harness.ts';

const TIMEOUT_MS = 150;

/**
 * A memory engine whose createSubscriber waits until `release()`: a hello stays "being
 * checked". Every fresh hello gets there, whereas the record read may be skipped (the
 * session's live actor may already keep its tenant and owner).
 */
class GatedEngine extends MemoryEngine {
  gate: Promise<void> | undefined;
  release = (): void => {};
  hold(): void {
    this.gate = new Promise((resolve) => (this.release = resolve));
  }
  override async createSubscriber(...args: Parameters<MemoryEngine['createSubscriber']>) {
    await this.gate;
    return super.createSubscriber(...args);
  }
}

const until = async (done: () => boolean, ms = 5000): Promise<void> => {
  const end = performance.now() + ms;
  while (!done() && performance.now() < end) await sleep(5);
};

/** One attached connection, one whose hello is being checked (held), one that said nothing. */
async function threeConnections(helloTimeoutMs: number) {
  const harness = await realtimeHarness((clock) => new GatedEngine(clock, LIMITS), { helloTimeoutMs });
  const { engine, open, send } = harness;
  const live = open();
  send(live.conn, freshHello());
  await turnsUntil(() => live.conn.live);
  engine.hold();
  const checking = open();
  send(checking.conn, freshHello());
  return { ...harness, live, checking, silent: open() };
}

describe('hello deadline', () => {
  it('closes each silent connection with 4001 once its own deadline passed, oldest first', async () => {
    const { open } = await realtimeHarness(undefined, { helloTimeoutMs: TIMEOUT_MS });
    const a = open();
    const openedA = performance.now();
    await sleep(100);
    const b = open();
    const openedB = performance.now();
    await until(() => a.sink.closedWith !== undefined);
    assert.equal(a.sink.closedWith?.code, CloseCodes.unauthorized);
    assert.ok(a.sink.closedWith.at - openedA >= TIMEOUT_MS - 1, 'not closed before its deadline');
    assert.equal(b.sink.closedWith, undefined, 'the younger connection still has time');
    await until(() => b.sink.closedWith !== undefined);
    const closedB = b.sink.closedWith as { code: number; at: number } | undefined; // narrowed above
    assert.equal(closedB?.code, CloseCodes.unauthorized);
    assert.ok(closedB.at - openedB >= TIMEOUT_MS - 1, 'not closed before its deadline');
  });

  it('leaves alone a connection whose hello came in time, being checked or attached', async () => {
    const { engine, live, checking, silent } = await threeConnections(TIMEOUT_MS);
    await until(() => silent.sink.closedWith !== undefined);
    assert.equal(silent.sink.closedWith?.code, CloseCodes.unauthorized);
    await sleep(TIMEOUT_MS);
    assert.equal(checking.sink.closedWith, undefined);
    assert.equal(checking.conn.state, 'authenticating');
    assert.equal(live.sink.closedWith, undefined);
    engine.release();
    await turnsUntil(() => checking.conn.live);
    assert.ok(checking.conn.live, 'welcomed after its check finished');
  });

  it('closeUnattached closes connections awaiting or checking hello, never attached ones', async () => {
    const { engine, handler, live, checking, silent } = await threeConnections(10_000);
    handler.closeUnattached(CloseCodes.going_away, 'going_away');
    assert.equal(silent.sink.closedWith?.code, CloseCodes.going_away);
    assert.equal(checking.sink.closedWith?.code, CloseCodes.going_away);
    assert.equal(live.sink.closedWith, undefined);
    engine.release();
    await turnsUntil(() => false);
    assert.equal(
      checking.conn.live,
      false,
      'a connection closed while its hello was checked is not attached',
    );
  });
});

const LIMITS = { historyMaxEvents: 1000, historyTtlAfterEndS: 60 };
