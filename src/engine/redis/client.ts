import { Cluster, Redis, type ClusterNode } from 'ioredis';
import { parseNatMap } from './nat-map.ts';
import { SCRIPTS, scriptsFor, type ScriptDefinitions, type ScriptName } from './scripts/index.ts';

export interface ClientOptions {
  url: string;
  commandTimeoutMs: number;
  /** false: the append scripts send no head notice (the engine does, after WAIT). Default true. */
  headNotices?: boolean;
}

export interface ClusterClientOptions {
  /** Seed nodes: `host:port`, or `redis://[user:pass@]host:port` / `rediss://…` (see parseClusterNodes). */
  nodes: readonly string[];
  /**
   * Where to reach the nodes at the addresses the cluster announces:
   * `announced=reachable,…` (see parseNatMap). Unset or '': as announced.
   */
  natMap?: string;
  commandTimeoutMs: number;
  /** As ClientOptions.headNotices. */
  headNotices?: boolean;
}

/** The command client: one Redis, or a Redis Cluster. */
export type EngineClient = Redis | Cluster;

export function isCluster(client: EngineClient): client is Cluster {
  return (client as { isCluster?: boolean }).isCluster === true;
}

/**
 * A cluster client's connection to each master it has one to, by `host:port` as its slot
 * map names them (`cluster.slots[slot][0]`).
 */
export function masterConnections(cluster: Cluster): Map<string, Redis> {
  const pool = new Map<string, Redis>();
  for (const node of cluster.nodes('master'))
    pool.set(`${String(node.options.host)}:${String(node.options.port)}`, node);
  return pool;
}

/**
 * Runs one of the scripts: keys first, then arguments. For a script with a fixed key
 * count the count is checked; for a variable one it is sent first.
 */
export type ScriptRunner = (
  name: ScriptName,
  keys: readonly string[],
  args: readonly (string | number)[],
) => Promise<unknown>;

/** How often a cluster client re-reads the slot map (topology changes, failovers). */
const SLOTS_REFRESH_INTERVAL_MS = 5000;

/** Reconnect backoff of the command client: capped, never gives up. */
const retryStrategy = (attempt: number): number => Math.min(50 * 2 ** Math.min(attempt, 6), 2000);

/**
 * Per-connection options shared by the single client and every node connection of a
 * cluster client, so that an unreachable or stalled Redis turns into a prompt error
 * instead of an unbounded wait or queue:
 *
 * - `commandTimeout`: every command, handshake included, rejects after this long.
 * - `maxRetriesPerRequest: 0` and `autoResendUnfulfilledCommands: false`: a command
 *   whose connection dropped is failed, never replayed on the next connection. Its
 *   outcome is unknown to the caller, who already got an error; replaying it later could
 *   apply a stale takeover after a newer one. The caller retries, and an append retry is
 *   harmless (dedupe by eventId).
 * - `socketTimeout`: a socket that stays silent while commands wait (a frozen server)
 *   is destroyed, so commands written during a long stall do not pile up in the client;
 *   the client then reconnects on its own.
 */
function connectionOptions(commandTimeoutMs: number) {
  return {
    commandTimeout: commandTimeoutMs,
    socketTimeout: Math.max(1000, commandTimeoutMs * 2),
    connectTimeout: Math.max(1000, commandTimeoutMs),
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectionName: 'lifeos-gateway-engine',
  } as const;
}

/**
 * The ioredis client for one Redis, with connectionOptions plus:
 * - `enableOfflineQueue: false`: while not connected, commands fail at once instead of
 *   queueing in memory until Redis comes back.
 * - `retryStrategy`: reconnects by itself, capped backoff.
 * - `lazyConnect`: RedisEngine.connect awaits the first connection explicitly.
 */
export function createClient(options: ClientOptions): Redis {
  const redis = new Redis(options.url, {
    ...connectionOptions(options.commandTimeoutMs),
    lazyConnect: true,
    enableOfflineQueue: false,
    retryStrategy,
  });
  defineScripts(redis, scriptsFor('PUBLISH', options.headNotices));
  return redis;
}

