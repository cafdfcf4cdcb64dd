import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { replicasConfirm } from '../../chaos/toolkit/redis-server.ts';
import { RedisCluster } from '../../chaos/toolkit/redis-cluster.ts';
import type { PublishResult } from '../../client/index.ts';
import { closeClients, until } from '../client/support.ts';
import type { TestGateway } from '../helpers/gateway.ts';
import {
  assertRecovered,
  publishNth,
  startNodes,
  watchOnEveryMaster,
  type Watched,
} from './cluster-support.ts';

/**
 * A Redis Cluster's own failover under two gateway nodes: a master is killed (-9), the
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
  cluster = await RedisCluster.start({ replicas: 1, nodeTimeoutMs: NODE_TIMEOUT_MS });
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
