/**
 * What the redis engine does to keep a crowd of fresh `hello`s (and of closes) cheap
 * (issue 6, handshakes/s), observed on a private redis-server through its command stats:
 *
 * - createSubscriber calls made in the same tick, of any sessions, are one script call;
 * - releaseSubscriber calls made in the same tick, of any sessions, are one script call,
 *   each still fenced by its generation;
 * - getSession calls made in the same tick are one MGET, one key per session, each
 *   caller with its own copy, and a call made after a change reads the change;
 * - the subscriber index is pruned when it has doubled since the last prune, not on every
 *   create past the threshold (that made N fresh hellos cost O(N²) in Redis), and a prune
 *   still drops the members whose key expired.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { RedisEngine } from '../../src/engine/redis/redis-engine.ts';
import { PRUNE_THRESHOLD } from '../../src/engine/redis/scripts/subscriber-scripts.ts';
import { EngineUnavailableError } from '../../src/errors/gateway-error.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { CONTRACT_LIMITS, makeEvent, uniqueId } from './contract.ts';

const server = await RedisServer.start({ aof: false });
const engines: RedisEngine[] = [];

after(async () => {
  for (const engine of engines) await engine.close();
  await server.stop();
});

async function connect(commandTimeoutMs?: number): Promise<{ engine: RedisEngine; prefix: string }> {
  const prefix = `b${randomBytes(3).toString('hex')}:`;
  const engine = await RedisEngine.connect({
    url: server.url,
    clock: new ManualClock(),
    limits: CONTRACT_LIMITS,
    keyPrefix: prefix,
    ...(commandTimeoutMs !== undefined ? { commandTimeoutMs } : {}),
  });
  engines.push(engine);
  return { engine, prefix };
}

/** Calls per command since the last reset (`evalsha`, `get`, `smembers`, …). */
async function commandCalls(): Promise<Record<string, number>> {
  const info = String(await server.command('INFO', 'commandstats'));
  const calls: Record<string, number> = {};
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[m[1]!] = Number(m[2]);
  return calls;
}

async function resetStats(): Promise<void> {
  await server.command('CONFIG', 'RESETSTAT');
}

/** Script runs: EVALSHA, plus EVAL when a script was not loaded yet. */
const scriptRuns = (calls: Record<string, number>): number => (calls['evalsha'] ?? 0) + (calls['eval'] ?? 0);

const sub = (id: string, after = 0) => ({ id, userId: 'u', tenantId: 't', after });

