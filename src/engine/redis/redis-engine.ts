import type { Clock } from '../../util/clock.ts';
import type { Envelope } from '../../protocol/envelope.ts';
import type {
  AppendResult,
  CheckpointWrite,
  Engine,
  EngineLimits,
  NewSession,
  NewSubscriber,
  ReadResult,
  SeenPosition,
  SessionChange,
  SessionChangeResult,
  SessionListener,
  SessionPage,
  SessionQuery,
  SessionRecord,
  StreamHead,
  SubscriberList,
  SubscriberRecord,
  Watch,
} from '../engine.ts';
import {
  clusterSubscriberClient,
  createClient,
  createClusterClient,
  isCluster,
  subscriberClient,
  type EngineClient,
} from './client.ts';
import { clusterConnectDeadlineMs, pingEveryMaster, withDeadline } from './cluster-ready.ts';
import { EngineCore } from './engine-core.ts';
import { mapRedisError } from './errors.ts';
import { DEFAULT_KEY_PREFIX } from './keys.ts';
import { Notifications } from './notifications.ts';
import {
  combinePersistence,
  logPersistence,
  readPersistence,
  type EngineLogger,
  type PersistenceReport,
} from './persistence.ts';
import { replicasOnline } from './replication.ts';
import { DEFAULT_IDEMPOTENCY_TTL_S, RedisSessions } from './sessions.ts';
import { RedisStreams } from './streams.ts';
import { RedisSubscribers } from './subscribers.ts';

export interface RedisEngineOptions {
  /** One Redis: redis://[user:pass@]host:port[/db] or rediss://…. Give this or clusterNodes. */
  url?: string;
  /**
   * A Redis Cluster: seed nodes, each `host:port` or `redis://[user:pass@]host:port`
   * (`rediss://` for TLS), see parseClusterNodes. Give this or url, not both.
   */
  clusterNodes?: readonly string[];
  /** With clusterNodes: `announced=reachable` address pairs, see parseNatMap. */
  clusterNatMap?: string;
  clock: Clock;
  limits: EngineLimits;
  logger?: EngineLogger;
  /** Each Redis command rejects with EngineUnavailableError after this long. Default 2000. */
  commandTimeoutMs?: number;
  /** Prepended to every key and channel, so runs (and tests) can share one Redis. Default 'lo:'. */
  keyPrefix?: string;
  /** How long an idempotency key of createSession is remembered. Default 24 h. */
  idempotencyTtlS?: number;
  /**
   * Replicas that must confirm every write of events, of a subscriber (created, taken
   * over) and of a checkpoint (WAIT) before it resolves, and every read of a stream; on a
   * cluster, replicas of the master holding it. Default 0: resolved once the master has
   * it. See EngineCore#replicated.
   */
  waitReplicas?: number;
}

export const DEFAULT_COMMAND_TIMEOUT_MS = 2000;

/**
 * The engine on Redis (7.0 or newer): streams, meta, dedupe ids and subscribers of a
 * session under one hash tag, every multi-step change as one Lua script. See keys.ts
 * for the layout and scripts/ for what each script guarantees.
 *
 * Create it with `await RedisEngine.connect(options)`: it resolves once Redis answers,
 * after checking (and logging) Redis's persistence settings, and rejects with
 * EngineUnavailableError when Redis cannot be reached.
 *
 * Epochs: a session's epoch is a random 64-bit hex string, stored in its meta hash next
 * to its head. It is created by whichever script first finds the meta missing: first
 * use, or after the meta was lost (FLUSHALL, a restart without AOF, expiry after the
 * session ended). Because epoch and head are stored and lost together, any state in
 * which seqs restart from 1 carries a new epoch. With AOF on, a restart keeps both.
 * Residual risk: with `appendfsync everysec`, a crash can drop the last ~1 s of writes
 * while keeping the meta, so the lost seqs are reused under the same epoch; only
 * `appendfsync always` closes that window. A failover to a replica has the same risk
 * (asynchronous replication); `waitReplicas` closes it (EngineCore#replicated).
 *
 * Outages: commands time out after `commandTimeoutMs`, nothing queues while Redis is
 * unreachable, and every failure to reach Redis rejects with EngineUnavailableError.
 * A timed-out script may still have run (its reply was lost); each script is atomic, so
 * it ran entirely or not at all, and retrying an append with the same eventIds returns
 * the original seqs.
 *
 * Redis Cluster (`clusterNodes`): the same scripts and layout. Every script touches only
 * keys it declares, all in one slot (the session's hash tag; the tenant's for the
 * idempotency claim, which no script combines with session keys), and notices go over
 * sharded pub/sub (SPUBLISH from the scripts, SSUBSCRIBE per master), since a channel
 * with the session's hash tag lives on the master that runs the session's scripts.
 * See client.ts for the client options and docs/operations.md for what is not supported.
 *
 * The parts: sessions.ts (call sessions), streams.ts (event streams), subscribers.ts,
 * notifications.ts (cross-node notices), all on one EngineCore (engine-core.ts).
 */
