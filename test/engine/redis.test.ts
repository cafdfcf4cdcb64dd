import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Engine } from '../../src/engine/engine.ts';
import { Redis } from 'ioredis';
import { sessionKeys } from '../../src/engine/redis/keys.ts';
import { RedisEngine, type RedisEngineOptions } from '../../src/engine/redis/redis-engine.ts';
import { EngineUnavailableError } from '../../src/errors/gateway-error.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { freePort } from '../../chaos/toolkit/ports.ts';
import { RedisServer, redisUrlForTests } from '../../chaos/toolkit/redis-server.ts';
import { CONTRACT_LIMITS, engineContract, makeEvent, uniqueId } from './contract.ts';

// One private redis-server for the contract suite (or REDIS_URL); every test gets its own key prefix.
const { url, server } = await redisUrlForTests();

let run = 0;
function keyPrefix(): string {
  run += 1;
  return `t${process.pid}-${run}-${randomBytes(3).toString('hex')}:`;
}

type ConnectOptions = Partial<RedisEngineOptions> & { url: string };
const open: RedisEngine[] = [];

async function connect(options: ConnectOptions): Promise<RedisEngine> {
  const engine = await RedisEngine.connect({
    clock: new ManualClock(),
    limits: CONTRACT_LIMITS,
    keyPrefix: keyPrefix(),
    ...options,
  });
  open.push(engine);
  return engine;
}

after(async () => {
  for (const engine of open) await engine.close();
  await server?.stop();
});

engineContract('redis', async (clock) => {
  const engine = await RedisEngine.connect({ url, clock, limits: CONTRACT_LIMITS, keyPrefix: keyPrefix() });
  return { engine, cleanup: () => engine.close() };
});

/** Retries `fn` until it resolves (the client reconnects on its own after an outage). */
async function eventually<T>(fn: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
}

/** The part of a key Redis Cluster hashes: between the first `{` and the next `}`. */
function hashTag(key: string): string {
  const open = key.indexOf('{');
  const close = key.indexOf('}', open + 1);
  assert.ok(open >= 0 && close > open + 1, `key without a hash tag: ${key}`);
  return key.slice(open + 1, close);
}

async function appendIds(engine: Engine, sid: string, ...ids: string[]) {
  return engine.append(
    sid,
    ids.map((id) => makeEvent(sid, id)),
  );
}

function memoryLogger() {
  const lines: { level: 'warn' | 'info'; obj: object; msg: string }[] = [];
  return {
    lines,
    logger: {
      warn: (obj: object, msg: string) => lines.push({ level: 'warn', obj, msg }),
      info: (obj: object, msg: string) => lines.push({ level: 'info', obj, msg }),
    },
  };
}

const needsServer = server ? false : 'REDIS_URL is set: these tests need a redis-server of their own';