/**
 * The ioredis Cluster client. Node connections get connectionOptions (via
 * `redisOptions`); the cluster layer adds:
 * - `enableOfflineQueue: false`: while the cluster is not ready (or a node's connection
 *   is not up), commands fail at once.
 * - `retryDelayOnFailover: 0`: a command that failed with "Connection is closed" is NOT
 *   resent to the node that takes over: like on one Redis, its outcome is unknown and
 *   replaying it could apply a stale takeover.
 * - Redirections are followed (`maxRedirections`, MOVED/ASK, TRYAGAIN and CLUSTERDOWN
 *   after a short delay): Redis answers those without running the command, so following
 *   them never runs a command twice. `commandTimeout` still bounds the whole call.
 * - `clusterRetryStrategy`: when every node is lost the client reconnects by itself,
 *   capped backoff, like the single client.
 * - The scripts publish with SPUBLISH (sharded pub/sub), see scripts/index.ts.
 */
export function createClusterClient(options: ClusterClientOptions): Cluster {
  const { nodes, auth } = parseClusterNodes(options.nodes);
  const cluster = new Cluster(nodes, {
    ...clusterOptions(options, auth),
    lazyConnect: true,
    enableOfflineQueue: false,
  });
  defineScripts(cluster, scriptsFor('SPUBLISH', options.headNotices));
  refreshSlotsPeriodically(cluster);
  return cluster;
}

/**
 * The periodic slot-map refresh, done here instead of by ioredis (`slotsRefreshInterval:
 * 0` in clusterOptions). ioredis 6.0.0 re-arms its own refresh timer from the callback of
 * a refresh in flight even after quit()/disconnect(), so a client closed at the wrong
 * moment keeps refreshing an empty pool every 5 s for ever, holding the process open.
 * This timer is unref'd and stops once the client has ended.
 */
function refreshSlotsPeriodically(cluster: Cluster): void {
  const timer = setInterval(() => {
    if (cluster.status === 'end') clearInterval(timer);
    else if (cluster.status === 'ready') cluster.refreshSlotsCache();
  }, SLOTS_REFRESH_INTERVAL_MS);
  timer.unref();
}

/** Credentials and TLS every node connection of a cluster client uses. */
export interface NodeAuth {
  username?: string;
  password?: string;
  tls?: Record<string, never>;
}

function clusterOptions({ commandTimeoutMs, natMap = '' }: ClusterClientOptions, auth: NodeAuth) {
  return {
    // ioredis maps every address the cluster names (CLUSTER SLOTS, MOVED, ASK) through it
    ...(natMap.trim() !== '' && { natMap: parseNatMap(natMap) }),
    enableReadyCheck: true,
    maxRedirections: 16,
    retryDelayOnFailover: 0,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    retryDelayOnMoved: 0,
    slotsRefreshTimeout: Math.max(1000, commandTimeoutMs),
    slotsRefreshInterval: 0, // see refreshSlotsPeriodically
    clusterRetryStrategy: retryStrategy,
    redisOptions: { ...connectionOptions(commandTimeoutMs), ...auth },
  } as const;
}

/**
 * Seeds for a cluster client. Each entry is `host:port` (`[v6addr]:port` for IPv6) or a
 * URL `redis://[user:pass@]host:port` / `rediss://…`; credentials and TLS come from the
 * URLs and apply to every node the cluster announces (they must agree across seeds).
 * The cluster itself tells the client the rest of its nodes. Throws a RangeError for a
 * malformed list: that is a configuration error, reported at start-up.
 */
