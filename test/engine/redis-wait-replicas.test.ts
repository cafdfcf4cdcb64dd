/**
 * `waitReplicas` (REDIS_WAIT_REPLICAS): a write of events resolves only once that many
 * replicas have it (Redis WAIT on the engine's connection), so what the gateway
 * acknowledges survives a failover to one of them. A private master and a real replica
 * (REPLICAOF); a frozen replica (SIGSTOP) is one that cannot confirm.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import { sessionKeys, subscriberKey } from '../../src/engine/redis/keys.ts';
import { RedisEngine } from '../../src/engine/redis/redis-engine.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { unconfirmedWithin } from '../helpers/unconfirmed.ts';
import { RedisServer } from '../../chaos/toolkit/redis-server.ts';
import { RespClient } from '../../chaos/toolkit/resp.ts';
import { CONTRACT_LIMITS, engineContract, makeEvent, uniqueId } from './contract.ts';

/** WAIT gets half of it: 1 s, ample for a replica on this host even on a busy test machine. */
const COMMAND_TIMEOUT_MS = 2000;
let master: RedisServer;
let replica: RedisServer;
const engines: RedisEngine[] = [];

before(async () => {
  master = await RedisServer.start({ aof: false });
  replica = await RedisServer.start({ aof: false });
  await replica.follow(master);
});
beforeEach(() => replica.resume());
after(async () => {
  for (const engine of engines) await engine.close();
  await replica?.stop();
  await master?.stop();
});