describe('redis engine: storage layout and scripts', { skip: needsServer }, () => {
  const srv = server!;

  it('keeps every key of a session under its hash tag, and idempotency keys under the tenant', async () => {
    const prefix = keyPrefix();
    const engine = await connect({ url: srv.url, keyPrefix: prefix });
    const sid = 'ses:odd{id}';
    await engine.createSession({ id: sid, tenantId: 'tenant-a', ownerId: 'u1', createdAt: 'now' });
    await engine.createSession(
      { id: uniqueId('ses'), tenantId: 'tenant-a', ownerId: 'u1', createdAt: 'now' },
      'k1',
    );
    await appendIds(engine, sid, 'a', 'b');
    await engine.createSubscriber(sid, { id: 'sub:1', userId: 'u1', tenantId: 'tenant-a', after: 0 });
    await engine.endStream(sid);

    const keys = (await srv.command('KEYS', `${prefix}*`)) as string[];
    const idem = keys.filter((k) => k.startsWith(`${prefix}idem:`));
    const session = keys.filter((k) => k.startsWith(`${prefix}{`) && hashTag(k) === encodeURIComponent(sid));
    const indexes = keys.filter((k) => k.startsWith(`${prefix}ix:`)).sort();
    assert.equal(idem.length, 1);
    assert.equal(hashTag(idem[0]!), 'tenant-a');
    // the listing indexes of the tenant and of the owner, in the tenant's slot
    assert.deepEqual(indexes, [`${prefix}ix:{tenant-a}:owner:u1`, `${prefix}ix:{tenant-a}:tenant`]);
    const suffixes = session.map((k) => k.slice(k.indexOf('}:') + 2)).sort();
    assert.deepEqual(suffixes, [
      'ids',
      'meta',
      'session',
      'stream',
      `sub:${encodeURIComponent('sub:1')}`,
      'subs',
    ]);
    // nothing else: the other session (created with a key) has only its record
    assert.equal(keys.length, idem.length + indexes.length + session.length + 1);
  });

  it('stores events at stream IDs 0-<seq> and a duplicate-only append writes and publishes nothing', async () => {
    const prefix = keyPrefix();
    const engine = await connect({ url: srv.url, keyPrefix: prefix });
    const sid = uniqueId('s');
    const base = `${prefix}{${sid}}:`;
    const listener = await srv.client();
    try {
      await listener.subscribe(`${base}n`);
      const first = await appendIds(engine, sid, 'a', 'b');
      const ids = (await srv.command('XRANGE', `${base}stream`, '-', '+')) as [string, string[]][];
      assert.deepEqual(
        ids.map((e) => e[0]),
        ['0-1', '0-2'],
      );
      const snapshot = async () => ({
        xlen: await srv.command('XLEN', `${base}stream`),
        newest: await srv.command('XREVRANGE', `${base}stream`, '+', '-', 'COUNT', 1),
        ids: await srv.command('HGETALL', `${base}ids`),
        meta: await srv.command('HGETALL', `${base}meta`),
      });
      const before = await snapshot();
      const dup = await appendIds(engine, sid, 'b', 'a');
      assert.deepEqual(dup.outcomes, [
        { seq: 2, duplicate: true },
        { seq: 1, duplicate: true },
      ]);
      assert.deepEqual(await snapshot(), before);

      await appendIds(engine, sid, 'c');
      const deadline = Date.now() + 5000;
      while (listener.messages.length < 2 && Date.now() < deadline) await sleep(10);
      await sleep(50);
      // one notification per append that added events, "<head> <epoch>"; none for the duplicates
      assert.deepEqual(listener.messages, [
        ['message', `${base}n`, `2 ${first.epoch}`],
        ['message', `${base}n`, `3 ${first.epoch}`],
      ]);
    } finally {
      listener.close();
    }
  });

  it('keeps working after SCRIPT FLUSH (NOSCRIPT falls back to EVAL)', async () => {
    const engine = await connect({ url: srv.url });
    const sid = uniqueId('s');
    await appendIds(engine, sid, 'a');
    await srv.command('SCRIPT', 'FLUSH');
    const next = await appendIds(engine, sid, 'b');
    assert.deepEqual(next.outcomes, [{ seq: 2, duplicate: false }]);
    await srv.command('SCRIPT', 'FLUSH');
    assert.equal((await engine.read(sid, 0, 10)).events.length, 2);
  });

  it('endStream puts every key of the session on the retention TTL, once', async () => {
    const prefix = keyPrefix();
    const ttlS = 600;
    const engine = await connect({
      url: srv.url,
      keyPrefix: prefix,
      limits: { historyMaxEvents: 5, historyTtlAfterEndS: ttlS },
    });
    const sid = uniqueId('s');
    const base = `${prefix}{${sid}}:`;
    await engine.createSession({ id: sid, tenantId: 't', ownerId: 'o', createdAt: 'now' });
    await appendIds(engine, sid, 'a');
    await engine.createSubscriber(sid, { id: 'live', userId: 'u', tenantId: 't', after: 0 });
    await engine.createSubscriber(sid, { id: 'gone', userId: 'u', tenantId: 't', after: 0 });
    await engine.releaseSubscriber(sid, 'gone', 1, Date.now(), 1000);
    for (const suffix of ['stream', 'meta', 'ids', 'session', 'subs', 'sub:live']) {
      assert.equal(await srv.command('PTTL', base + suffix), -1, `${suffix} has no TTL before the end`);
    }
    await engine.endStream(sid);
    for (const suffix of ['stream', 'meta', 'ids', 'session', 'subs', 'sub:live']) {
      const ttl = (await srv.command('PTTL', base + suffix)) as number;
      assert.ok(ttl > (ttlS - 10) * 1000 && ttl <= ttlS * 1000, `${suffix} TTL ${ttl}`);
    }
    // a released subscriber keeps its shorter TTL
    assert.ok(((await srv.command('PTTL', `${base}sub:gone`)) as number) <= 6000);

    // after the end: nothing new is appended, and a new subscriber expires with the rest
    await assert.rejects(appendIds(engine, sid, 'late'), /the stream has ended/);
    await engine.createSubscriber(sid, { id: 'late', userId: 'u', tenantId: 't', after: 0 });
    for (const suffix of ['stream', 'ids', 'sub:late']) {
      const ttl = (await srv.command('PTTL', base + suffix)) as number;
      assert.ok(ttl > 0 && ttl <= ttlS * 1000, `${suffix} TTL ${ttl} after the end`);
    }
  });

  it('a terminal transition puts every key of the session on the retention TTL, subscribers too', async () => {
    const prefix = keyPrefix();
    const ttlS = 600;
    const engine = await connect({
      url: srv.url,
      keyPrefix: prefix,
      limits: { historyMaxEvents: 5, historyTtlAfterEndS: ttlS },
    });
    const sid = uniqueId('s');
    const base = `${prefix}{${sid}}:`;
    const { session } = await engine.createSession(
      { id: sid, tenantId: 't', ownerId: 'o', createdAt: new Date().toISOString() },
      undefined,
      makeEvent(sid, 'created'),
    );
    await engine.createSubscriber(sid, { id: 'live', userId: 'u', tenantId: 't', after: 0 });
    for (const suffix of ['stream', 'meta', 'ids', 'session', 'subs', 'sub:live']) {
      assert.equal(await srv.command('PTTL', base + suffix), -1, `${suffix} has no TTL before the end`);
    }
    const result = await engine.transitionSession(sid, {
      expectedVersion: 1,
      next: { ...session, state: 'failed', version: 2 },
      event: makeEvent(sid, 'failed'),
      endStream: true,
    });
    assert.equal(result.status, 'applied');
    for (const suffix of ['stream', 'meta', 'ids', 'session', 'subs', 'sub:live']) {
      const ttl = (await srv.command('PTTL', base + suffix)) as number;
      assert.ok(ttl > (ttlS - 10) * 1000 && ttl <= ttlS * 1000, `${suffix} TTL ${ttl}`);
    }
    // the listing indexes are not the session's: they keep no TTL and skip it once it is gone
    assert.equal(await srv.command('PTTL', `${prefix}ix:{t}:tenant`), -1);
  });

  it('a refused transition (conflict, not found, ended stream) writes and publishes nothing', async () => {
    const prefix = keyPrefix();
    const engine = await connect({ url: srv.url, keyPrefix: prefix });
    const sid = uniqueId('s');
    const base = `${prefix}{${sid}}:`;
    const { session } = await engine.createSession(
      { id: sid, tenantId: 't', ownerId: 'o', createdAt: 'now' },
      undefined,
      makeEvent(sid, 'created'),
    );
    const listener = await srv.client();
    try {
      await listener.subscribe(`${base}n`);
      const snapshot = async () => ({
        keys: ((await srv.command('KEYS', `${prefix}*`)) as string[]).sort(),
        session: await srv.command('GET', `${base}session`),
        meta: await srv.command('HGETALL', `${base}meta`),
        xlen: await srv.command('XLEN', `${base}stream`),
      });
      const before = await snapshot();
      const conflict = await engine.transitionSession(sid, {
        expectedVersion: 2,
        next: { ...session, state: 'connecting', version: 3 },
        event: makeEvent(sid, 'x'),
        endStream: false,
      });
      assert.equal(conflict.status, 'conflict');
      assert.deepEqual(await snapshot(), before);
      const missing = await engine.transitionSession(uniqueId('none'), {
        expectedVersion: 1,
        next: { ...session, state: 'connecting', version: 2 },
        event: makeEvent(sid, 'y'),
        endStream: false,
      });
      assert.equal(missing.status, 'not_found');
      assert.deepEqual(await snapshot(), before);
      await engine.endStream(sid);
      const ended = await snapshot();
      await assert.rejects(
        engine.transitionSession(sid, {
          expectedVersion: 1,
          next: { ...session, state: 'failed', version: 2 },
          event: makeEvent(sid, 'z'),
          endStream: true,
        }),
        /the stream has ended/,
      );
      assert.deepEqual(await snapshot(), ended);
      await sleep(100);
      assert.deepEqual(listener.messages, [], 'no notice for a refused change');
    } finally {
      listener.close();
    }
  });

  it('a listing skips index entries whose record is gone, and drops them once they are old', async () => {
    const prefix = keyPrefix();
    const clock = new ManualClock(Date.UTC(2026, 10, 28, 12));
    const engine = await connect({ url: srv.url, keyPrefix: prefix, clock });
    const at = (s: number) => new Date(clock.now() - s * 1000).toISOString();
    for (let i = 0; i < 6; i++) {
      await engine.createSession({ id: `ls${i}`, tenantId: 'lt', ownerId: 'o', createdAt: at(i) });
    }
    // as if retention expired them (or their creation is still under way)
    await srv.command('DEL', `${prefix}{ls0}:session`, `${prefix}{ls2}:session`, `${prefix}{ls3}:session`);
    const ids = async (limit: number) => {
      const out: string[] = [];
      let after;
      for (;;) {
        const page = await engine.listSessions({ tenantId: 'lt', limit, ...(after ? { after } : {}) });
        out.push(...page.sessions.map((s) => s.id));
        if (!page.next) return out;
        after = page.next;
      }
    };
    assert.deepEqual(await ids(1), ['ls1', 'ls4', 'ls5']);
    assert.deepEqual(await ids(2), ['ls1', 'ls4', 'ls5']);
    const first = await engine.listSessions({ tenantId: 'lt', limit: 2 });
    assert.deepEqual(
      first.sessions.map((s) => s.id),
      ['ls1', 'ls4'],
    );
    // young entries stay (their record may be being written); old ones are dropped
    assert.equal(await srv.command('ZCARD', `${prefix}ix:{lt}:tenant`), 6);
    clock.advance(11 * 60_000);
    await ids(10);
    assert.equal(await srv.command('ZCARD', `${prefix}ix:{lt}:tenant`), 3);
    assert.equal(await srv.command('ZCARD', `${prefix}ix:{lt}:owner:o`), 6, 'each index is pruned when read');
  });

  it('release puts a subscriber on a TTL a little longer than the window; takeover removes it', async () => {
    const prefix = keyPrefix();
    const engine = await connect({ url: srv.url, keyPrefix: prefix });
    const sid = uniqueId('s');
    const key = `${prefix}{${sid}}:sub:s1`;
    await engine.createSubscriber(sid, { id: 's1', userId: 'u', tenantId: 't', after: 0 });
    await engine.releaseSubscriber(sid, 's1', 1, Date.now(), 10_000);
    const ttl = (await srv.command('PTTL', key)) as number;
    assert.ok(ttl > 10_000 && ttl <= 15_000, `TTL ${ttl}`);
    await engine.takeoverSubscriber(sid, 's1', Date.now(), 10_000);
    assert.equal(await srv.command('PTTL', key), -1);
  });

  it('drops a stream whose meta was lost and starts a new epoch at seq 1', async () => {
    const prefix = keyPrefix();
    const engine = await connect({ url: srv.url, keyPrefix: prefix });
    const sid = uniqueId('s');
    const old = await appendIds(engine, sid, 'a', 'b', 'c');
    await srv.command('DEL', `${prefix}{${sid}}:meta`);
    const head = await engine.head(sid);
    assert.notEqual(head.epoch, old.epoch);
    assert.equal(head.headSeq, 0);
    const read = await engine.read(sid, 0, 10);
    assert.deepEqual(read.events, []);
    assert.equal(read.firstSeq, 1);
    // old eventIds belonged to the lost epoch: they are new events now
    const again = await appendIds(engine, sid, 'a');
    assert.deepEqual(again.outcomes, [{ seq: 1, duplicate: false }]);
    assert.equal(again.epoch, head.epoch);
    assert.equal(await srv.command('XLEN', `${prefix}{${sid}}:stream`), 1);
  });

  /** A session with events a, b, c whose meta was rolled back to head 1 behind its stream. */
  async function metaBehindStream() {
    const prefix = keyPrefix();
    const engine = await connect({ url: srv.url, keyPrefix: prefix });
    const sid = uniqueId('s');
    const old = await appendIds(engine, sid, 'a', 'b', 'c');
    await srv.command('HSET', `${prefix}{${sid}}:meta`, 'head', 1);
    const eventIds = async () => (await engine.read(sid, 0, 10)).events.map((e) => e.event.eventId);
    return { engine, sid, oldEpoch: old.epoch, eventIds };
  }

  it('starts a new epoch rather than reuse seqs when meta is behind its stream', async () => {
    const { engine, sid, oldEpoch, eventIds } = await metaBehindStream();
    const next = await appendIds(engine, sid, 'd');
    assert.notEqual(next.epoch, oldEpoch);
    assert.deepEqual(next.outcomes, [{ seq: 1, duplicate: false }]);
    assert.deepEqual(await eventIds(), ['d']);
  });

  it('notices meta behind its stream in a batch of duplicates only: no XADD is refused, so it reads', async () => {
    const { engine, sid, oldEpoch } = await metaBehindStream();
    const dups = await appendIds(engine, sid, 'a');
    assert.notEqual(dups.epoch, oldEpoch);
    assert.deepEqual(dups.outcomes, [{ seq: 1, duplicate: false }]);
  });

  it('restarts a whole batch that begins with a duplicate when its first XADD is refused', async () => {
    const { engine, sid, oldEpoch, eventIds } = await metaBehindStream();
    const mixed = await appendIds(engine, sid, 'a', 'd');
    assert.notEqual(mixed.epoch, oldEpoch);
    assert.deepEqual(mixed.outcomes, [
      { seq: 1, duplicate: false },
      { seq: 2, duplicate: false },
    ]);
    assert.deepEqual(await eventIds(), ['a', 'd']);
  });

  it('fails an append on a stream key of another type, without starting a new epoch', async () => {
    const prefix = keyPrefix();
    const engine = await connect({ url: srv.url, keyPrefix: prefix });
    const sid = uniqueId('s');
    const first = await appendIds(engine, sid, 'a');
    await srv.command('DEL', `${prefix}{${sid}}:stream`);
    await srv.command('SET', `${prefix}{${sid}}:stream`, 'not a stream');
    await assert.rejects(appendIds(engine, sid, 'b'), /WRONGTYPE/);
    assert.equal(await srv.command('HGET', `${prefix}{${sid}}:meta`, 'epoch'), first.epoch);
  });

  it('reports AOF persistence and logs it without a warning', async () => {
    const { lines, logger } = memoryLogger();
    const engine = await connect({ url: srv.url, logger });
    assert.deepEqual(await engine.checkPersistence(), { aof: true, appendfsync: 'always', source: 'config' });
    assert.equal(lines.filter((l) => l.level === 'warn').length, 0);
    assert.ok(lines.some((l) => l.level === 'info' && /AOF persistence is on/.test(l.msg)));
  });

  it('surfaces a server-side defect as itself, not as an outage', async () => {
    const prefix = keyPrefix();
    const engine = await connect({ url: srv.url, keyPrefix: prefix });
    const sid = uniqueId('s');
    await srv.command('SET', `${prefix}{${sid}}:meta`, 'not a hash');
    await assert.rejects(engine.head(sid), (err: Error) => {
      assert.ok(!(err instanceof EngineUnavailableError));
      assert.match(err.message, /WRONGTYPE/);
      return true;
    });
  });

  it('rejects with EngineUnavailableError after close', async () => {
    const engine = await connect({ url: srv.url });
    await engine.close();
    await assert.rejects(engine.head(uniqueId('s')), EngineUnavailableError);
    await engine.close();
  });
});

