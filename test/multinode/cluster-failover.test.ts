import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { replicasConfirm } from '../../chaos/toolkit/redis-server.ts';
import { RedisCluster } from '../../chaos/toolkit/redis-cluster.ts';
import type { PublishResult } from '../../client/index.ts';
import { sessionKeys } from '../../src/engine/redis/keys.ts';
import { closeClients, until, type Wire } from '../client/support.ts';
import type { TestGateway } from '../helpers/gateway.ts';
import {
  assertRecovered,
  publishNth,
  startNodes,
  watchOnEveryMaster,
  type Watched,
} from './cluster-support.ts';

/**
 * A Redis Cluster's own failover under two gateway nodes, after a master is lost: killed
 * (-9), or cut off from the rest of the cluster by a network partition that leaves it on
 * the minority side with the gateways still beside it (RedisCluster `isolate`: the cluster
 * bus between it and every other node cut, and its replica's replication link). The
 * other masters mark it failed and its replica takes its slots. With
 * REDIS_WAIT_REPLICAS=1 every acknowledged event is on that replica, so nothing is lost
 * and no subscriber starts over; sessions on the other masters are served throughout.
 * The clients are the SDK's, which resume and retry on their own, as real ones do.
 */
const PREFIX = 'cfo:';
const NODE_TIMEOUT_MS = 1000;
let cluster: RedisCluster;
const nodes: TestGateway[] = [];

before(async () => {
  cluster = await RedisCluster.start({ replicas: 1, nodeTimeoutMs: NODE_TIMEOUT_MS, partitionable: true });
  const env = {
    REDIS_CLUSTER_NODES: cluster.nodes.join(','),
    REDIS_KEY_PREFIX: PREFIX,
    REDIS_WAIT_REPLICAS: '1',
    REDIS_COMMAND_TIMEOUT_MS: '2000',
  };
  nodes.push(...(await startNodes('f', env)));
});
after(async () => {
  await closeClients();
  await Promise.allSettled(nodes.map((n) => n.stop()));
  await cluster.stop();
});

/** Transcript event `n` of a watched session. */
function publish(w: Watched, n: number): Promise<PublishResult> {
  return publishNth(w.publisher, w.sessionId, n);
}

/** The nacks a client received, as `code: message`. */
function nacks(wire: Wire): string[] {
  return wire.sockets.flatMap((s) =>
    s.log
      .filter((l) => l.dir === 'in' && l.frame.op === 'nack')
      .map((l) => `${String(l.frame.code)}: ${String(l.frame.message)}`),
  );
}

/** The length of the session's stream on one node, or undefined once it refuses (CLUSTERDOWN). */
async function streamLength(port: number, w: Watched): Promise<number | undefined> {
  try {
    return Number(await cluster.command(port, 'XLEN', sessionKeys(PREFIX, w.sessionId).stream));
  } catch {
    return undefined;
  }
}

describe('a Redis Cluster failover under gateway nodes (REDIS_WAIT_REPLICAS=1)', () => {
  it('serves the other masters meanwhile, then resumes the failed one on its replica: every acknowledged event kept, each delivered once, in order', async () => {
    const [a, b] = nodes as [TestGateway, TestGateway];
    const watched = await watchOnEveryMaster(cluster, PREFIX, [a, b]);
    for (const w of watched) for (let n = 1; n <= 3; n++) await publish(w, n);
    for (const w of watched) await until(() => w.seen.seqs.length === 4, 5000, 'events before the kill');

    const [victim, ...others] = watched as [Watched, ...Watched[]];
    await cluster.kill(victim.master);
    const stuck = [4, 5, 6].map((n) => publish(victim, n));
    let stuckSettled = false;
    void Promise.allSettled(stuck).then(() => (stuckSettled = true));

    // The other masters' sessions go on while the victim's slots have no master.
    for (const w of others) for (let n = 4; n <= 6; n++) await publish(w, n);
    for (const w of others) await until(() => w.seen.seqs.length === 7, 10_000, 'the others served');
    assert.equal(stuckSettled, false, "the victim's publishes wait for its slots");

    // Its replica takes over, but has no replica of its own: the writes still wait (WAIT 1).
    const promoted = await cluster.failedOver(victim.master, victim.slot);
    assert.notEqual(promoted, victim.master);
    await until(
      () =>
        victim.wire.sockets.some((socket) =>
          socket.log.some((l) => l.frame.op === 'nack' && /0 of 1 replicas confirmed/.test(l.frame.message)),
        ),
      10_000,
      () =>
        'a publish refused for want of a replica: ' +
        JSON.stringify(
          victim.wire.sockets.map((w) => [w.closeCode, w.log.filter((l) => l.dir === 'in').slice(-6)]),
        ),
    );
    assert.equal(stuckSettled, false);
    await cluster.revive(victim.master); // back, as the replica of the promoted one
    // a key of its own in the session's slot: WAIT counts the replica once it acknowledged
    const probe = `${PREFIX}{${encodeURIComponent(victim.sessionId)}}:probe`;
    await replicasConfirm(promoted, probe, 1, Date.now() + 15_000);

    await assertRecovered(a, watched, victim, stuck);
  });
});

