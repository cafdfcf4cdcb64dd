/**
 * `waitReplicas` on a Redis Cluster: a write of events waits for the replicas of the
 * master it went to, over that master's own connection. A private cluster of 3 masters
 * with one replica each; a frozen replica (SIGSTOP, shorter than the node timeout) is one
 * that cannot confirm, and it holds up only the sessions of its own master.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { sessionKeys } from '../../src/engine/redis/keys.ts';
import { RedisEngine } from '../../src/engine/redis/redis-engine.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { unconfirmedWithin } from '../helpers/unconfirmed.ts';
import { RedisCluster } from '../../chaos/toolkit/redis-cluster.ts';
import { RespClient } from '../../chaos/toolkit/resp.ts';
import { CONTRACT_LIMITS, makeEvent, uniqueId } from './contract.ts';

/** WAIT gets half: 1 s, well under the cluster's 2 s node timeout for the frozen replica. */
const COMMAND_TIMEOUT_MS = 2000;
const cluster = await RedisCluster.start({ replicas: 1 });
cluster.unref();
const engines: RedisEngine[] = [];
after(async () => {
  for (const engine of engines) await engine.close();
  await cluster.stop();
});

async function connect(waitReplicas: number, prefix = `cw${randomBytes(3).toString('hex')}:`) {
  const engine = await RedisEngine.connect({
    clusterNodes: cluster.nodes,
    clock: new ManualClock(),
    limits: CONTRACT_LIMITS,
    keyPrefix: prefix,
    commandTimeoutMs: COMMAND_TIMEOUT_MS,
    waitReplicas,
  });
  engines.push(engine);
  return { engine, prefix };
}

/** A session id whose keys live on `master`, and the other sessions' master ports. */
async function sessionOn(prefix: string, master: number): Promise<string> {
  for (;;) {
    const id = uniqueId('s');
    if ((await cluster.masterOf(await cluster.keyslot(sessionKeys(prefix, id).stream))) === master) return id;
  }
}

const isUnavailable = unconfirmedWithin(COMMAND_TIMEOUT_MS / 2);

describe('redis engine on a cluster: waitReplicas', () => {
  it('a frozen replica holds up the writes of its own master only; a retry after it thaws gets the original seqs', async () => {
    const { engine, prefix } = await connect(1);
    const [first, second] = await cluster.topology();
    const held = await sessionOn(prefix, first!.master);
    const free = await sessionOn(prefix, second!.master);
    assert.equal((await engine.append(held, [makeEvent(held, 'h1')])).headSeq, 1);

    cluster.pause(first!.replicas[0]!);
    try {
      const started = performance.now();
      await assert.rejects(engine.append(held, [makeEvent(held, 'h2')]), isUnavailable);
      const took = performance.now() - started;
      assert.ok(took >= 950 && took < COMMAND_TIMEOUT_MS, `rejected after ${Math.round(took)} ms`);
      assert.equal((await engine.append(free, [makeEvent(free, 'f1')])).headSeq, 1, 'another master');
    } finally {
      await cluster.resume(first!.replicas[0]!);
    }
    const retry = await engine.append(held, [makeEvent(held, 'h2')]);
    assert.deepEqual(retry.outcomes, [{ seq: 2, duplicate: true }]);
    // the retry waited for it: the replica has both events now
    const replica = await RespClient.open(first!.replicas[0]!);
    try {
      await replica.command('READONLY');
      assert.equal(Number(await replica.command('XLEN', sessionKeys(prefix, held).stream)), 2);
    } finally {
      replica.close();
    }
  });

  it('session creates wait for the replicas of the session’s master', async () => {
    const { engine, prefix } = await connect(1);
    const [first] = await cluster.topology();
    const id = await sessionOn(prefix, first!.master);
    const input = { id, tenantId: 't', ownerId: 'u', createdAt: '2026-11-28T12:00:00.000Z' };
    cluster.pause(first!.replicas[0]!);
    try {
      await assert.rejects(engine.createSession(input), isUnavailable);
    } finally {
      await cluster.resume(first!.replicas[0]!);
    }
    assert.equal((await engine.createSession(input)).session.id, id);
  });

  it('control: with waitReplicas 0 the write to the frozen replica’s master resolves', async () => {
    const { engine, prefix } = await connect(0);
    const [first] = await cluster.topology();
    const id = await sessionOn(prefix, first!.master);
    cluster.pause(first!.replicas[0]!);
    try {
      assert.equal((await engine.append(id, [makeEvent(id, 'e1')])).headSeq, 1);
    } finally {
      await cluster.resume(first!.replicas[0]!);
    }
  });
});
