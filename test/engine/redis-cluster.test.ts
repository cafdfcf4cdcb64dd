import assert from 'node:assert/strict';
import calculateSlot from 'cluster-key-slot';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Engine, SessionNotice } from '../../src/engine/engine.ts';
import { parseClusterNodes } from '../../src/engine/redis/client.ts';
import { RedisEngine, type RedisEngineOptions } from '../../src/engine/redis/redis-engine.ts';
import { scriptsFor } from '../../src/engine/redis/scripts/index.ts';
import { EngineUnavailableError } from '../../src/errors/gateway-error.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { RedisCluster } from '../../chaos/toolkit/redis-cluster.ts';
import { freePort } from '../../chaos/toolkit/ports.ts';
import { subscribe } from '../helpers/ws-client.ts';
import { CONTRACT_LIMITS, engineContract, makeEvent, uniqueId } from './contract.ts';

/**
 * The redis engine on a Redis Cluster (ARCHITECTURE-NOTES decision 6): a private
 * 3-master cluster for this file, the engine contract on it, the key layout across the
 * masters, a check of every script against what Redis actually ran, and two engines
 * ("nodes") sharing sessions over sharded pub/sub.
 */
const cluster = await RedisCluster.start();
cluster.unref();

let run = 0;
function keyPrefix(): string {
  run += 1;
  return `c${process.pid}-${run}-${randomBytes(3).toString('hex')}:`;
}