describe('redis engine: per-tick batching of a crowd of hellos', () => {
  it('creates the subscribers of one tick, of any sessions, with one script call', async () => {
    const { engine, prefix } = await connect();
    const [a, b] = [uniqueId('a'), uniqueId('b')];
    await engine.createSubscriber(a, sub('warm-up')); // loads the script
    await resetStats();
    const created = await Promise.all([
      ...Array.from({ length: 50 }, (_, i) => engine.createSubscriber(a, sub(`a${i}`, i))),
      ...Array.from({ length: 10 }, (_, i) => engine.createSubscriber(b, sub(`b${i}`, 7))),
    ]);
    assert.equal(scriptRuns(await commandCalls()), 1, 'one script call for both sessions');
    assert.deepEqual(created[3], {
      id: 'a3',
      userId: 'u',
      tenantId: 't',
      after: 3,
      generation: 1,
      checkpoint: 3,
      connected: true,
      disconnectedAt: 0,
      ended: false,
    });
    // each one exists in Redis as if created on its own
    for (let i = 0; i < 50; i++) assert.deepEqual(await engine.getSubscriber(a, `a${i}`), created[i]);
    for (let i = 0; i < 10; i++) assert.deepEqual(await engine.getSubscriber(b, `b${i}`), created[50 + i]);
    assert.equal(await server.command('SCARD', `${prefix}{${a}}:subs`), 51);
    assert.equal(await server.command('SCARD', `${prefix}{${b}}:subs`), 10);
    // and each one is its own subscriber: fencing and checkpoints per subscriber
    assert.equal(await engine.saveCheckpoint(a, 'a5', 1, 9), 9);
    assert.equal((await engine.getSubscriber(a, 'a6'))!.checkpoint, 6);
  });

  it('creates subscribers of later ticks with later calls', async () => {
    const { engine } = await connect();
    const sid = uniqueId('s');
    await engine.createSubscriber(sid, sub('warm-up'));
    await resetStats();
    for (let i = 0; i < 3; i++) await engine.createSubscriber(sid, sub(`s${i}`));
    assert.equal(scriptRuns(await commandCalls()), 3);
  });

  it('releases the subscribers of one tick, of any sessions, with one script call, each fenced by its generation', async () => {
    const { engine } = await connect();
    const [a, b] = [uniqueId('a'), uniqueId('b')];
    await Promise.all([
      ...['a0', 'a1', 'a2'].map((id) => engine.createSubscriber(a, sub(id))),
      engine.createSubscriber(b, sub('b0')),
    ]);
    const t = new ManualClock().now(); // the engine's clock
    await engine.releaseSubscriber(a, 'a2', 1, t, 60_000); // loads the script
    await resetStats();
    await Promise.all([
      engine.releaseSubscriber(a, 'a0', 1, t + 1000, 60_000),
      engine.releaseSubscriber(a, 'a1', 2, t + 1000, 60_000), // a stale generation: ignored
      engine.releaseSubscriber(b, 'b0', 1, t + 2000, 60_000),
      engine.releaseSubscriber(b, 'missing', 1, t + 2000, 60_000), // gone: ignored
    ]);
    assert.equal(scriptRuns(await commandCalls()), 1, 'one script call for both sessions');
    const [a0, a1, b0] = await Promise.all([
      engine.getSubscriber(a, 'a0'),
      engine.getSubscriber(a, 'a1'),
      engine.getSubscriber(b, 'b0'),
    ]);
    assert.deepEqual([a0!.connected, a0!.disconnectedAt], [false, t + 1000]);
    assert.deepEqual([a1!.connected, a1!.disconnectedAt], [true, 0], 'the stale release changed nothing');
    assert.deepEqual([b0!.connected, b0!.disconnectedAt], [false, t + 2000]);
    assert.equal(await engine.getSubscriber(b, 'missing'), undefined);
  });

  it('fails every create of a batch together when Redis does not answer', async () => {
    const { engine } = await connect(300);
    const sid = uniqueId('s');
    server.pause();
    try {
      const results = await Promise.allSettled(
        Array.from({ length: 5 }, (_, i) => engine.createSubscriber(sid, sub(`s${i}`))),
      );
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.ok(r.reason instanceof EngineUnavailableError, String(r.reason));
      }
    } finally {
      server.resume();
    }
  });

  it('reads the session records of one tick with one MGET, each caller with its own copy, and later calls see changes', async () => {
    const { engine } = await connect();
    const sid = uniqueId('ses');
    const other = uniqueId('ses');
    await engine.createSession({ id: sid, tenantId: 't', ownerId: 'o', createdAt: 'now' });
    await engine.createSession({ id: other, tenantId: 't', ownerId: 'p', createdAt: 'now' });
    await resetStats();
    const [records, others] = await Promise.all([
      Promise.all(Array.from({ length: 20 }, () => engine.getSession(sid))),
      Promise.all(Array.from({ length: 3 }, () => engine.getSession(other))),
    ]);
    const calls = await commandCalls();
    assert.equal(calls['mget'], 1, 'one read for both sessions');
    assert.equal(calls['get'] ?? 0, 0);
    assert.equal(others[2]!.ownerId, 'p');
    assert.equal(records[0]!.version, 1);
    for (const r of records) assert.deepEqual(r, records[0]);
    assert.notEqual(records[0], records[1], 'a copy each');

    const current = records[0]!;
    const changed = await engine.transitionSession(sid, {
      expectedVersion: 1,
      next: { ...current, state: 'connecting', version: 2 },
      event: makeEvent(sid, uniqueId('ev')),
      endStream: false,
    });
    assert.equal(changed.status, 'applied');
    assert.equal((await engine.getSession(sid))!.version, 2);
    assert.equal(await engine.getSession(uniqueId('missing')), undefined);
  });
});

describe('redis engine: pruning the subscriber index', () => {
  it('prunes when the index has doubled since the last prune, not on every create', async () => {
    const { engine, prefix } = await connect();
    const sid = uniqueId('s');
    await resetStats();
    const total = 4 * PRUNE_THRESHOLD; // 256
    for (let i = 0; i < total; i++) await engine.createSubscriber(sid, sub(`s${i}`));
    // at 65 (then the mark is 130), at 131 (mark 262): two prunes, not one per create past 64
    assert.equal((await commandCalls())['smembers'], 2);
    assert.equal(await server.command('SCARD', `${prefix}{${sid}}:subs`), total);
  });

  it('a prune still drops the members whose key expired, and the next one comes at twice what is left', async () => {
    const { engine, prefix } = await connect();
    const sid = uniqueId('s');
    const base = `${prefix}{${sid}}:`;
    for (let i = 0; i < PRUNE_THRESHOLD; i++) await engine.createSubscriber(sid, sub(`s${i}`));
    // forty of them expire (as Redis's TTL would do it)
    await server.command('DEL', ...Array.from({ length: 40 }, (_, i) => `${base}sub:s${i}`));
    await resetStats();
    await engine.createSubscriber(sid, sub('one-more')); // 65 > 64: prune, 25 left
    assert.equal((await commandCalls())['smembers'], 1);
    const members = (await server.command('SMEMBERS', `${base}subs`)) as string[];
    assert.equal(members.length, 25);
    assert.ok(!members.includes('s0') && members.includes('s40') && members.includes('one-more'));
    // the next mark is max(64, 2 × 25) = 64: the next prune comes once the index passes it again
    await resetStats();
    for (let i = 0; i < 39; i++) await engine.createSubscriber(sid, sub(`t${i}`)); // 64
    assert.equal((await commandCalls())['smembers'] ?? 0, 0);
    await engine.createSubscriber(sid, sub('t-last')); // 65
    assert.equal((await commandCalls())['smembers'], 1);
  });
});
