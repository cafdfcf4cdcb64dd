/**
 * A fresh hello checks access against the session's tenant and owner. They never change,
 * so the session's live actor keeps them from a read made while it was live: a crowd of
 * hellos to one session reads the record once or twice. The rule itself is checked with
 * real tokens in
 * test/protocol/connect.test.ts ("…a session that already has a live client"), and an
 * actor that finds its history lost forgets them (test/multinode/redis-trouble.test.ts,
 * "FLUSHALL: … fresh hellos and HTTP get session_not_found").
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SessionListener, SessionRecord, StreamHead } from '../../src/engine/engine.ts';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { CloseCodes } from '../../src/protocol/close-codes.ts';
import { makeEvent } from '../engine/contract.ts';
import { SESSION, freshHello, realtimeHarness, turnsUntil } from '../helpers/realtime-harness.ts';

const LIMITS = { historyMaxEvents: 1000, historyTtlAfterEndS: 60 };

/** A memory engine that counts the session records it is asked for. */
class CountingEngine extends MemoryEngine {
  sessionReads = 0;
  override getSession(sessionId: string) {
    this.sessionReads++;
    return super.getSession(sessionId);
  }
}

/**
 * A memory engine that can lose its data as Redis does (FLUSHALL): every stream moves to
 * a new epoch and the session records are gone. `holdReads` makes the
 * next record reads answer only at `release()`, with what they read before the hold
 * was released: a read that was in flight across the loss.
 */
class LossyEngine extends CountingEngine {
  #losses = 0;
  #recordsLost = false;
  #gate: Promise<void> | undefined;
  release = (): void => {};

  holdReads(): void {
    this.#gate = new Promise((resolve) => (this.release = resolve));
  }
  lose(): void {
    this.#losses++;
    this.#recordsLost = true;
  }
  #epoch<T extends { epoch: string }>(value: T): T {
    return this.#losses === 0 ? value : { ...value, epoch: `${value.epoch}~${this.#losses}` };
  }

  override async getSession(sessionId: string): Promise<SessionRecord | undefined> {
    const lost = this.#recordsLost; // what Redis held when the read reached it
    const record = await super.getSession(sessionId);
    await this.#gate;
    return lost ? undefined : record;
  }
  override async head(sessionId: string): Promise<StreamHead> {
    return this.#epoch(await super.head(sessionId));
  }
  override async append(...args: Parameters<MemoryEngine['append']>) {
    return this.#epoch(await super.append(...args));
  }
  override async read(...args: Parameters<MemoryEngine['read']>) {
    return this.#epoch(await super.read(...args));
  }
  override watch(sessionId: string, listener: SessionListener) {
    return super.watch(sessionId, (notice) =>
      listener(notice.kind === 'head' ? this.#epoch(notice) : notice),
    );
  }
}

describe('hello: reads of the session record', () => {
  it('hellos to a session with a live actor read its record at most twice', async () => {
    const { engine, hello } = await realtimeHarness((clock) => new CountingEngine(clock, LIMITS));
    const first = await hello(freshHello());
    assert.equal(engine.sessionReads, 1);
    await hello(freshHello());
    // The first read began before the session had an actor that knew its epoch, so only
    // the second one's tenant and owner are kept (see the loss test below).
    assert.equal(engine.sessionReads, 2);
    for (let i = 0; i < 4; i++) assert.ok((await hello(freshHello())).conn.live);
    assert.equal(engine.sessionReads, 2, 'later hellos used the actor’s tenant and owner');
    assert.ok(first.conn.live);
  });

  it('a record read in flight while the history is lost is not kept: the next hello reads again', async () => {
    const { engine, registry, hello, open, send } = await realtimeHarness(
      (clock) => new LossyEngine(clock, LIMITS),
    );
    // The first hello's read is never kept (no actor knew the epoch when it began), so
    // the actor holds no tenant and owner while its connection is live.
    const first = await hello(freshHello());
    assert.equal(registry.peek(SESSION)?.access, undefined);

    // A hello reads the record; Redis loses everything before the answer arrives, and
    // the actor learns of it (an append) before the hello goes on.
    engine.holdReads();
    const racing = open();
    send(racing.conn, freshHello());
    await turnsUntil(() => engine.sessionReads === 2);
    engine.lose();
    await engine.append(SESSION, [makeEvent(SESSION, 'e2')]);
    await turnsUntil(() => first.sink.closedWith !== undefined);
    assert.equal(first.sink.closedWith?.code, CloseCodes.history_gone, 'the actor found its history lost');
    engine.release();
    await turnsUntil(() => racing.conn.live || racing.sink.closedWith !== undefined);

    // That hello read the record before it was lost: like any hello just before a loss it
    // is welcomed. The next one must not be, on what that read returned.
    const late = open();
    send(late.conn, freshHello());
    await turnsUntil(() => late.sink.closedWith !== undefined);
    assert.equal(late.sink.closedWith?.code, CloseCodes.session_not_found);
    assert.equal(engine.sessionReads, 3);
    assert.equal(registry.peek(SESSION)?.access, undefined);
  });

  it('a hello to an unknown session is still refused while other sessions have actors', async () => {
    const { engine, hello, open, send } = await realtimeHarness((clock) => new CountingEngine(clock, LIMITS));
    await hello(freshHello());
    const { conn, sink } = open();
    send(conn, freshHello({ sessionId: `${SESSION}_missing` }));
    await turnsUntil(() => sink.closedWith !== undefined);
    assert.equal(sink.closedWith?.code, CloseCodes.session_not_found);
    assert.equal(engine.sessionReads, 2);
  });
});