export function parseClusterNodes(seeds: readonly string[]): { nodes: ClusterNode[]; auth: NodeAuth } {
  if (seeds.length === 0) throw new RangeError('REDIS_CLUSTER_NODES: no seed node given');
  const nodes: ClusterNode[] = [];
  let auth: { scheme: string; username: string; password: string } | undefined;
  for (const raw of seeds) {
    const seed = raw.trim();
    const withScheme = /^[a-z]+:\/\//i.test(seed) ? seed : `redis://${seed}`;
    let url: URL;
    try {
      url = new URL(withScheme);
    } catch {
      throw new RangeError(`REDIS_CLUSTER_NODES: not host:port or a redis:// URL: ${JSON.stringify(raw)}`);
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:')
      throw new RangeError(
        `REDIS_CLUSTER_NODES: scheme must be redis:// or rediss://: ${JSON.stringify(raw)}`,
      );
    const port = Number(url.port);
    if (url.hostname === '' || !Number.isInteger(port) || port < 1 || port > 65535)
      throw new RangeError(`REDIS_CLUSTER_NODES: needs host and port: ${JSON.stringify(raw)}`);
    if ((url.pathname !== '' && url.pathname !== '/') || url.search !== '')
      throw new RangeError(
        `REDIS_CLUSTER_NODES: a cluster has no database number or options: ${JSON.stringify(raw)}`,
      );
    const here = {
      scheme: url.protocol,
      username: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
    };
    if (
      auth &&
      (auth.scheme !== here.scheme || auth.username !== here.username || auth.password !== here.password)
    )
      throw new RangeError('REDIS_CLUSTER_NODES: every seed must use the same scheme and credentials');
    auth = here;
    // URL keeps the brackets of an IPv6 host; net.connect wants the bare address
    nodes.push({ host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port });
  }
  const nodeAuth: NodeAuth = {};
  if (auth?.username) nodeAuth.username = auth.username;
  if (auth?.password) nodeAuth.password = auth.password;
  if (auth?.scheme === 'rediss:') nodeAuth.tls = {};
  return { nodes, auth: nodeAuth };
}

function defineScripts(client: EngineClient, scripts: ScriptDefinitions): void {
  for (const [name, def] of Object.entries(scripts)) {
    client.defineCommand(
      name,
      def.numberOfKeys === undefined ? { lua: def.lua } : { lua: def.lua, numberOfKeys: def.numberOfKeys },
    );
  }
}

/** A typed door to the commands that defineCommand added (ioredis cannot type them). */
export function scriptRunner(redis: EngineClient): ScriptRunner {
  const commands = redis as unknown as Record<ScriptName, (...args: (string | number)[]) => Promise<unknown>>;
  return (name, keys, args) => {
    const fixed = SCRIPTS[name].numberOfKeys;
    if (fixed === undefined) return commands[name].call(redis, keys.length, ...keys, ...args);
    if (keys.length !== fixed)
      throw new Error(`redis engine: ${name} takes ${fixed} keys, got ${keys.length}`);
    return commands[name].call(redis, ...keys, ...args);
  };
}

/**
 * The pub/sub connection for cross-node notices on one Redis. Unlike the command client
 * it may queue while disconnected (SUBSCRIBE and UNSUBSCRIBE only: bounded by the
 * sessions watched), and it re-subscribes by itself after a reconnect.
 */
export function subscriberClient(commands: Redis): Redis {
  return commands.duplicate({
    lazyConnect: false,
    enableOfflineQueue: true,
    autoResubscribe: true,
    maxRetriesPerRequest: null,
    commandTimeout: undefined,
    connectionName: 'lifeos-gateway-notices',
  });
}

/**
 * The pub/sub client for cross-node notices on a cluster: a second Cluster client with
 * ioredis's sharded subscribers (`shardedSubscribers: true`): one subscriber connection
 * per master, opened when a channel of that master is first watched. `SSUBSCRIBE` goes to
 * the master that owns the channel's slot, and after a topology change or a lost node
 * ioredis re-subscribes every channel on its new owner, then emits `subscribersReady`.
 * Like the single-node subscriber it queues while the cluster is not ready
 * (`enableOfflineQueue`): SSUBSCRIBE and SUNSUBSCRIBE only. `commandTimeout` stays on,
 * so a subscription that cannot be made in time rejects (the watcher then reads the stream).
 */
export function clusterSubscriberClient(options: ClusterClientOptions): Cluster {
  const { nodes, auth } = parseClusterNodes(options.nodes);
  const base = clusterOptions(options, auth);
  const cluster = new Cluster(nodes, {
    ...base,
    redisOptions: { ...base.redisOptions, connectionName: 'lifeos-gateway-notices' },
    shardedSubscribers: true,
    enableOfflineQueue: true,
    lazyConnect: false,
  });
  // a refresh also re-assigns the sharded subscribers after a topology change
  refreshSlotsPeriodically(cluster);
  return cluster;
}