export class RedisEngine implements Engine {
  readonly kind = 'redis';
  readonly #core: EngineCore;
  readonly #sessions: RedisSessions;
  readonly #streams: RedisStreams;
  readonly #subscribers: RedisSubscribers;
  readonly #notifications: Notifications;
  #closed = false;

  /** Connects, checks persistence, and resolves with a ready engine. */
  static async connect(options: RedisEngineOptions): Promise<RedisEngine> {
    validateLimits(options.limits);
    const url = options.url ?? '';
    const clusterNodes = options.clusterNodes ?? [];
    if ((url === '') === (clusterNodes.length === 0)) {
      throw new RangeError(
        'redis engine: set exactly one of url (REDIS_URL) and clusterNodes (REDIS_CLUSTER_NODES)',
      );
    }
    const commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    const waitReplicas = options.waitReplicas ?? 0;
    if (!Number.isInteger(waitReplicas) || waitReplicas < 0) {
      throw new RangeError('redis engine: waitReplicas must be a whole number ≥ 0');
    }
    // With replicas waited for, head notices leave after the WAIT (EngineCore#noticeHeads), not from the scripts.
    const headNotices = waitReplicas === 0;
    let engine: RedisEngine;
    if (clusterNodes.length > 0) {
      const natMap = options.clusterNatMap ?? '';
      const cluster = createClusterClient({ nodes: clusterNodes, natMap, commandTimeoutMs, headNotices });
      engine = new RedisEngine(
        cluster,
        options,
        (onError) =>
          new Notifications(
            clusterSubscriberClient({ nodes: clusterNodes, natMap, commandTimeoutMs }),
            onError,
            'sharded',
          ),
      );
    } else {
      const redis = createClient({ url, commandTimeoutMs, headNotices });
      engine = new RedisEngine(
        redis,
        options,
        (onError) => new Notifications(subscriberClient(redis), onError),
      );
    }
    const redis = engine.#core.redis;
    try {
      // ioredis's Cluster#connect never settles while the nodes answer but the cluster is
      // not ok (its ready check fails and it retries for ever): bound it.
      await (isCluster(redis)
        ? withDeadline(
            redis.connect(),
            clusterConnectDeadlineMs(commandTimeoutMs),
            'the cluster was not ready',
          )
        : redis.connect());
    } catch (err) {
      redis.disconnect();
      engine.#notifications.close();
      throw mapRedisError(err, 'connect');
    }
    await engine.checkPersistence();
    await engine.#checkReplicas();
    return engine;
  }