async function until(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An engine on the master; `prefix` shares another engine's sessions. */
async function connect(
  waitReplicas: number,
  prefix = `w${randomBytes(3).toString('hex')}:`,
  clock = new ManualClock(),
): Promise<{ engine: RedisEngine; prefix: string }> {
  const engine = await RedisEngine.connect({
    url: master.url,
    clock,
    limits: CONTRACT_LIMITS,
    keyPrefix: prefix,
    commandTimeoutMs: COMMAND_TIMEOUT_MS,
    waitReplicas,
  });
  engines.push(engine);
  return { engine, prefix };
}

const session = () => ({
  id: uniqueId('ses'),
  tenantId: 't',
  ownerId: 'u',
  createdAt: '2026-11-28T12:00:00.000Z',
});

async function onReplica(prefix: string, sessionId: string): Promise<number> {
  return Number(await replica.command('XLEN', sessionKeys(prefix, sessionId).stream));
}

const isUnavailable = unconfirmedWithin(COMMAND_TIMEOUT_MS / 2);

// Every engine behaviour holds with replicas waited for: notices from the engine, reads
// confirmed, all through one master whose replica keeps up.
engineContract('redis, waitReplicas 1', async (clock) => {
  const { engine } = await connect(1, undefined, clock);
  return { engine, cleanup: () => engine.close() };
});

describe('redis engine: waitReplicas', () => {
  it('an append resolves with the events already on the replica', async () => {
    const { engine, prefix } = await connect(1);
    const id = uniqueId('s');
    const result = await engine.append(id, [makeEvent(id, 'e1'), makeEvent(id, 'e2')]);
    assert.equal(result.headSeq, 2);
    assert.equal(await onReplica(prefix, id), 2);
  });

  it('replica frozen: appends, session creates and transitions reject as unavailable within about half the command timeout; a retry after it thaws gets the original seqs', async () => {
    const { engine, prefix } = await connect(1);
    const id = uniqueId('s');
    await engine.append(id, [makeEvent(id, 'e1')]);
    replica.pause();
    const started = performance.now();
    await assert.rejects(engine.append(id, [makeEvent(id, 'e2'), makeEvent(id, 'e3')]), isUnavailable);
    const took = performance.now() - started;
    assert.ok(took >= 950 && took < COMMAND_TIMEOUT_MS, `rejected after ${Math.round(took)} ms`);
    await assert.rejects(engine.createSession(session()), isUnavailable);
    const input = session();
    replica.resume();
    const { session: created } = await engine.createSession(input);
    replica.pause();
    await assert.rejects(
      engine.transitionSession(created.id, {
        expectedVersion: 1,
        next: { ...created, state: 'connecting', version: 2 },
        endStream: false,
        event: makeEvent(created.id, 'connecting'),
      }),
      isUnavailable,
    );

    replica.resume();
    const retry = await engine.append(id, [makeEvent(id, 'e2'), makeEvent(id, 'e3')]);
    assert.deepEqual(
      retry.outcomes.map((o) => [o.seq, o.duplicate]),
      [
        [2, true],
        [3, true],
      ],
      'the master had stored them: the retry is deduplicated',
    );
    await until(async () => (await onReplica(prefix, id)) === 3);
  });

  it('a retry on another connection that finds its events stored (writing nothing) still waits for the replica', async () => {
    // WAIT waits for the replication offset its connection was at after its last command.
    // Redis 7.0 moves that offset on every command, reads too, so the retry's read-only
    // script sets it past the first attempt's write (a Redis that moved it on writes only
    // would answer this WAIT at once).
    const { engine, prefix } = await connect(1);
    const id = uniqueId('s');
    replica.pause();
    await assert.rejects(engine.append(id, [makeEvent(id, 'e1')]), isUnavailable);
    const { engine: again } = await connect(1, prefix);
    await assert.rejects(again.append(id, [makeEvent(id, 'e1')]), isUnavailable);
    const input = session();
    replica.resume();
    const created = await engine.createSession(input, 'idem-1');
    replica.pause();
    await assert.rejects(again.createSession(input, 'idem-1'), isUnavailable);
    replica.resume();
    const retry = await again.append(id, [makeEvent(id, 'e1')]);
    assert.deepEqual(retry.outcomes, [{ seq: 1, duplicate: true }]);
    assert.equal((await again.createSession(input, 'idem-1')).created, false);
    assert.equal(created.created, true);
  });

  it('replica frozen: subscriber creates, takeovers and checkpoints reject as unavailable; thawed, each resolves with the replica holding it', async () => {
    // A subscriber record a failover lost would close its connection 4009 (superseded),
    // a lost takeover would fence its checkpoints, a lost checkpoint replay acked events.
    const { engine, prefix } = await connect(1);
    const id = uniqueId('s');
    const sub = { id: 'sub-1', userId: 'u', tenantId: 't', after: 0 };
    const stored = async (field: string) =>
      String(await replica.command('HGET', subscriberKey(sessionKeys(prefix, id), sub.id), field));
    const unconfirmed = (what: string) => new RegExp(`0 of 1 replicas confirmed ${what} within 1000 ms`);

    replica.pause();
    await assert.rejects(engine.createSubscriber(id, sub), unconfirmed('the subscriber'));
    // nobody holds the refused subscriber's token: its record is deleted, not left behind
    const k = sessionKeys(prefix, id);
    await until(
      async () =>
        Number(await master.command('EXISTS', subscriberKey(k, sub.id))) === 0 &&
        Number(await master.command('SCARD', k.subs)) === 0,
    );
    replica.resume();
    assert.equal((await engine.createSubscriber(id, sub)).generation, 1);
    assert.equal(await stored('gen'), '1');

    replica.pause();
    await assert.rejects(engine.takeoverSubscriber(id, sub.id, 0, 60_000), unconfirmed('the takeover'));
    replica.resume();
    // the refused takeover was applied on the master (2), only not confirmed
    assert.equal((await engine.takeoverSubscriber(id, sub.id, 0, 60_000))?.generation, 3);
    assert.equal(await stored('gen'), '3');

    replica.pause();
    await assert.rejects(engine.saveCheckpoint(id, sub.id, 3, 5), unconfirmed('the checkpoint'));
    replica.resume();
    assert.equal(await engine.saveCheckpoint(id, sub.id, 3, 6), 6);
    assert.equal(await stored('cp'), '6');
  });

  it('control: with waitReplicas 0 subscriber writes resolve while the replica is frozen', async () => {
    const { engine } = await connect(0);
    const id = uniqueId('s');
    const sub = { id: 'sub-1', userId: 'u', tenantId: 't', after: 0 };
    replica.pause();
    assert.equal((await engine.createSubscriber(id, sub)).generation, 1);
    assert.equal((await engine.takeoverSubscriber(id, sub.id, 0, 60_000))?.generation, 2);
    assert.equal(await engine.saveCheckpoint(id, sub.id, 2, 5), 5);
  });

  it('control: with waitReplicas 0 the same append resolves while the replica is frozen, so before any replica has it', async () => {
    const { engine, prefix } = await connect(0);
    const id = uniqueId('s');
    replica.pause();
    const result = await engine.append(id, [makeEvent(id, 'e1')]);
    assert.equal(result.headSeq, 1);
    replica.resume();
    // Only now can the replica catch up: when the append resolved it had nothing.
    await until(async () => (await onReplica(prefix, id)) === 1);
  });

  it('replica frozen: reads and heads reject as unavailable, many at once holding the connection for one WAIT at a time; thawed, they are served', async () => {
    const { engine } = await connect(1);
    const ids = Array.from({ length: 20 }, () => uniqueId('r'));
    for (const id of ids) await engine.append(id, [makeEvent(id, 'e1')]);
    replica.pause();
    const reads = ids.map((id, i) => (i % 2 === 0 ? engine.read(id, 0, 10) : engine.head(id)));
    // Behind twenty WAITs of 1 s each this would time out (2 s); they share one at a time.
    await engine.ping();
    for (const read of reads)
      await assert.rejects(read, /0 of 1 replicas confirmed the events read within 1000 ms/);
    replica.resume();
    const page = await engine.read(ids[0]!, 0, 10);
    assert.deepEqual(
      page.events.map((e) => e.event.eventId),
      ['e1'],
    );
  });

  it('head notices leave only once the replicas confirm; a retry that finds its events stored sends the notice the first attempt could not', async () => {
    const { engine, prefix } = await connect(1);
    const id = uniqueId('s');
    const listener = await RespClient.open(master.port);
    try {
      await listener.subscribe(sessionKeys(prefix, id).channel);
      // PING on a subscribed connection is answered in order with the messages before it
      const notices = async () => {
        await listener.command('PING');
        return listener.messages.map((m) => String((m as string[])[2]).split(' ')[0]);
      };
      await engine.append(id, [makeEvent(id, 'e1')]);
      assert.deepEqual(await notices(), ['1']);
      replica.pause();
      await assert.rejects(engine.append(id, [makeEvent(id, 'e2')]), isUnavailable);
      assert.deepEqual(await notices(), ['1'], 'no node hears of e2 while the replica lacks it');
      replica.resume();
      const retry = await engine.append(id, [makeEvent(id, 'e2')]);
      assert.deepEqual(retry.outcomes, [{ seq: 2, duplicate: true }]);
      assert.deepEqual(await notices(), ['1', '2']);
    } finally {
      listener.close();
    }
  });

  it('logs at start how many replicas are in sync, and warns when fewer than asked', async () => {
    const lines: Array<{ level: string; fields: object; msg: string }> = [];
    const logger = {
      info: (fields: object, msg: string) => lines.push({ level: 'info', fields, msg }),
      warn: (fields: object, msg: string) => lines.push({ level: 'warn', fields, msg }),
    };
    for (const waitReplicas of [1, 2]) {
      engines.push(
        await RedisEngine.connect({
          url: master.url,
          clock: new ManualClock(),
          limits: CONTRACT_LIMITS,
          logger,
          waitReplicas,
        }),
      );
    }
    const replicaLines = lines.filter((l) => 'waitReplicas' in l.fields);
    assert.deepEqual(
      replicaLines.map((l) => [l.level, l.fields]),
      [
        ['info', { waitReplicas: 1, connectedReplicas: 1 }],
        ['warn', { waitReplicas: 2, connectedReplicas: 1 }],
      ],
    );

    // A write the replica does not confirm is logged (throttled like connection errors).
    const engine = engines.at(-2)!;
    const id = uniqueId('s');
    replica.pause();
    await assert.rejects(engine.append(id, [makeEvent(id, 'e1')]), /0 of 1 replicas confirmed/);
    await assert.rejects(engine.append(id, [makeEvent(id, 'e2')]), /0 of 1 replicas confirmed/);
    const warned = lines.filter((l) => l.msg === 'redis engine: replicas did not confirm a write');
    assert.equal(warned.length, 1, 'once within the throttle interval');
    assert.match(JSON.stringify(warned[0]!.fields), /0 of 1 replicas confirmed the write/);
  });

  it('refuses a bad count', async () => {
    await assert.rejects(
      RedisEngine.connect({
        url: master.url,
        clock: new ManualClock(),
        limits: CONTRACT_LIMITS,
        waitReplicas: -1,
      }),
      /whole number/,
    );
  });
});
