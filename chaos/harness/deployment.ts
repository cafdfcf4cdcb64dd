import { FaultProxy } from '../toolkit/fault-proxy.ts';
import { GatewayProcess } from '../toolkit/gateway-process.ts';
import { freePort } from '../toolkit/ports.ts';
import { RedisCluster } from '../toolkit/redis-cluster.ts';
import { RedisServer } from '../toolkit/redis-server.ts';
import type { Rng } from '../swarm/rng.ts';

/**
 * The system under test for a chaos run: one private redis-server (or a Redis Cluster) and
 * N gateway nodes, each started through the real entry point, with our own TCP fault
 * proxies where a scenario needs to break the network (between the gateways and Redis,
 * and between the clients and each gateway).
 *
 * A killed node is restarted on the same port, as a process supervisor would do, so the
 * clients' list of addresses stays valid.
 */
export interface DeploymentOptions {
  nodes: number;
  /** Redis persistence: AOF with `appendfsync always` unless a scenario says otherwise. */
  redisAof: boolean;
  appendfsync: 'always' | 'everysec' | 'no';
  /** Put a fault proxy between the gateways and Redis. */
  redisProxy: boolean;
  /**
   * Give Redis a replica, whose replication link goes through a fault proxy of its own
   * (so it can be made to lag), for `failover()`. Needs `redisProxy`.
   */
  redisReplica: boolean;
  /**
   * Masters of a Redis Cluster instead of the one redis-server; the gateways reach each
   * through a fault proxy of its own (REDIS_CLUSTER_NAT_MAP), so one master can be cut
   * off while the cluster stays whole. Its nodes have AOF as `redisAof` and
   * `appendfsync` say ('no' counts as no AOF). 0: one redis-server.
   */
  redisClusterMasters: number;
  /** Replicas per master of that cluster (each behind a proxy too: it may be promoted). */
  redisClusterReplicas: number;
  /** Put a fault proxy in front of every gateway node (clients connect through it). */
  clientProxies: boolean;
  /**
   * A second proxy in front of every node that lets `slowLaneBytesPerSec` through to the
   * client, for subscribers that read slowly from their first byte on (a reader that
   * merely stops is absorbed by loopback socket buffers of tens of megabytes).
   */
  slowLaneBytesPerSec: number;
  /** Run the nodes from source (tsx) or from the compiled `dist/` (faster restarts). */
  build: 'source' | 'dist';
  /** Extra gateway environment (timeouts, limits) on top of the chaos defaults. */
  gatewayEnv: Record<string, string>;
  rng: Rng;
}

export interface NodeSlot {
  readonly name: string;
  process: GatewayProcess | undefined;
  port: number;
  proxy: FaultProxy | undefined;
  slowLane: FaultProxy | undefined;
  paused: boolean;
}

/** Gateway settings that keep a short run meaningful: short windows and timeouts. */
export const CHAOS_GATEWAY_ENV: Record<string, string> = {
  LOG_LEVEL: 'info',
  RESUME_WINDOW_MS: '30000',
  REDIS_COMMAND_TIMEOUT_MS: '1000',
  HISTORY_MAX_EVENTS: '1000000',
  SHUTDOWN_TIMEOUT_MS: '3000',
  // The inspector: a subscriber that does not drain is reported with each node's view of
  // its session (Swarm.finish).
  CONSOLE_ENABLED: 'true',
};

/** A Redis Cluster and, by master port, the proxy the gateways reach it through. */
export interface ClusterDeployment {
  readonly cluster: RedisCluster;
  readonly links: ReadonlyMap<number, FaultProxy>;
}

export class Deployment {
  readonly redisProxy: FaultProxy | undefined;
  /** With `redisClusterMasters`: the cluster instead of `redis`. */
  readonly redisCluster: ClusterDeployment | undefined;
  /** With `redisReplica`: the replica, and the proxy its replication link goes through. */
  replica: RedisServer | undefined;
  replicaLink: FaultProxy | undefined;
  readonly nodes: NodeSlot[];
  /** Node exits nobody asked for (a crash is a finding of the run, not a fault). */
  readonly unexpectedExits: Array<{
    node: string;
    code: number | null;
    signal: string | null;
    stderr: string;
  }> = [];
  readonly #options: DeploymentOptions;
  /** Processes that were killed or exited, kept for their logs (the report). */
  readonly #retired: Array<{ node: string; process: GatewayProcess }> = [];
  #redis: RedisServer | undefined;

  private constructor(
    options: DeploymentOptions,
    redis: RedisServer | ClusterDeployment,
    redisProxy: FaultProxy | undefined,
    nodes: NodeSlot[],
  ) {
    this.#options = options;
    if (redis instanceof RedisServer) this.#redis = redis;
    else this.redisCluster = redis;
    this.redisProxy = redisProxy;
    this.nodes = nodes;
  }

