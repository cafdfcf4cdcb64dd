import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { CONTRACT_LIMITS, engineContract, makeEvent, uniqueId } from './contract.ts';

engineContract('memory', async (clock) => {
  const engine = new MemoryEngine(clock, CONTRACT_LIMITS);
  return { engine, cleanup: () => engine.close() };
});

describe('memory engine: retention of sessions', () => {
  it('an ended session expires with its stream: gone from get and from listings, swept or not', async () => {
    const clock = new ManualClock();
    const engine = new MemoryEngine(clock, CONTRACT_LIMITS);
    try {
      const tenantId = uniqueId('tenant');
      const make = (n: number) => ({
        id: `s${n}`,
        tenantId,
        ownerId: 'o',
        createdAt: new Date(clock.now() + n).toISOString(),
      });
      for (let n = 1; n <= 4; n++) await engine.createSession(make(n), `k${n}`);
      for (const n of [2, 4]) {
        const current = (await engine.getSession(`s${n}`))!;
        const result = await engine.transitionSession(`s${n}`, {
          expectedVersion: 1,
          next: { ...current, state: 'failed', version: 2 },
          event: makeEvent(`s${n}`, 'failed'),
          endStream: true,
        });
        assert.equal(result.status, 'applied');
      }
      clock.advance(CONTRACT_LIMITS.historyTtlAfterEndS * 1000 - 1);
      assert.equal((await engine.listSessions({ tenantId, limit: 10 })).sessions.length, 4);
      clock.advance(1);
      // lazily: the listing skips them before any sweep
      const page = await engine.listSessions({ tenantId, limit: 10 });
      assert.deepEqual(
        page.sessions.map((s) => s.id),
        ['s3', 's1'],
      );
      assert.equal(await engine.getSession('s2'), undefined);
      engine.sweep();
      assert.equal(await engine.getSession('s4'), undefined);
      const paged = await engine.listSessions({ tenantId, ownerId: 'o', limit: 1 });
      assert.deepEqual(
        paged.sessions.map((s) => s.id),
        ['s3'],
      );
      const rest = await engine.listSessions({ tenantId, ownerId: 'o', limit: 1, after: paged.next! });
      assert.deepEqual(rest, { sessions: [(await engine.getSession('s1'))!] });
      // a repeated create under the expired session's key does not resurrect it
      const again = await engine.createSession(make(9), 'k2');
      assert.equal(again.created, false);
      assert.equal(again.session.id, 's2');
      assert.equal(await engine.getSession('s2'), undefined);
    } finally {
      await engine.close();
    }
  });
});

describe('memory engine: an append is all or nothing', () => {
  it('a batch with an event it cannot copy fails whole, and takes no seq', async () => {
    const engine = new MemoryEngine(new ManualClock(), CONTRACT_LIMITS);
    try {
      const sid = uniqueId('s');
      const uncopyable = makeEvent(sid, 'bad');
      (uncopyable.payload as Record<string, unknown>)['f'] = () => 1; // structuredClone refuses functions
      await assert.rejects(engine.append(sid, [makeEvent(sid, 'good'), uncopyable]));
      const next = await engine.append(sid, [makeEvent(sid, 'next')]);
      assert.deepEqual(
        next.outcomes,
        [{ seq: 1, duplicate: false }],
        'no gap, and the good one was not stored',
      );
      const read = await engine.read(sid, 0, 10);
      assert.deepEqual(
        read.events.map((e) => e.event.eventId),
        [makeEvent(sid, 'next').eventId],
      );
    } finally {
      await engine.close();
    }
  });
});
