import calculateSlot from 'cluster-key-slot';
import type { Cluster, Redis } from 'ioredis';
import { EngineUnavailableError } from '../../errors/gateway-error.ts';
import { isCluster, masterConnections, type EngineClient } from './client.ts';

/**
 * Redis WAIT for the engine's writes (REDIS_WAIT_REPLICAS). WAIT blocks until `count`
 * replicas have acknowledged the replication offset its connection was at after its
 * last command; Redis 7.0 moves that offset to the master's after every command, reads
 * included, so a WAIT sent on the connection a write went over covers that write.
 *
 * One Redis: the engine's one command connection. A cluster: the connection to the master
 * of each key's slot, which is the one the cluster client sent the write over (ioredis
 * keeps one connection per node), so a slow replica only holds up the writes of its own
 * master's sessions.
 */

/**
 * The fewest replicas, over the masters of `keys`, that confirmed within `timeoutMs`
 * everything the caller has had answered on that master's connection. Rejects with
 * EngineUnavailableError when a master of one of them has no connection.
 */
export async function waitForReplicas(
  client: EngineClient,
  keys: readonly string[],
  count: number,
  timeoutMs: number,
): Promise<number> {
  const masters = isCluster(client) ? mastersOf(client, keys) : [client];
  const confirmed = await Promise.all(masters.map((master) => groupWait(master, count, timeoutMs)));
  return Math.min(...confirmed);
}

/**
 * WAITs of one connection, shared. WAIT blocks its connection until it returns, so one per
 * caller would queue every command behind as many WAITs as there are callers: with a
 * lagging replica, a node's reads (one per session) would hold its master for that many
 * timeouts. Instead at most one WAIT is out per connection; a caller arriving meanwhile
 * joins the next one, sent when it returns. A WAIT covers every command answered before it
 * was sent (Redis runs a connection's commands in order), so the caller's command, whose
 * reply it already has, is covered by any WAIT sent after that.
 */
interface WaitGroup {
  inFlight: boolean;
  next: { promise: Promise<number>; resolve(n: number): void; reject(err: unknown): void } | undefined;
}

const groups = new WeakMap<Redis, WaitGroup>();

function groupWait(master: Redis, count: number, timeoutMs: number): Promise<number> {
  let group = groups.get(master);
  if (!group) groups.set(master, (group = { inFlight: false, next: undefined }));
  if (!group.next) {
    let resolve!: (n: number) => void;
    let reject!: (err: unknown) => void;
    const promise = new Promise<number>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    group.next = { promise, resolve, reject };
    if (!group.inFlight) sendWait(master, group, count, timeoutMs);
    return promise;
  }
  return group.next.promise;
}

function sendWait(master: Redis, group: WaitGroup, count: number, timeoutMs: number): void {
  const waiting = group.next!;
  group.next = undefined;
  group.inFlight = true;
  master.wait(count, timeoutMs).then(
    (n) => settle(master, group, count, timeoutMs, () => waiting.resolve(n)),
    (err: unknown) => settle(master, group, count, timeoutMs, () => waiting.reject(err)),
  );
}

function settle(master: Redis, group: WaitGroup, count: number, timeoutMs: number, done: () => void): void {
  group.inFlight = false;
  done();
  if (group.next) sendWait(master, group, count, timeoutMs);
}

/** Replicas in sync (`state=online`), the fewest over the masters. */
export async function replicasOnline(client: EngineClient): Promise<number> {
  const masters = isCluster(client) ? client.nodes('master') : [client];
  const counts = await Promise.all(
    masters.map(async (master) => {
      const info = await master.info('replication');
      // a replica still waiting for its first full copy does not count for WAIT
      return [...info.matchAll(/^slave\d+:.*\bstate=online\b/gm)].length;
    }),
  );
  return Math.min(...counts);
}

/** The connection to the master serving each key's slot, each master once. */
function mastersOf(cluster: Cluster, keys: readonly string[]): Redis[] {
  const pool = masterConnections(cluster);
  const masters = new Set<Redis>();
  for (const key of keys) {
    const owner = cluster.slots[calculateSlot(key)]?.[0];
    const node = owner === undefined ? undefined : pool.get(owner);
    if (!node)
      throw new EngineUnavailableError(`redis: no connection to the master of slot ${calculateSlot(key)}`);
    masters.add(node);
  }
  return [...masters];
}
