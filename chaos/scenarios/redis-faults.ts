import { readdirSync, statSync, truncateSync } from 'node:fs';
import path from 'node:path';
import type { ClusterDeployment } from '../harness/deployment.ts';
import { sessionKeys } from '../../src/engine/redis/keys.ts';
import { active, note, pause, type FaultControl, type Scenario } from './scenario.ts';

/** Redis crashing, losing history and stalling under the swarm. */

export const redisKill: Scenario = {
  name: 'redis-kill',
  summary:
    'kill -9 of Redis and a restart from its AOF (appendfsync always): same epoch, nothing acknowledged lost',
  quickSeconds: 10,
  async faults(control) {
    while (active(control)) {
      await pause(control, control.rng.int(1500, 3000));
      if (!active(control)) break;
      note(control, 'redis_kill', 'redis');
      await control.deployment.redis.kill();
      await new Promise((r) => setTimeout(r, control.rng.int(100, 1500)));
      await control.deployment.redis.restart();
    }
  },
};

/** The incremental AOF file of a redis-server started with appendonly yes (Redis ≥ 7). */
function incrementalAof(control: FaultControl): string {
  const dir = path.join(control.deployment.redis.dir, 'appendonlydir');
  const name = readdirSync(dir).find((f) => f.endsWith('.incr.aof'));
  if (!name) throw new Error(`no incremental AOF in ${dir}`);
  return path.join(dir, name);
}

export const redisHistoryLoss: Scenario = {
  name: 'redis-history-loss',
  summary:
    'Redis restarts from an AOF that lost its tail: streams move to a new epoch, old-epoch clients get 4011, never a silent gap',
  quickSeconds: 10,
  allowEpochChange: true,
  async faults(control) {
    while (active(control)) {
      await pause(control, control.rng.int(1000, 2000));
      const file = incrementalAof(control);
      const keep = statSync(file).size;
      await pause(control, control.rng.int(1000, 2000));
      if (!active(control)) break;
      note(control, 'redis_history_loss', 'redis', `AOF cut back to ${keep} bytes`);
      await control.deployment.redis.kill();
      truncateSync(file, keep);
      await control.deployment.redis.restart();
    }
  },
};

export const redisStall: Scenario = {
  name: 'redis-stall',
  summary:
    'Redis frozen (SIGSTOP) or cut off (blackholed proxy) past the command timeout: nacks, 503s, bounded memory, and back within seconds',
  quickSeconds: 10,
  deployment: { redisProxy: true },
  maxRssBytes: 400 * 1024 * 1024,
  async faults(control) {
    const { redis, redisProxy } = control.deployment;
    while (active(control)) {
      await pause(control, control.rng.int(1000, 2000));
      if (!active(control)) break;
      const ms = control.rng.int(1500, 4000);
      if (control.rng.chance(0.5)) {
        note(control, 'redis_freeze', 'redis', `${ms} ms`);
        redis.pause();
        await new Promise((r) => setTimeout(r, ms));
        redis.resume();
      } else {
        note(control, 'redis_blackhole', 'redis', `${ms} ms`);
        redisProxy!.blackhole('stall');
        await new Promise((r) => setTimeout(r, ms));
        redisProxy!.heal();
      }
    }
  },
};

export const redisFailover: Scenario = {
  name: 'redis-failover',
  summary:
    'failover to a replica that lagged (REDIS_WAIT_REPLICAS=1): nothing acknowledged lost, no epoch change, nobody given an event the failover took back',
  quickSeconds: 10,
  deployment: {
    redisProxy: true,
    redisReplica: true,
    gatewayEnv: { REDIS_WAIT_REPLICAS: '1' },
  },
  async faults(control) {
    const d = control.deployment;
    while (active(control)) {
      await pause(control, control.rng.int(1000, 2000));
      if (!active(control)) break;
      // The replica's link drops everything for a while: the master's last writes are
      // not on the replica when it is promoted.
      const lagMs = control.rng.int(0, 800);
      if (lagMs > 0) d.replicaLink!.blackhole('drop');
      // A fifth of the subscribers start over meanwhile: a subscriber record only the
      // master has would be lost, and its connection closed 4009 after the failover
      // (unprovoked_supersede). Half the rest resume: their replays must not hand out what
      // only the master has, and their takeovers must survive.
      for (const sub of control.swarm.subscribers) {
        if (control.rng.chance(0.2)) sub.startOver();
        else if (control.rng.chance(0.5)) sub.dropConnections();
      }
      await new Promise((r) => setTimeout(r, lagMs));
      note(control, 'redis_failover', 'redis', `replica lagging for ${lagMs} ms`);
      await d.failover();
    }
  },
};

