import type { Cluster } from 'ioredis';
import { masterConnections } from './client.ts';

/** Slots of a Redis Cluster: 0 … 16383. */
const CLUSTER_SLOT_COUNT = 16_384;

/**
 * PING to every master of a cluster, in parallel, each bounded by the command timeout;
 * rejects naming every master that failed. The masters are those the client's slot
 * map names as owners plus those in its connection pool. ioredis drops a node's
 * connection once it is lost (a stalled master's socket times out) and re-creates it
 * only on the next slot refresh, so a slot owner without a pooled connection is not
 * ready either: that asks for a refresh and rejects now (the next probe pings it).
 */
export async function pingEveryMaster(cluster: Cluster, timeoutMs: number): Promise<void> {
  if (cluster.status !== 'ready') throw new Error(`the cluster client is ${cluster.status}`);
  const pool = masterConnections(cluster);
  const owners = new Set<string>();
  for (let slot = 0; slot < CLUSTER_SLOT_COUNT; slot++) {
    const owner = cluster.slots[slot]?.[0];
    if (owner === undefined) throw new Error(`slot ${slot} has no master`);
    owners.add(owner);
  }
  const unpooled = [...owners].filter((key) => !pool.has(key));
  if (unpooled.length > 0) {
    cluster.refreshSlotsCache();
    throw new Error(`no connection to master ${unpooled.join(', ')}`);
  }
  const results = await Promise.allSettled(
    [...pool].map(([key, node]) =>
      withDeadline(node.ping(), timeoutMs, 'no PONG').catch((err: unknown) => {
        throw new Error(`master ${key}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }),
    ),
  );
  const failed = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
  if (failed.length > 0) throw new Error(failed.join('; '));
}

/** How long connect waits for a cluster to be ready: a few command timeouts (slot map, ready check). */
export function clusterConnectDeadlineMs(commandTimeoutMs: number): number {
  return Math.max(2000, commandTimeoutMs * 3);
}

export function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