  /** The master (after a failover, the replica that took over). Not on a cluster. */
  get redis(): RedisServer {
    if (!this.#redis) throw new Error('this deployment runs a Redis Cluster, not one redis-server');
    return this.#redis;
  }

  static async start(options: DeploymentOptions): Promise<Deployment> {
    if (options.redisClusterMasters > 0 && (options.redisProxy || options.redisReplica))
      throw new Error('redisProxy and redisReplica are for one redis-server, not a cluster');
    const redis =
      options.redisClusterMasters > 0
        ? await startCluster(options)
        : await RedisServer.start({ aof: options.redisAof, appendfsync: options.appendfsync });
    const redisProxy =
      options.redisProxy && redis instanceof RedisServer
        ? await FaultProxy.start({
            target: { host: '127.0.0.1', port: redis.port },
            name: 'redis',
            random: () => options.rng.next(),
          })
        : undefined;
    const nodes: NodeSlot[] = Array.from({ length: options.nodes }, (_, i) => ({
      name: `n${i + 1}`,
      process: undefined,
      port: 0,
      proxy: undefined,
      slowLane: undefined,
      paused: false,
    }));
    const deployment = new Deployment(options, redis, redisProxy, nodes);
    try {
      if (options.redisReplica) await deployment.#startReplica();
      await Promise.all(nodes.map((slot) => deployment.#launch(slot)));
      if (options.clientProxies) {
        for (const slot of nodes) {
          slot.proxy = await FaultProxy.start({
            target: { host: '127.0.0.1', port: slot.port },
            name: `clients→${slot.name}`,
            random: () => options.rng.next(),
          });
        }
      }
      if (options.slowLaneBytesPerSec > 0) {
        for (const slot of nodes) {
          slot.slowLane = await FaultProxy.start({
            target: { host: '127.0.0.1', port: slot.port },
            name: `slow→${slot.name}`,
            maxQueuedBytes: 64 * 1024,
          });
          slot.slowLane.setFaults({ bandwidthBytesPerSec: options.slowLaneBytesPerSec }, 'down');
        }
      }
    } catch (err) {
      await deployment.stop();
      throw err;
    }
    return deployment;
  }

  /** Where clients connect: the node itself, or the proxy in front of it. */
  targets(): string[] {
    return this.nodes.map((slot) => `http://127.0.0.1:${slot.proxy ? slot.proxy.port : slot.port}`);
  }

  /** Where slow readers connect (empty without a slow lane). */
  slowTargets(): string[] {
    return this.nodes.flatMap((slot) => (slot.slowLane ? [`http://127.0.0.1:${slot.slowLane.port}`] : []));
  }

  /** How the gateways find Redis: REDIS_URL, or the cluster's seeds and NAT map. */
  redisEnv(): Record<string, string> {
    if (this.redisCluster) {
      const links = [...this.redisCluster.links].map(([port, link]) => ({
        announced: `127.0.0.1:${port}`,
        via: `127.0.0.1:${link.port}`,
      }));
      return {
        REDIS_CLUSTER_NODES: links.map((l) => l.via).join(','),
        REDIS_CLUSTER_NAT_MAP: links.map((l) => `${l.announced}=${l.via}`).join(','),
      };
    }
    return { REDIS_URL: `redis://127.0.0.1:${this.redisProxy ? this.redisProxy.port : this.redis.port}` };
  }

  /** Redis answering and reachable again: thawed, every proxy to it healed and open. */
  healRedis(): void {
    this.#redis?.resume();
    for (const link of [this.redisProxy, ...(this.redisCluster?.links.values() ?? [])]) {
      link?.heal();
      link?.refuse(false);
      link?.clearFaults();
    }
  }

  /** kill -9; the node is started again on the same port after `downMs`. */
  async killNode(slot: NodeSlot, downMs: number): Promise<void> {
    const proc = slot.process;
    if (!proc) return;
    slot.process = undefined;
    this.#retired.push({ node: slot.name, process: proc });
    proc.kill('SIGKILL');
    await proc.exited;
    slot.paused = false;
    if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
    await this.#launch(slot);
  }

  /** SIGSTOP: the node keeps its sockets and answers nothing (a zombie, a long GC pause). */
  pauseNode(slot: NodeSlot): void {
    if (!slot.process || slot.paused) return;
    slot.process.pause();
    slot.paused = true;
  }

  resumeNode(slot: NodeSlot): void {
    if (!slot.process || !slot.paused) return;
    slot.process.resume();
    slot.paused = false;
  }

  /** Starts again every node that is not running (one that exited on its own). */
  async ensureRunning(): Promise<void> {
    await Promise.all(
      this.nodes.map(async (slot) => {
        if (!slot.process?.running) {
          slot.process = undefined;
          await this.#launch(slot);
        }
      }),
    );
  }

  /** RSS of every running node, for the memory bound. */
  memory(): Array<{ node: string; rssBytes: number }> {
    const out: Array<{ node: string; rssBytes: number }> = [];
    for (const slot of this.nodes) {
      if (!slot.process?.running) continue;
      try {
        out.push({ node: slot.name, rssBytes: slot.process.rssBytes() });
      } catch {
        /* the process just exited */
      }
    }
    return out;
  }

  /** Lines every node process (killed ones included) logged at warn level or above. */
  problems(): Array<{ node: string; pid: number; line: Record<string, unknown> }> {
    const out: Array<{ node: string; pid: number; line: Record<string, unknown> }> = [];
    const all = [
      ...this.#retired,
      ...this.nodes.flatMap((slot) => (slot.process ? [{ node: slot.name, process: slot.process }] : [])),
    ];
    for (const { node, process } of all) {
      for (const line of process.logs) {
        if (line.level === 'warn' || line.level === 'error' || line.level === 'fatal')
          out.push({ node, pid: process.pid, line });
      }
    }
    return out;
  }

  async stop(): Promise<void> {
    for (const slot of this.nodes) this.resumeNode(slot);
    await Promise.allSettled(this.nodes.map(async (slot) => slot.process?.stop(5000)));
    await Promise.allSettled(
      this.nodes.map(async (slot) => {
        await slot.proxy?.close();
        await slot.slowLane?.close();
      }),
    );
    await this.redisProxy?.close();
    await this.replicaLink?.close();
    await this.replica?.stop();
    this.#redis?.resume();
    await this.#redis?.stop();
    if (this.redisCluster) {
      await Promise.allSettled([...this.redisCluster.links.values()].map((link) => link.close()));
      await this.redisCluster.cluster.stop();
    }
  }

  /**
   * A failover, as a managed Redis does it: the master killed (-9), the replica promoted
   * (REPLICAOF NO ONE) and the gateways' proxy pointed at it, every connection through it
   * closed. Whatever the replica lacked (its link lagging) is gone. The old master then
   * comes back, empty of what it alone had, as the new one's replica.
   */
  async failover(): Promise<void> {
    const [old, promoted, link, proxy] = [this.#redis, this.replica, this.replicaLink, this.redisProxy];
    if (!old || !promoted || !link || !proxy) throw new Error('failover needs redisReplica and redisProxy');
    await old.kill();
    await promoted.command('REPLICAOF', 'NO', 'ONE');
    proxy.retarget({ host: '127.0.0.1', port: promoted.port });
    await proxy.closeAll();
    this.#redis = promoted;
    this.replica = old;
    link.retarget({ host: '127.0.0.1', port: promoted.port });
    await link.closeAll();
    link.heal();
    await old.restart();
    await old.follow(promoted, link.port);
  }

  async #startReplica(): Promise<void> {
    this.replicaLink = await FaultProxy.start({
      target: { host: '127.0.0.1', port: this.redis.port },
      name: 'replication',
    });
    this.replica = await RedisServer.start({
      aof: this.#options.redisAof,
      appendfsync: this.#options.appendfsync,
    });
    await this.replica.follow(this.redis, this.replicaLink.port);
  }

  /**
   * Starts the node's process on its port (picked once, outside the ephemeral range, so
   * that no client socket can hold it while the node is down). A start that fails —
   * the port still held by a socket of the killed process for a moment — is retried.
   */
  async #launch(slot: NodeSlot): Promise<void> {
    if (slot.port === 0) slot.port = await freePort();
    for (let attempt = 1; ; attempt++) {
      try {
        const proc = await this.#spawn(slot);
        slot.process = proc;
        void proc.exited.then(({ code, signal }) => {
          // killNode() forgets the process before it kills it: still here means unasked.
          if (slot.process === proc)
            this.unexpectedExits.push({ node: slot.name, code, signal, stderr: proc.stderr.slice(-2000) });
        });
        return;
      } catch (err) {
        if (attempt >= 5) throw err;
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
  }

  async #spawn(slot: NodeSlot): Promise<GatewayProcess> {
    return GatewayProcess.start(
      {
        ...CHAOS_GATEWAY_ENV,
        ...this.#options.gatewayEnv,
        ...this.redisEnv(),
        NODE_ID: slot.name,
        PORT: String(slot.port),
      },
      { name: slot.name, build: this.#options.build },
    );
  }
}

/** A cluster of `redisClusterMasters` masters, each behind a fault proxy of its own. */
async function startCluster(options: DeploymentOptions): Promise<ClusterDeployment> {
  const cluster = await RedisCluster.start({
    masters: options.redisClusterMasters,
    replicas: options.redisClusterReplicas,
    // a killed master's replica takes over within about 2 s
    nodeTimeoutMs: 1000,
    // with replicas, a master can be cut off on the minority side (isolate)
    partitionable: options.redisClusterReplicas > 0,
    ...(options.redisAof && options.appendfsync !== 'no' ? { appendfsync: options.appendfsync } : {}),
  });
  const links = new Map<number, FaultProxy>();
  try {
    for (const port of cluster.ports) {
      links.set(
        port,
        await FaultProxy.start({
          target: { host: '127.0.0.1', port },
          name: `redis:${port}`,
          random: () => options.rng.next(),
        }),
      );
    }
  } catch (err) {
    await Promise.allSettled([...links.values()].map((link) => link.close()));
    await cluster.stop();
    throw err;
  }
  return { cluster, links };
}
