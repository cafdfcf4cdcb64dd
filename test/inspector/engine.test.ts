import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { redisUrlForTests } from '../../chaos/toolkit/redis-server.ts';
import type { Engine } from '../../src/engine/engine.ts';
import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { RedisEngine } from '../../src/engine/redis/redis-engine.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { CONTRACT_LIMITS, uniqueId } from '../engine/contract.ts';

/**
 * What the inspector needs from the engine, on both engines: the node holding each
 * subscriber's connection (recorded at create and takeover) and the session's list of
 * live subscribers.
 */
const { url, server } = await redisUrlForTests();
const open: Engine[] = [];
after(async () => {
  for (const engine of open) await engine.close();
  await server?.stop();
});

const WINDOW_MS = 30_000;

const engines: Record<string, (clock: ManualClock) => Promise<Engine>> = {
  memory: async (clock) => new MemoryEngine(clock, CONTRACT_LIMITS),
  redis: (clock) =>
    RedisEngine.connect({
      url,
      clock,
      limits: CONTRACT_LIMITS,
      keyPrefix: `insp${process.pid}-${randomBytes(3).toString('hex')}:`,
    }),
};

for (const [kind, make] of Object.entries(engines)) {
  describe(`inspector engine support [${kind}]`, () => {
    async function setup(): Promise<{ engine: Engine; clock: ManualClock; sid: string }> {
      const clock = new ManualClock();
      const engine = await make(clock);
      open.push(engine);
      return { engine, clock, sid: uniqueId('s') };
    }
    const base = { userId: 'u', tenantId: 't', after: 0 };

    it('records the node and connect time at create, and moves them on takeover', async () => {
      const { engine, clock, sid } = await setup();
      const t0 = clock.now();
      const created = await engine.createSubscriber(sid, { id: 'a', ...base, node: 'n1', connectedAt: t0 });
      assert.equal(created.node, 'n1');
      assert.equal(created.connectedAt, t0);
      assert.deepEqual(await engine.getSubscriber(sid, 'a'), created);

      clock.advance(500);
      await engine.releaseSubscriber(sid, 'a', 1, clock.now(), WINDOW_MS);
      const released = await engine.getSubscriber(sid, 'a');
      assert.equal(released?.connected, false);
      assert.equal(released?.node, 'n1', 'the last holder stays named while released');

      clock.advance(500);
      const taken = await engine.takeoverSubscriber(sid, 'a', clock.now(), WINDOW_MS, 'n2');
      assert.equal(taken?.node, 'n2');
      assert.equal(taken?.connectedAt, clock.now());
      assert.equal(taken?.generation, 2);
      assert.deepEqual(await engine.getSubscriber(sid, 'a'), taken);

      // without a node, a takeover leaves the record's node alone
      clock.advance(10);
      const again = await engine.takeoverSubscriber(sid, 'a', clock.now(), WINDOW_MS);
      assert.equal(again?.node, 'n2');
      assert.equal(again?.connectedAt, taken?.connectedAt);
    });

    it('a subscriber created without a node has neither node nor connectedAt', async () => {
      const { engine, sid } = await setup();
      const created = await engine.createSubscriber(sid, { id: 'a', ...base });
      assert.equal('node' in created, false);
      assert.equal('connectedAt' in created, false);
      const read = await engine.getSubscriber(sid, 'a');
      assert.equal(read && 'node' in read, false);
      assert.deepEqual((await engine.listSubscribers(sid, 10)).subscribers, [created]);
    });

    it('listSubscribers: the live subscribers of one session only', async () => {
      const { engine, clock, sid } = await setup();
      const other = uniqueId('s');
      const now = clock.now();
      await engine.createSubscriber(sid, { id: 'live', ...base, node: 'n1', connectedAt: now });
      await engine.createSubscriber(sid, { id: 'released', ...base, node: 'n1', connectedAt: now });
      await engine.createSubscriber(sid, { id: 'expired', ...base, node: 'n2', connectedAt: now });
      await engine.createSubscriber(sid, { id: 'bye', ...base, node: 'n2', connectedAt: now });
      await engine.createSubscriber(other, { id: 'elsewhere', ...base, node: 'n1', connectedAt: now });
      await engine.saveCheckpoint(sid, 'live', 1, 0);
      await engine.releaseSubscriber(sid, 'expired', 1, now, WINDOW_MS);
      clock.advance(WINDOW_MS + 1);
      await engine.releaseSubscriber(sid, 'released', 1, clock.now(), WINDOW_MS);
      await engine.endSubscriber(sid, 'bye');

      const { subscribers, truncated } = await engine.listSubscribers(sid, 10);
      assert.equal(truncated, false);
      const byId = new Map(subscribers.map((s) => [s.id, s]));
      assert.deepEqual([...byId.keys()].sort(), ['live', 'released']);
      assert.equal(byId.get('live')?.connected, true);
      assert.equal(byId.get('released')?.connected, false);
      assert.equal(byId.get('released')?.disconnectedAt, clock.now());
      assert.equal(byId.get('released')?.node, 'n1');
      assert.deepEqual((await engine.listSubscribers(uniqueId('s'), 10)).subscribers, []);
    });

    it('listSubscribers stops at the limit and says so', async () => {
      const { engine, sid } = await setup();
      for (let i = 0; i < 5; i++) await engine.createSubscriber(sid, { id: `s${i}`, ...base });
      const page = await engine.listSubscribers(sid, 3);
      assert.equal(page.subscribers.length, 3);
      assert.equal(page.truncated, true);
      const all = await engine.listSubscribers(sid, 5);
      assert.equal(all.subscribers.length, 5);
      assert.equal(all.truncated, false);
    });
  });
}