/** A fifth of the subscribers drop their connections and come back (resume) while a fault lasts. */
function reconnectSome(control: FaultControl): void {
  for (const sub of control.swarm.subscribers) if (control.rng.chance(0.2)) sub.dropConnections();
}

/** Cuts the gateways off one master for 1.5–4 s: its bytes held, or reset and refused. */
async function cutMaster(control: FaultControl, cluster: ClusterDeployment): Promise<void> {
  const link = control.rng.pick([...cluster.links.values()]);
  const ms = control.rng.int(1500, 4000);
  // A partition that heals before TCP gives up holds the bytes; one where the far side's
  // host answers with resets (or is restarting behind a load balancer) refuses.
  const stall = control.rng.chance(0.5);
  note(control, stall ? 'redis_partition_stall' : 'redis_partition_refuse', link.name, `${ms} ms`);
  if (stall) link.blackhole('stall');
  else {
    link.refuse();
    link.resetAll();
  }
  // Some subscribers come back meanwhile: their hellos meet the cut, some of them.
  reconnectSome(control);
  await new Promise((r) => setTimeout(r, ms));
  if (stall) link.heal();
  else link.refuse(false);
}

/**
 * Freezes one master (SIGSTOP) for 0.2–0.6 s, under the 1 s node timeout, so the cluster
 * stays whole: commands it holds run when it wakes, after their callers may have given
 * up, and the other masters' sessions go on meanwhile (the engine queues each session's
 * calls apart, see tick-queue.ts).
 */
async function freezeMaster(control: FaultControl, { cluster }: ClusterDeployment): Promise<void> {
  const victim = control.rng.pick(await cluster.topology()).master;
  const ms = control.rng.int(200, 600);
  note(control, 'redis_cluster_freeze', `:${victim}`, `${ms} ms`);
  reconnectSome(control);
  cluster.pause(victim);
  await new Promise((r) => setTimeout(r, ms));
  await cluster.resume(victim);
}

/** Moves a session's slot to another master, key by key, with pauses while it is split. */
async function reshard(control: FaultControl, { cluster }: ClusterDeployment): Promise<void> {
  const session = control.rng.pick(control.swarm.sessions);
  const slot = await cluster.keyslot(sessionKeys('', session).meta);
  const from = await cluster.masterOf(slot);
  const masters = (await cluster.topology()).map((m) => m.master).filter((port) => port !== from);
  const to = control.rng.pick(masters);
  note(control, 'redis_reshard', `slot ${slot}`, `${session}: :${from} → :${to}`);
  await cluster.migrateSlot(slot, to, () => new Promise((r) => setTimeout(r, control.rng.int(10, 200))));
}

export const redisCluster: Scenario = {
  name: 'redis-cluster',
  summary:
    'a Redis Cluster of 3 masters, the gateways cut off from one of them at a time (stalled, or refused with resets) or one frozen (SIGSTOP) while the cluster stays whole, and sessions resharded to other masters under load: nothing acknowledged lost, every event once and in order',
  quickSeconds: 10,
  // the cuts are between the gateways and Redis: the nodes keep everything, AOF or not
  deployment: { redisClusterMasters: 3, redisAof: false },
  // sessions spread over the masters by their hash slots: more of them than masters
  shape: { sessions: 6 },
  async faults(control) {
    const cluster = control.deployment.redisCluster!;
    while (active(control)) {
      await pause(control, control.rng.int(1000, 2000));
      if (!active(control)) break;
      // a reshard, else a freeze, else a cut (the second roll only when the first misses)
      const resharding = control.rng.chance(0.3);
      if (resharding) await reshard(control, cluster);
      else if (control.rng.chance(0.3)) await freezeMaster(control, cluster);
      else await cutMaster(control, cluster);
    }
  },
};