  private constructor(
    redis: EngineClient,
    options: RedisEngineOptions,
    notifications: (onError: (err: Error) => void) => Notifications,
  ) {
    const core = new EngineCore({
      redis,
      clock: options.clock,
      limits: options.limits,
      prefix: options.keyPrefix ?? DEFAULT_KEY_PREFIX,
      logger: options.logger,
      commandTimeoutMs: options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
      waitReplicas: options.waitReplicas ?? 0,
    });
    this.#core = core;
    this.#streams = new RedisStreams(core);
    this.#sessions = new RedisSessions(
      core,
      options.idempotencyTtlS ?? DEFAULT_IDEMPOTENCY_TTL_S,
      (sessionId) => this.endStream(sessionId),
    );
    this.#subscribers = new RedisSubscribers(core);
    // Without a listener ioredis prints every reconnect failure itself.
    redis.on('error', (err: Error) => core.logConnectionError(err));
    // A cluster reports a failing node (refused connection, failed slot refresh) here.
    redis.on('node error', (err: Error) => core.logConnectionError(err));
    this.#notifications = notifications((err) => core.logConnectionError(err));
  }

  /** 'cluster' on a Redis Cluster, 'single' on one Redis. */
  get topology(): 'single' | 'cluster' {
    return isCluster(this.#core.redis) ? 'cluster' : 'single';
  }

  /**
   * Reads Redis's AOF settings and logs the loss window they imply, with a loud warning
   * when AOF is off (ARCHITECTURE-NOTES decision 9). Never throws for a denied CONFIG.
   */
  async checkPersistence(): Promise<PersistenceReport> {
    const redis = this.#core.redis;
    // On a cluster every master holds a share of the sessions: the weakest one counts.
    const report = isCluster(redis)
      ? combinePersistence(await Promise.all(redis.nodes('master').map((node) => readPersistence(node))))
      : await readPersistence(redis);
    logPersistence(report, this.#core.logger);
    return report;
  }

  /** With waitReplicas: logs how many replicas are in sync now, and warns when too few. */
  async #checkReplicas(): Promise<void> {
    const core = this.#core;
    if (core.waitReplicas === 0) return;
    const connected = await core.call('connect', () => replicasOnline(core.redis));
    // on a cluster, the fewest over the masters
    const fields = { waitReplicas: core.waitReplicas, connectedReplicas: connected };
    if (connected >= core.waitReplicas) {
      core.logger?.info(
        fields,
        'redis engine: writes of events and reads of streams wait for replicas (WAIT)',
      );
    } else {
      core.logger?.warn(
        fields,
        'redis engine: fewer replicas in sync than REDIS_WAIT_REPLICAS: writes of events and reads of streams fail as unavailable until there are enough',
      );
    }
  }

  // ── call sessions (sessions.ts) ─────────────────────────────────────────────────

  createSession(
    input: NewSession,
    idempotencyKey?: string,
    event?: Envelope,
  ): Promise<{ session: SessionRecord; created: boolean }> {
    return this.#sessions.create(input, idempotencyKey, event);
  }

  getSession(sessionId: string): Promise<SessionRecord | undefined> {
    return this.#sessions.get(sessionId);
  }

  transitionSession(sessionId: string, change: SessionChange): Promise<SessionChangeResult> {
    return this.#sessions.transition(sessionId, change);
  }

  listSessions(query: SessionQuery): Promise<SessionPage> {
    return this.#sessions.list(query);
  }

  // ── event streams (streams.ts) ──────────────────────────────────────────────────

  append(sessionId: string, events: readonly Envelope[], seen?: SeenPosition): Promise<AppendResult> {
    return this.#streams.append(sessionId, events, seen);
  }

  read(sessionId: string, after: number, limit: number): Promise<ReadResult> {
    return this.#streams.read(sessionId, after, limit);
  }

  head(sessionId: string, seen?: SeenPosition): Promise<StreamHead> {
    return this.#streams.head(sessionId, seen);
  }

  peekHeads(sessionIds: readonly string[]): Promise<Array<StreamHead | undefined | null>> {
    return this.#streams.peekHeads(sessionIds);
  }

  endStream(sessionId: string): Promise<StreamHead> {
    return this.#streams.endStream(sessionId);
  }

  // ── subscribers (subscribers.ts) ────────────────────────────────────────────────

  createSubscriber(sessionId: string, sub: NewSubscriber): Promise<SubscriberRecord> {
    return this.#subscribers.create(sessionId, sub);
  }

  getSubscriber(sessionId: string, subscriberId: string): Promise<SubscriberRecord | undefined> {
    return this.#subscribers.get(sessionId, subscriberId);
  }

  takeoverSubscriber(
    sessionId: string,
    subscriberId: string,
    now: number,
    windowMs: number,
    node?: string,
    acked?: number,
  ): Promise<SubscriberRecord | undefined> {
    return this.#subscribers.takeover(sessionId, subscriberId, now, windowMs, node, acked);
  }

  async saveCheckpoint(
    sessionId: string,
    subscriberId: string,
    generation: number,
    seq: number,
  ): Promise<number> {
    const [stored] = await this.#subscribers.saveCheckpoints(sessionId, [{ subscriberId, generation, seq }]);
    return stored!;
  }

  saveCheckpoints(sessionId: string, writes: readonly CheckpointWrite[]): Promise<number[]> {
    return this.#subscribers.saveCheckpoints(sessionId, writes);
  }

  releaseSubscriber(
    sessionId: string,
    subscriberId: string,
    generation: number,
    now: number,
    windowMs: number,
  ): Promise<void> {
    return this.#subscribers.release(sessionId, subscriberId, generation, now, windowMs);
  }

  endSubscriber(sessionId: string, subscriberId: string): Promise<void> {
    return this.#subscribers.end(sessionId, subscriberId);
  }

  listSubscribers(sessionId: string, limit: number): Promise<SubscriberList> {
    return this.#subscribers.list(sessionId, limit);
  }

  // ── lifecycle ─────────────────────────────────────────────────────────────────

  watch(sessionId: string, listener: SessionListener): Watch {
    return this.#notifications.watch(this.#core.keys(sessionId).channel, listener);
  }

  /**
   * Readiness (`/readyz`). One Redis: PING. A cluster: every master, see pingEveryMaster;
   * a cluster with one master down cannot serve that master's sessions, so it is not ready.
   */
  async ping(): Promise<void> {
    const { redis, commandTimeoutMs } = this.#core;
    await this.#core.call('ping', async () => {
      if (isCluster(redis)) await pingEveryMaster(redis, commandTimeoutMs);
      else await redis.ping();
    });
  }

  /** QUIT lets Redis answer what is in flight; if Redis is unreachable, drop the socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Calls queued for this tick go out before QUIT, which Redis answers after them.
    this.#streams.flush();
    this.#subscribers.flush();
    this.#sessions.flush();
    this.#notifications.close();
    try {
      await this.#core.redis.quit();
    } catch {
      this.#core.redis.disconnect();
    }
  }
}

function validateLimits(limits: EngineLimits): void {
  // A stream that keeps no events could serve no replay at all: that is a misconfiguration.
  if (!Number.isSafeInteger(limits.historyMaxEvents) || limits.historyMaxEvents < 1) {
    throw new RangeError(`historyMaxEvents must be an integer ≥ 1, got ${limits.historyMaxEvents}`);
  }
  if (!Number.isSafeInteger(limits.historyTtlAfterEndS) || limits.historyTtlAfterEndS < 0) {
    throw new RangeError(`historyTtlAfterEndS must be an integer ≥ 0, got ${limits.historyTtlAfterEndS}`);
  }
}
