/**
 * A fresh hello checks access against the session's tenant and owner. They never change,
 * so the session's live actor keeps them from the first read: a crowd of hellos to one
 * session reads the record once. The rule itself is checked with real tokens in
 * test/protocol/connect.test.ts ("…a session that already has a live client"), and an
 * actor that finds its history lost forgets them (test/multinode/redis-trouble.test.ts,
 * "FLUSHALL: … fresh hellos and HTTP get session_not_found").
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { CloseCodes } from '../../src/protocol/close-codes.ts';
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

describe('hello: reads of the session record', () => {
  it('hellos to a session with a live actor read its record once', async () => {
    const { engine, hello } = await realtimeHarness((clock) => new CountingEngine(clock, LIMITS));
    const first = await hello(freshHello());
    assert.equal(engine.sessionReads, 1);
    for (let i = 0; i < 4; i++) assert.ok((await hello(freshHello())).conn.live);
    assert.equal(engine.sessionReads, 1, 'later hellos used the actor’s tenant and owner');
    assert.ok(first.conn.live);
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