export const redisClusterFailover: Scenario = {
  name: 'redis-cluster-failover',
  summary:
    "a Redis Cluster of 3 masters with a replica each (REDIS_WAIT_REPLICAS=1): a master killed, or cut off from the rest of the cluster with the gateways still beside it (a partition with it on the minority side), the cluster promotes its replica, the old one comes back as the new one's replica: nothing acknowledged lost, no epoch change, every event once and in order",
  quickSeconds: 12,
  deployment: {
    redisClusterMasters: 3,
    redisClusterReplicas: 1,
    // WAIT and the replicas keep what was acknowledged, not AOF (a revived master drops its data)
    redisAof: false,
    gatewayEnv: { REDIS_WAIT_REPLICAS: '1' },
  },
  shape: { sessions: 6 },
  async faults(control) {
    const { cluster } = control.deployment.redisCluster!;
    while (active(control)) {
      await pause(control, control.rng.int(1000, 2000));
      if (!active(control)) break;
      const victim = control.rng.pick(await cluster.topology()).master;
      const slot = await cluster.keyslot(await cluster.keyOn(victim));
      // A partitioned master takes writes until it counts itself on the minority side;
      // WAIT must refuse them, since its replica on the other side never gets them.
      const isolate = control.rng.chance(0.5);
      note(control, isolate ? 'redis_cluster_minority' : 'redis_cluster_failover', `:${victim}`);
      // Some subscribers come back meanwhile: their takeovers must survive the failover.
      reconnectSome(control);
      if (isolate) await cluster.isolate(victim);
      else await cluster.kill(victim);
      const promoted = await cluster.failedOver(victim, slot);
      if (isolate) {
        // the old master, refusing as CLUSTERDOWN, stays cut off a while longer
        await new Promise((r) => setTimeout(r, control.rng.int(0, 1500)));
        await cluster.rejoin();
      } else await cluster.revive(victim);
      // Until the old master, now the new one's replica, has its copy, WAIT refuses every
      // write of those slots, and a failover of the new one would find no replica to promote.
      await cluster.waitForReplicas(1);
      note(control, 'redis_cluster_promoted', `:${promoted}`);
    }
  },
};

export const redisClusterKill: Scenario = {
  name: 'redis-cluster-kill',
  summary:
    'a Redis Cluster of 3 masters on AOF (appendfsync always), no replicas: a master killed (-9) and restarted from its AOF, the whole cluster down meanwhile once the others mark it failed: same epoch, nothing acknowledged lost, every event once and in order',
  quickSeconds: 10,
  deployment: { redisClusterMasters: 3 },
  shape: { sessions: 6 },
  async faults(control) {
    const { cluster } = control.deployment.redisCluster!;
    while (active(control)) {
      await pause(control, control.rng.int(1500, 3000));
      if (!active(control)) break;
      const victim = control.rng.pick(await cluster.topology()).master;
      // Down for less than the node timeout (1 s) or past it: then the other masters mark
      // it failed, and with no replica to promote the cluster refuses every slot until it
      // is back (and for about two node timeouts more).
      const downMs = control.rng.int(100, 2500);
      note(control, 'redis_cluster_kill', `:${victim}`, `${downMs} ms`);
      // Some subscribers come back meanwhile: their hellos meet the outage, some of them.
      reconnectSome(control);
      await cluster.kill(victim);
      await new Promise((r) => setTimeout(r, downMs));
      await cluster.revive(victim);
    }
  },
};