const open: RedisEngine[] = [];
async function connect(options: Partial<RedisEngineOptions> = {}): Promise<RedisEngine> {
  const engine = await RedisEngine.connect({
    clusterNodes: cluster.nodes,
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
  await cluster.stop();
});

engineContract('redis cluster', async (clock) => {
  const engine = await RedisEngine.connect({
    clusterNodes: cluster.nodes,
    clock,
    limits: CONTRACT_LIMITS,
    keyPrefix: keyPrefix(),
  });
  return { engine, cleanup: () => engine.close() };
});

async function appendIds(engine: Engine, sid: string, ...ids: string[]) {
  return engine.append(
    sid,
    ids.map((id) => makeEvent(sid, id)),
  );
}

/** Polls until `check` holds (notices arrive asynchronously). */
async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Retries `fn` until it resolves (the clients recover on their own after a node restart). */
async function eventually<T>(fn: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
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

function hashTag(key: string): string {
  const open = key.indexOf('{');
  const close = key.indexOf('}', open + 1);
  return open >= 0 && close > open + 1 ? key.slice(open + 1, close) : key;
}

/** Every session call at least once, with enough subscribers to prune the index. */
async function exerciseEverything(engine: RedisEngine, sid: string): Promise<void> {
  const created = makeEvent(sid, 'created');
  await engine.createSession(
    { id: sid, tenantId: 'tenant-x', ownerId: 'o', createdAt: 'now' },
    'idem-1',
    created,
  );
  await engine.createSession(
    { id: sid, tenantId: 'tenant-x', ownerId: 'o', createdAt: 'now' },
    'idem-1',
    created,
  );
  const session = (await engine.getSession(sid))!;
  await engine.transitionSession(sid, {
    expectedVersion: 1,
    next: { ...session, state: 'connecting', version: 2 },
    event: makeEvent(sid, 'connecting'),
    endStream: false,
  });
  await engine.listSessions({ tenantId: 'tenant-x', limit: 2 });
  await engine.listSessions({ tenantId: 'tenant-x', ownerId: 'o', limit: 2 });
  await appendIds(engine, sid, 'a', 'b', 'c');
  await engine.read(sid, 0, 10);
  await engine.head(sid);
  await engine.createSubscriber(sid, { id: 'sub-1', userId: 'u', tenantId: 't', after: 0 });
  await engine.getSubscriber(sid, 'sub-1');
  await engine.saveCheckpoint(sid, 'sub-1', 1, 2);
  await engine.releaseSubscriber(sid, 'sub-1', 1, Date.now(), 60_000);
  await engine.takeoverSubscriber(sid, 'sub-1', Date.now(), 60_000);
  await engine.endSubscriber(sid, 'sub-1');
  // past the prune threshold (64): the 65th create prunes the index (loPruneSubscribers)
  for (let i = 0; i < 66; i++) {
    await engine.createSubscriber(sid, { id: `many-${i}`, userId: 'u', tenantId: 't', after: 0 });
  }
  await engine.endStream(sid);
  await engine.endStream(sid);
}

describe('redis engine on a cluster: layout and scripts', () => {
  it('spreads sessions over every master, each session in one slot, and they all work', async () => {
    const prefix = keyPrefix();
    const engine = await connect({ keyPrefix: prefix });
    const sids = Array.from({ length: 24 }, (_, i) => `spread-${i}`);
    await Promise.all(
      sids.map(async (sid) => {
        await engine.createSession({ id: sid, tenantId: 't', ownerId: 'o', createdAt: 'now' });
        await appendIds(engine, sid, 'a', 'b');
        await engine.createSubscriber(sid, { id: 's', userId: 'u', tenantId: 't', after: 0 });
      }),
    );
    const byNode = await cluster.keysByNode(`${prefix}*`);
    const sessionsByNode = new Map<number, Set<string>>();
    // (the tenant's listing indexes live in the tenant's slot, not a session's)
    const sessionKeysOf = (keys: string[]) => keys.filter((k) => !k.startsWith(`${prefix}ix:`));
    for (const [port, keys] of byNode) sessionsByNode.set(port, new Set(sessionKeysOf(keys).map(hashTag)));
    // every master holds some sessions, and a session's keys are all on one master …
    for (const [port, sessions] of sessionsByNode) assert.ok(sessions.size > 0, `no session on :${port}`);
    const total = [...sessionsByNode.values()].reduce((n, s) => n + s.size, 0);
    assert.equal(total, sids.length);
    // … in one slot (stream, meta, ids, session, subs, sub:s and the channel)
    for (const sid of sids) {
      const base = `${prefix}{${sid}}:`;
      const slots = new Set(
        await Promise.all(
          ['stream', 'meta', 'ids', 'session', 'subs', 'sub:s', 'n'].map((s) => cluster.keyslot(base + s)),
        ),
      );
      assert.equal(slots.size, 1, `${sid} spans slots ${[...slots].join(',')}`);
      const port = await cluster.masterOf([...slots][0]!);
      assert.ok(sessionsByNode.get(port)?.has(sid), `${sid} is not on the master of its slot`);
    }
    for (const sid of sids) {
      assert.deepEqual(
        (await engine.read(sid, 0, 10)).events.map((e) => e.event.eventId),
        ['a', 'b'],
      );
      assert.equal((await engine.getSubscriber(sid, 's'))?.checkpoint, 0);
      assert.equal((await engine.getSession(sid))?.id, sid);
    }
  });

  it('every script touches only keys it declares, all in one slot, and publishes there (checked with MONITOR)', async () => {
    const prefix = keyPrefix();
    const engine = await connect({ keyPrefix: prefix });
    const monitors = await Promise.all(cluster.ports.map((port) => cluster.monitor(port)));
    try {
      await Promise.all(
        ['audit-a', 'audit-b', 'audit-c', 'audit-d'].map((sid) => exerciseEverything(engine, sid)),
      );
    } finally {
      for (const m of monitors) m.stop();
    }
    const shaToName = new Map<string, string>();
    const luaToName = new Map<string, string>();
    const { createHash } = await import('node:crypto');
    for (const [name, def] of Object.entries(scriptsFor('SPUBLISH'))) {
      shaToName.set(createHash('sha1').update(def.lua).digest('hex'), name);
      luaToName.set(def.lua, name);
    }
    const seen = new Set<string>();
    const getKeys = new Map<string, string[]>();
    let luaCommands = 0;
    for (const monitor of monitors) {
      let current: { name: string; keys: Set<string>; slot: string } | undefined;
      for (const line of monitor.lines) {
        const parsed = parseMonitorLine(line);
        if (!parsed || !parsed.args[0]) continue;
        const command = parsed.args[0].toUpperCase();
        if (!parsed.lua) {
          current = undefined;
          if (command !== 'EVAL' && command !== 'EVALSHA') continue;
          const body = parsed.args[1]!;
          const name = command === 'EVAL' ? luaToName.get(body) : shaToName.get(body);
          assert.ok(name, `a script that is not the engine's ran: ${body.slice(0, 60)}`);
          const numkeys = Number(parsed.args[2]);
          const keys = parsed.args.slice(3, 3 + numkeys);
          if (!keys.some((k) => k.startsWith(prefix))) continue; // another test's engine
          const tags = new Set(keys.map(hashTag));
          assert.equal(tags.size, 1, `${name} declares keys of several hash tags: ${keys.join(' ')}`);
          current = { name, keys: new Set(keys), slot: [...tags][0]! };
          seen.add(name);
          continue;
        }
        if (!current) continue;
        luaCommands += 1;
        const rest = parsed.args.slice(1);
        if (command === 'PUBLISH') assert.fail(`${current.name} used PUBLISH on a cluster`);
        if (command === 'SPUBLISH') {
          assert.equal(hashTag(rest[0]!), current.slot, `${current.name} publishes outside its slot`);
          continue;
        }
        const cacheKey = parsed.args.join('\u0000');
        let keys = getKeys.get(cacheKey);
        if (!keys) {
          keys = (await cluster.command(undefined, 'COMMAND', 'GETKEYS', ...parsed.args)) as string[];
          getKeys.set(cacheKey, keys);
        }
        for (const key of keys) {
          assert.ok(
            current.keys.has(key),
            `${current.name} touched ${key}, which it did not declare (${command})`,
          );
        }
      }
    }
    assert.ok(luaCommands > 100, `only ${luaCommands} script commands seen`);
    // loNotify is for one Redis only: on a cluster the engine sends each notice as an SPUBLISH
    const sessionScripts = Object.keys(scriptsFor('SPUBLISH')).filter((name) => name !== 'loNotify');
    assert.deepEqual([...seen].sort(), sessionScripts.sort(), 'every script ran at least once');
  });

  it('endStream covers subscriber keys on the retention TTL, and a repeat does not extend them', async () => {
    const prefix = keyPrefix();
    const engine = await connect({
      keyPrefix: prefix,
      limits: { historyMaxEvents: 5, historyTtlAfterEndS: 600 },
    });
    const sid = uniqueId('end');
    const base = `${prefix}{${sid}}:`;
    const port = await cluster.masterOf(await cluster.keyslot(base));
    await appendIds(engine, sid, 'a');
    await engine.createSubscriber(sid, { id: 'live', userId: 'u', tenantId: 't', after: 0 });
    await engine.createSubscriber(sid, { id: 'gone', userId: 'u', tenantId: 't', after: 0 });
    await engine.releaseSubscriber(sid, 'gone', 1, Date.now(), 1000);
    await engine.endStream(sid);
    for (const suffix of ['stream', 'meta', 'ids', 'subs', 'sub:live']) {
      const ttl = (await cluster.command(port, 'PTTL', base + suffix)) as number;
      assert.ok(ttl > 590_000 && ttl <= 600_000, `${suffix} TTL ${ttl}`);
    }
    assert.ok(((await cluster.command(port, 'PTTL', `${base}sub:gone`)) as number) <= 6000);
    // a subscriber created after the end follows the TTL by itself
    await engine.createSubscriber(sid, { id: 'late', userId: 'u', tenantId: 't', after: 0 });
    const late = (await cluster.command(port, 'PTTL', `${base}sub:late`)) as number;
    assert.ok(late > 0 && late <= 600_000, `late TTL ${late}`);
    await sleep(20);
    await engine.endStream(sid);
    assert.ok(((await cluster.command(port, 'PTTL', `${base}meta`)) as number) < 600_000 - 10);
  });

  it('prunes expired subscribers from the index once it is large, keeping live ones', async () => {
    const prefix = keyPrefix();
    const engine = await connect({ keyPrefix: prefix });
    const sid = uniqueId('prune');
    const base = `${prefix}{${sid}}:`;
    const port = await cluster.masterOf(await cluster.keyslot(base));
    for (let i = 0; i < 64; i++) {
      await engine.createSubscriber(sid, { id: `s${i}`, userId: 'u', tenantId: 't', after: 0 });
    }
    // three of them expire (as Redis's TTL would do it)
    await cluster.command(port, 'DEL', `${base}sub:s1`, `${base}sub:s2`, `${base}sub:s3`);
    assert.equal(await cluster.command(port, 'SCARD', `${base}subs`), 64);
    await engine.createSubscriber(sid, { id: 'one-more', userId: 'u', tenantId: 't', after: 0 });
    const members = (await cluster.command(port, 'SMEMBERS', `${base}subs`)) as string[];
    assert.equal(members.length, 62);
    assert.ok(!members.includes('s1') && members.includes('s0') && members.includes('one-more'));
  });

  it('reports the weakest persistence of the masters (these run without AOF)', async () => {
    const lines: string[] = [];
    const engine = await connect({
      logger: { warn: (_o, msg) => lines.push(msg), info: (_o, msg) => lines.push(msg) },
    });
    assert.equal(engine.topology, 'cluster');
    const report = await engine.checkPersistence();
    assert.deepEqual(report, { aof: false, appendfsync: 'everysec', source: 'config' });
    assert.ok(lines.some((l) => /PERSISTENCE IS OFF/.test(l)));
  });

  it('needs exactly one of url and clusterNodes, and validates the seeds', async () => {
    const base = { clock: new ManualClock(), limits: CONTRACT_LIMITS };
    await assert.rejects(RedisEngine.connect({ ...base }), /exactly one/);
    await assert.rejects(
      RedisEngine.connect({ ...base, url: 'redis://127.0.0.1:1', clusterNodes: cluster.nodes }),
      /exactly one/,
    );
    await assert.rejects(RedisEngine.connect({ ...base, clusterNodes: ['nohost'] }), /host and port/);
    assert.deepEqual(parseClusterNodes(['10.0.0.1:7000', ' redis://10.0.0.2:7001 ', '[::1]:7002']), {
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
        { host: '::1', port: 7002 },
      ],
      auth: {},
    });
    assert.deepEqual(
      parseClusterNodes(['rediss://app:s%3Acret@a:7000', 'rediss://app:s%3Acret@b:7000']).auth,
      {
        username: 'app',
        password: 's:cret',
        tls: {},
      },
    );
    assert.throws(() => parseClusterNodes(['redis://a:1', 'rediss://b:2']), /same scheme/);
    assert.throws(() => parseClusterNodes(['redis://a:1/2']), /database/);
    assert.throws(() => parseClusterNodes(['http://a:1']), /scheme/);
  });

  it('connect rejects with EngineUnavailableError when no seed answers', async () => {
    const port = await freePort();
    const started = Date.now();
    await assert.rejects(
      RedisEngine.connect({
        clusterNodes: [`127.0.0.1:${port}`],
        clock: new ManualClock(),
        limits: CONTRACT_LIMITS,
        commandTimeoutMs: 300,
      }),
      EngineUnavailableError,
    );
    assert.ok(Date.now() - started < 5000);
  });

  it('connect rejects with EngineUnavailableError when the nodes answer but form no cluster', async () => {
    const lone = await RedisCluster.start({ masters: 1, create: false });
    try {
      const started = Date.now();
      await assert.rejects(
        RedisEngine.connect({
          clusterNodes: lone.nodes,
          clock: new ManualClock(),
          limits: CONTRACT_LIMITS,
          commandTimeoutMs: 300,
        }),
        (err: Error) => err instanceof EngineUnavailableError && /not ready/.test(err.message),
      );
      assert.ok(Date.now() - started < 5000);
    } finally {
      await lone.stop();
    }
  });
});

describe('redis engine on a cluster: a master that does not answer', () => {
  it("costs peekHeads only that master's heads (null), and the call rejects only when no master answers", async () => {
    const prefix = keyPrefix();
    const engine = await connect({ keyPrefix: prefix, commandTimeoutMs: 300 });
    const masters = (await cluster.topology()).map((m) => m.master);
    const byMaster = new Map<number, string>();
    while (byMaster.size < masters.length) {
      const id = uniqueId('s');
      const port = await cluster.masterOf(await cluster.keyslot(`${prefix}{${id}}:meta`));
      if (!byMaster.has(port)) byMaster.set(port, id);
    }
    const ids = masters.map((port) => byMaster.get(port)!);
    for (const id of ids) await engine.append(id, [makeEvent(id, 'e1')]);
    const stopped = masters[0]!;
    // SIGSTOP for less than the node timeout: the cluster stays up
    cluster.pause(stopped);
    try {
      const heads = await engine.peekHeads(ids);
      assert.equal(heads[0], null, 'the stopped master');
      for (const head of heads.slice(1)) assert.equal(head?.headSeq, 1);
      await assert.rejects(engine.peekHeads([ids[0]!]), EngineUnavailableError);
    } finally {
      await cluster.resume(stopped);
    }
    assert.equal((await engine.peekHeads([ids[0]!]))[0]?.headSeq, 1);
  });
});

describe('redis engine on a cluster: a master that does not answer, during a burst of checkpoints', () => {
  it("does not hold back the other masters' checkpoints until its own time out", async () => {
    const prefix = keyPrefix();
    const engine = await connect({ keyPrefix: prefix, commandTimeoutMs: 5_000 });
    const ranges = (await cluster.command(undefined, 'CLUSTER', 'SLOTS')) as [
      number,
      number,
      [string, number],
    ][];
    const masterOf = (id: string): number => {
      const slot = calculateSlot(`${prefix}{${id}}:meta`);
      return ranges.find(([from, to]) => slot >= from && slot <= to)![2][1];
    };
    // enough sessions that the stopped master's share alone is more than the pace budget (512)
    const ids = Array.from({ length: 2_400 }, (_, i) => `burst-${i}`);
    const stopped = masterOf(ids[0]!);
    await Promise.all(ids.map((id) => engine.saveCheckpoint(id, 'sub', 1, 1))); // scripts loaded everywhere
    cluster.pause(stopped);
    try {
      let stalledSettled = 0;
      const others: Promise<number>[] = [];
      for (const id of ids) {
        const write = engine.saveCheckpoint(id, 'sub', 1, 2);
        if (masterOf(id) !== stopped) others.push(write);
        else
          void write.then(
            () => stalledSettled++,
            () => stalledSettled++,
          );
      }
      await Promise.all(others);
      assert.equal(
        stalledSettled,
        0,
        "the others' checkpoints were all written while the stopped master's were still out",
      );
      assert.ok(ids.filter((id) => masterOf(id) === stopped).length > 512);
    } finally {
      await cluster.resume(stopped);
    }
  });
});

describe('redis engine on a cluster: two nodes', () => {
  it('a watcher on one node gets head and takeover notices of appends and takeovers made on the other', async () => {
    const prefix = keyPrefix();
    const a = await connect({ keyPrefix: prefix });
    const b = await connect({ keyPrefix: prefix });
    // sessions on every master, so every sharded subscriber connection is used
    const sids = Array.from({ length: 9 }, (_, i) => `watched-${i}`);
    const ports = new Set(
      await Promise.all(sids.map(async (sid) => cluster.masterOf(await cluster.keyslot(`{${sid}}`)))),
    );
    assert.equal(ports.size, 3, 'the sessions span every master');
    const notices = new Map<string, SessionNotice[]>(sids.map((sid) => [sid, []]));
    const watches = sids.map((sid) => a.watch(sid, (n) => notices.get(sid)!.push(n)));
    await Promise.all(watches.map((w) => w.ready));

    for (const sid of sids) {
      await b.createSubscriber(sid, { id: 'sub', userId: 'u', tenantId: 't', after: 0 });
      const appended = await appendIds(b, sid, 'x', 'y');
      const taken = await b.takeoverSubscriber(sid, 'sub', Date.now(), 60_000);
      assert.equal(taken?.generation, 2);
      await until(() => notices.get(sid)!.length >= 2, `notices of ${sid}`);
      assert.deepEqual(notices.get(sid), [
        { kind: 'head', headSeq: 2, epoch: appended.epoch },
        { kind: 'takeover', generation: 2, subscriberId: 'sub' },
      ]);
    }

    // after stop, nothing more arrives on that node
    watches[0]!.stop();
    await sleep(50);
    await appendIds(b, sids[0]!, 'z');
    await appendIds(b, sids[1]!, 'z');
    await until(() => notices.get(sids[1]!)!.length === 3, 'the still watched session');
    assert.equal(notices.get(sids[0]!)!.length, 2);
    for (const w of watches) w.stop();
  });

  it('concurrent appends from both nodes get contiguous seqs, each event exactly once', async () => {
    const prefix = keyPrefix();
    const a = await connect({
      keyPrefix: prefix,
      limits: { historyMaxEvents: 10_000, historyTtlAfterEndS: 60 },
    });
    const b = await connect({
      keyPrefix: prefix,
      limits: { historyMaxEvents: 10_000, historyTtlAfterEndS: 60 },
    });
    const sids = ['busy-1', 'busy-2', 'busy-3', 'busy-4'];
    await Promise.all(
      sids.flatMap((sid) =>
        [a, b].map(async (engine, n) => {
          for (let batch = 0; batch < 10; batch++) {
            const ids = Array.from({ length: 5 }, (_, i) => `n${n}-${batch}-${i}`);
            // every other batch also repeats one event of the other node: a duplicate at most
            if (batch % 2 === 1) ids.push(`n${1 - n}-${batch - 1}-0`);
            await appendIds(engine, sid, ...ids);
          }
        }),
      ),
    );
    for (const sid of sids) {
      const read = await a.read(sid, 0, 1000);
      assert.deepEqual(
        read.events.map((e) => e.seq),
        Array.from({ length: 100 }, (_, i) => i + 1),
      );
      const ids = read.events.map((e) => e.event.eventId);
      assert.equal(new Set(ids).size, 100, 'no event twice');
      assert.deepEqual(await b.head(sid), { headSeq: 100, epoch: read.epoch });
    }
  });

  it('after a master restarts, watchers get resync and notices flow again', async () => {
    const prefix = keyPrefix();
    const a = await connect({ keyPrefix: prefix, commandTimeoutMs: 500 });
    const b = await connect({ keyPrefix: prefix, commandTimeoutMs: 500 });
    const sid = uniqueId('restart');
    const port = await cluster.masterOf(await cluster.keyslot(`{${sid}}`));
    const notices: SessionNotice[] = [];
    const watch = a.watch(sid, (n) => notices.push(n));
    await watch.ready;
    await appendIds(b, sid, 'a');
    await until(() => notices.some((n) => n.kind === 'head'), 'the first head notice');

    await cluster.restart(port);
    await until(() => notices.some((n) => n.kind === 'resync'), 'resync', 10_000);
    // the node came back empty (no persistence): a new epoch, and the notice still arrives
    const appended = await eventually(() => appendIds(b, sid, 'b'));
    await until(
      () => notices.some((n) => n.kind === 'head' && n.epoch === appended.epoch),
      'a head notice after the restart',
      10_000,
    );
    watch.stop();
  });
});

describe('redis engine on a cluster: readiness', () => {
  it('ping rejects while any one master is stopped (SIGSTOP) and resolves again once it answers', async () => {
    // a short command timeout keeps each stop brief; connecting is not what is tested here
    const engine = await eventually(() => connect({ commandTimeoutMs: 300 }));
    await eventually(() => engine.ping());
    for (const port of cluster.ports) {
      cluster.pause(port);
      try {
        // Every probe while it is stopped, naming it: ping reaches every master, not one.
        for (let i = 0; i < 3; i++) {
          await assert.rejects(
            engine.ping(),
            (err: Error) => err instanceof EngineUnavailableError && err.message.includes(`:${port}`),
            `probe ${i} while :${port} is stopped`,
          );
        }
      } finally {
        await cluster.resume(port);
      }
      await eventually(() => engine.ping());
    }
  });
});

describe('gateways on a cluster', () => {
  it("two gateways started with REDIS_CLUSTER_NODES deliver each other's events in order", async () => {
    // REDIS_URL set (empty) so that TEST_ENGINE=redis does not add a single Redis
    const env = {
      REDIS_URL: '',
      REDIS_CLUSTER_NODES: cluster.nodes.join(','),
      REDIS_KEY_PREFIX: keyPrefix(),
    };
    const gateways: TestGateway[] = [];
    try {
      gateways.push(await startTestGateway({ ...env, NODE_ID: 'g1' }));
      gateways.push(await startTestGateway({ ...env, NODE_ID: 'g2' }));
      const [a, b] = gateways as [TestGateway, TestGateway];
      const owner = await a.token('alice');
      const agent = await a.token('bot', 'agent');
      const sessionId = await a.createSession(owner);
      const watcher = await subscribe(a.wsUrl, { sessionId, token: owner, after: 0 }, 'json');
      const pub = (await subscribe(b.wsUrl, { sessionId, token: agent }, 'json')).client;
      for (let i = 0; i < 10; i++) {
        pub.send({
          op: 'pub',
          id: `x${i}`,
          type: 'transcript.partial',
          payload: { segmentId: 's', revision: i, text: `t${i}` },
        });
      }
      const events = await watcher.client.events(11);
      assert.deepEqual(
        events.map((e) => e.seq),
        Array.from({ length: 11 }, (_, i) => i + 1),
      );
      assert.deepEqual(
        events.slice(1).map((e) => e.event.eventId),
        Array.from({ length: 10 }, (_, i) => `x${i}`),
      );
      // the clients' closes complete before the gateways stop
      watcher.client.close();
      pub.close();
      await Promise.all([watcher.client.closed, pub.closed]);
    } finally {
      await Promise.allSettled(gateways.map((g) => g.stop()));
    }
  });
});

/** A MONITOR line: `<time> [<db> <client>|lua] "arg" "arg" …`, with C-style escapes in args. */
function parseMonitorLine(line: string): { lua: boolean; args: string[] } | undefined {
  const match = /^\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$/.exec(line);
  if (!match) return undefined;
  const args: string[] = [];
  const text = match[2]!;
  const escapes: Record<string, number> = { n: 10, r: 13, t: 9, a: 7, b: 8 };
  let i = 0;
  while (i < text.length) {
    if (text[i] !== '"') {
      i++;
      continue;
    }
    i++;
    // Redis escapes every byte outside printable ASCII as \xHH: collect bytes, decode once
    const bytes: number[] = [];
    while (i < text.length && text[i] !== '"') {
      if (text[i] === '\\') {
        const next = text[i + 1]!;
        if (next === 'x') {
          bytes.push(parseInt(text.slice(i + 2, i + 4), 16));
          i += 4;
        } else {
          bytes.push(escapes[next] ?? next.charCodeAt(0));
          i += 2;
        }
        continue;
      }
      bytes.push(text.charCodeAt(i));
      i++;
    }
    i++;
    args.push(Buffer.from(bytes).toString('utf8'));
  }
  return { lua: match[1] === 'lua', args };
}