describe('redis engine: restarts, data loss and outages', { skip: needsServer }, () => {
  it('a restart with AOF keeps seqs, epoch, events and checkpoints', async () => {
    const srv = await RedisServer.start({ aof: true, appendfsync: 'everysec' });
    try {
      const prefix = keyPrefix();
      const engine = await connect({ url: srv.url, keyPrefix: prefix });
      const sid = uniqueId('s');
      const before = await appendIds(engine, sid, 'a', 'b', 'c');
      await engine.createSubscriber(sid, { id: 'sub', userId: 'u', tenantId: 't', after: 0 });
      await engine.saveCheckpoint(sid, 'sub', 1, 2);

      await srv.restart(); // SIGTERM: Redis writes and fsyncs its AOF before it exits

      // the same engine reconnects by itself
      const head = await eventually(() => engine.head(sid));
      assert.equal(head.epoch, before.epoch);
      assert.equal(head.headSeq, 3);
      assert.equal((await engine.getSubscriber(sid, 'sub'))?.checkpoint, 2);
      assert.deepEqual(
        (await engine.read(sid, 0, 10)).events.map((e) => e.event.eventId),
        ['a', 'b', 'c'],
      );
      const next = await appendIds(engine, sid, 'c', 'd');
      assert.deepEqual(next.outcomes, [
        { seq: 3, duplicate: true },
        { seq: 4, duplicate: false },
      ]);
      assert.equal(next.epoch, before.epoch);

      // and a fresh engine (another node, or the next deploy) sees the same
      const other = await connect({ url: srv.url, keyPrefix: prefix });
      assert.deepEqual(await other.head(sid), { headSeq: 4, epoch: before.epoch });
    } finally {
      await srv.stop();
    }
  });

  it('a crash (SIGKILL) with appendfsync always loses no acknowledged append', async () => {
    const srv = await RedisServer.start({ aof: true, appendfsync: 'always' });
    try {
      const engine = await connect({ url: srv.url });
      const sid = uniqueId('s');
      const before = await appendIds(engine, sid, 'a', 'b');
      await srv.kill();
      await assert.rejects(appendIds(engine, sid, 'c'), EngineUnavailableError);
      await srv.restart();
      const head = await eventually(() => engine.head(sid));
      assert.deepEqual(head, { headSeq: 2, epoch: before.epoch });
    } finally {
      await srv.stop();
    }
  });

  it('FLUSHALL gives a new epoch, seqs restart at 1 and subscribers are gone', async () => {
    const srv = await RedisServer.start();
    try {
      const engine = await connect({ url: srv.url });
      const sid = uniqueId('s');
      const before = await appendIds(engine, sid, 'a', 'b', 'c');
      await engine.createSubscriber(sid, { id: 'sub', userId: 'u', tenantId: 't', after: 3 });
      await srv.flushall();
      const head = await engine.head(sid);
      assert.notEqual(head.epoch, before.epoch);
      assert.equal(head.headSeq, 0);
      const next = await appendIds(engine, sid, 'a');
      assert.deepEqual(next.outcomes, [{ seq: 1, duplicate: false }]);
      assert.equal(next.epoch, head.epoch);
      assert.equal(await engine.getSubscriber(sid, 'sub'), undefined);
    } finally {
      await srv.stop();
    }
  });

  it('without persistence: a loud warning at connect, and a restart gives a new epoch from seq 1', async () => {
    const srv = await RedisServer.start({ aof: false });
    try {
      const { lines, logger } = memoryLogger();
      const engine = await connect({ url: srv.url, logger });
      assert.ok(lines.some((l) => l.level === 'warn' && /PERSISTENCE IS OFF/.test(l.msg)));
      assert.deepEqual(await engine.checkPersistence(), {
        aof: false,
        appendfsync: 'always',
        source: 'config',
      });
      const sid = uniqueId('s');
      const before = await appendIds(engine, sid, 'a', 'b');
      await srv.restart();
      const head = await eventually(() => engine.head(sid));
      assert.notEqual(head.epoch, before.epoch);
      assert.equal(head.headSeq, 0);
      assert.deepEqual((await appendIds(engine, sid, 'c')).outcomes, [{ seq: 1, duplicate: false }]);
    } finally {
      await srv.stop();
    }
  });

  it('a frozen Redis fails calls with EngineUnavailableError, and they work again after it resumes', async () => {
    const srv = await RedisServer.start();
    const commandTimeoutMs = 300;
    try {
      const engine = await connect({ url: srv.url, commandTimeoutMs });
      const sid = uniqueId('s');
      await appendIds(engine, sid, 'a');
      srv.pause();
      const started = Date.now();
      await assert.rejects(appendIds(engine, sid, 'b'), EngineUnavailableError);
      const elapsed = Date.now() - started;
      assert.ok(elapsed < 5000, `took ${elapsed} ms with a ${commandTimeoutMs} ms command timeout`);
      await assert.rejects(engine.ping(), EngineUnavailableError);
      await assert.rejects(engine.read(sid, 0, 10), EngineUnavailableError);
      srv.resume();
      await eventually(() => engine.ping());
      // the timed-out append may or may not have run; retrying it is safe either way
      const retry = await appendIds(engine, sid, 'b');
      assert.equal(retry.outcomes[0]?.seq, 2);
      assert.deepEqual(
        (await engine.read(sid, 0, 10)).events.map((e) => [e.seq, e.event.eventId]),
        [
          [1, 'a'],
          [2, 'b'],
        ],
      );
    } finally {
      srv.resume();
      await srv.stop();
    }
  });

  it('connect rejects with EngineUnavailableError when nothing listens', async () => {
    const port = await freePort();
    await assert.rejects(
      RedisEngine.connect({
        url: `redis://127.0.0.1:${port}`,
        clock: new ManualClock(),
        limits: CONTRACT_LIMITS,
        commandTimeoutMs: 300,
      }),
      EngineUnavailableError,
    );
  });
});

describe('redis engine: a head read of a session with no record', () => {
  it('makes a meta that expires (a resume with an old token must not leave a key for ever); with a record, one that stays', async () => {
    const prefix = keyPrefix();
    const engine = await connect({ url, keyPrefix: prefix });
    const redis = new Redis(url);
    try {
      const ghost = uniqueId('gone');
      await engine.head(ghost);
      const ttl = await redis.pttl(sessionKeys(prefix, ghost).meta);
      assert.ok(ttl > 0 && ttl <= CONTRACT_LIMITS.historyTtlAfterEndS * 1000, `PTTL ${ttl}`);

      const live = uniqueId('live');
      await engine.createSession({
        id: live,
        tenantId: 't',
        ownerId: 'o',
        createdAt: '2026-12-02T00:00:00.000Z',
      });
      await redis.del(sessionKeys(prefix, live).meta); // history lost, record kept
      await engine.head(live);
      assert.equal(await redis.pttl(sessionKeys(prefix, live).meta), -1, 'a live session keeps its meta');
    } finally {
      redis.disconnect();
    }
  });
});