describe('a Redis Cluster master on the minority side of a partition (REDIS_WAIT_REPLICAS=1)', () => {
  it('acknowledges and delivers nothing the master took alone; after its replica takes over and it rejoins, every publish is stored once and delivered once, in order', async () => {
    const [a, b] = nodes as [TestGateway, TestGateway];
    // after the test above: every master has its replica again, so WAIT can be met
    await cluster.waitForReplicas(1);
    const watched = await watchOnEveryMaster(cluster, PREFIX, [a, b]);
    for (const w of watched) for (let n = 1; n <= 3; n++) await publish(w, n);
    for (const w of watched) await until(() => w.seen.seqs.length === 4, 5000, 'events before the partition');

    const [victim, ...others] = watched as [Watched, ...Watched[]];
    const before = await streamLength(victim.master, victim);
    assert.ok(before !== undefined && before > 0);
    await cluster.isolate(victim.master);
    const stuck = [4, 5, 6].map((n) => publish(victim, n));
    let stuckSettled = false;
    void Promise.allSettled(stuck).then(() => (stuckSettled = true));

    // The isolated master still takes the gateway's append: it does not know yet that it
    // is on the minority side. Only its replica could have confirmed it.
    let tookAlone = false;
    for (let length: number | undefined = before; length !== undefined && !tookAlone;) {
      length = await streamLength(victim.master, victim);
      tookAlone = length !== undefined && length > before;
    }
    assert.ok(tookAlone, 'the isolated master took a write the majority side never saw');

    for (const w of others) for (let n = 4; n <= 6; n++) await publish(w, n);
    for (const w of others) await until(() => w.seen.seqs.length === 7, 10_000, 'the others served');
    await until(
      () => nacks(victim.wire).some((nack) => /^unavailable: .*0 of 1 replicas confirmed/.test(nack)),
      10_000,
      () => `a publish refused for want of its replica: ${JSON.stringify(nacks(victim.wire))}`,
    );

    // The replica is promoted on the majority side. It has no replica of its own while the
    // old master is cut off, so the publishes still wait.
    const promoted = await cluster.failedOver(victim.master, victim.slot);
    assert.notEqual(promoted, victim.master);
    assert.equal(stuckSettled, false, 'nothing the isolated master took alone was acknowledged');
    assert.deepEqual(victim.seen.seqs, [1, 2, 3, 4], 'nor delivered');

    await cluster.rejoin(); // the old master comes back as the promoted one's replica
    const probe = `${PREFIX}{${encodeURIComponent(victim.sessionId)}}:probe`;
    await replicasConfirm(promoted, probe, 1, Date.now() + 15_000);

    await assertRecovered(a, watched, victim, stuck);
    for (const w of watched)
      for (const nack of [...nacks(w.wire), ...nacks(w.watcherWire)])
        assert.match(nack, /^unavailable: /, 'every refusal was retryable');
  });
});
