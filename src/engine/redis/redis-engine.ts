import type { Cluster } from 'ioredis';
import type { Clock } from '../../util/clock.ts';
import { randomHex } from '../../util/random-pool.ts';
import type { Envelope } from '../../protocol/envelope.ts';
import { envelopeText } from '../../protocol/envelope-text.ts';
import type {
  AppendOutcome,
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
  Watch,
  SessionRecord,
  StreamHead,
  SubscriberList,
  SubscriberRecord,
} from '../engine.ts';
import { EngineUnavailableError, GatewayError } from '../../errors/gateway-error.ts';
import { idOfOrderKey, positionOfOrderKey, sessionOrderKey } from '../session-order.ts';
import { newSubscriberRecord } from '../subscriber-record.ts';
import {
  clusterSubscriberClient,
  createClient,
  createClusterClient,
  isCluster,
  masterConnections,
  scriptRunner,
  subscriberClient,
  type EngineClient,
  type ScriptRunner,
} from './client.ts';
import { Notifications } from './notifications.ts';
import { TickQueue, type QueuedCall } from './tick-queue.ts';
import { mapRedisError } from './errors.ts';
import { replicasOnline, waitForReplicas } from './replication.ts';
import {
  DEFAULT_KEY_PREFIX,
  idempotencyKey,
  ownerIndexKey,
  sessionKeys,
  subscriberKey,
  subscriberMember,
  tenantIndexKey,
  type SessionKeys,
} from './keys.ts';
import {
  combinePersistence,
  logPersistence,
  readPersistence,
  type EngineLogger,
  type PersistenceReport,
} from './persistence.ts';
import { asArray, parseEntry, parseHead, parseSubscriber, subscriberFields, toInt } from './records.ts';
import type { ScriptName } from './scripts/index.ts';
import { PRUNE_THRESHOLD } from './scripts/subscriber-scripts.ts';

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
   * it. See #replicated.
   */
  waitReplicas?: number;
}

export const DEFAULT_COMMAND_TIMEOUT_MS = 2000;
export const DEFAULT_IDEMPOTENCY_TTL_S = 86_400;
/** read() returns at most this many events per call, whatever `limit` asks (the contract allows fewer). */
export const MAX_READ_LIMIT = 10_000;
/** Redis's TTL on a released subscriber outlasts its logical window a little; the window itself is exact. */
const RELEASE_TTL_GRACE_MS = 5_000;
/** At most one connection-error log line per this many ms: an outage must not flood the logs. */
const ERROR_LOG_INTERVAL_MS = 5_000;
/**
 * endStream passes the subscriber keys it read; a subscriber created between that read
 * and the script is reported back and covered by one more call (see END_STREAM_LUA).
 */
const END_STREAM_MAX_PASSES = 4;
/**
 * A listing reads at most this many batches of index entries: entries whose record is
 * gone are skipped, and a page that had to skip this much ends early (with `next`).
 */
const LIST_MAX_ROUNDS = 8;
/**
 * A listing removes an index entry whose record is missing only once the entry is older
 * than this: a younger one may be a session whose record is being written right now
 * (the index is written first). Older ones expired after their stream ended.
 */
const LIST_PRUNE_GRACE_MS = 10 * 60_000;

/** Prune marks remembered (sessions with more than PRUNE_THRESHOLD subscribers); the oldest go first. */
const MAX_PRUNE_MARKS = 10_000;

/** Most subscribers one loCreateSubscribers call creates (a longer script blocks Redis longer). */
const MAX_CREATE_BATCH = 256;
/** Most releases one loReleaseSubscribers call carries. */
const MAX_RELEASE_BATCH = 512;
/** Most session records one MGET reads. */
const MAX_SESSION_READ_BATCH = 512;

interface PendingCreate extends QueuedCall {
  k: SessionKeys;
  sub: NewSubscriber;
  resolve(record: SubscriberRecord): void;
  reject(err: unknown): void;
}

interface PendingRelease extends QueuedCall {
  key: string;
  generation: number;
  now: number;
  windowMs: number;
  resolve(released: boolean): void;
  reject(err: unknown): void;
}

/** One session record read; every getSession of the session in that tick shares it. */
interface PendingSessionRead extends QueuedCall {
  key: string;
  read: Promise<string | null>;
  resolve(json: string | null): void;
  reject(err: unknown): void;
}

interface PendingAppend extends QueuedCall {
  k: SessionKeys;
  events: readonly Envelope[];
  seen: SeenPosition | undefined;
  resolve(result: AppendResult): void;
  reject(err: unknown): void;
}

interface PendingCheckpoint extends QueuedCall {
  key: string;
  generation: number;
  seq: number;
  resolve(checkpoint: number): void;
  reject(err: unknown): void;
}

interface PendingTakeover extends QueuedCall {
  k: SessionKeys;
  subscriberId: string;
  now: number;
  windowMs: number;
  node: string;
  /** The checkpoint floor (a resume's lastSeq), -1 for none. */
  acked: number;
  resolve(record: SubscriberRecord | undefined): void;
  reject(err: unknown): void;
}

/** The outcome of Engine#saveCheckpoints: settles once every item has. */
class CheckpointGroup {
  readonly stored: number[];
  #left: number;
  #failed = false;
  readonly #resolve: (stored: number[]) => void;
  readonly #reject: (err: unknown) => void;

  constructor(size: number, resolve: (stored: number[]) => void, reject: (err: unknown) => void) {
    this.stored = new Array<number>(size).fill(0);
    this.#left = size;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  settle(index: number, checkpoint: number): void {
    this.stored[index] = checkpoint;
    if (--this.#left === 0 && !this.#failed) this.#resolve(this.stored);
  }

  /** The first failure rejects the group; the items still out settle into nothing. */
  fail(err: unknown): void {
    this.#left--;
    if (this.#failed) return;
    this.#failed = true;
    this.#reject(err);
  }
}

/** One item of a CheckpointGroup in the checkpoint queue: methods, not closures. */
class GroupedCheckpoint implements PendingCheckpoint {
  readonly weight = 1;
  constructor(
    readonly group: CheckpointGroup,
    readonly index: number,
    readonly sessionId: string,
    readonly key: string,
    readonly generation: number,
    readonly seq: number,
  ) {}

  resolve(checkpoint: number): void {
    this.group.settle(this.index, checkpoint);
  }

  reject(err: unknown): void {
    this.group.fail(err);
  }
}

/**
 * Most session batches, and events, one loAppend call carries (the rest go in further
 * calls of the same tick): a longer script blocks Redis longer.
 */
const MAX_APPEND_SESSIONS = 256;
const MAX_APPEND_EVENTS = 2048;
/** Most checkpoints one loSaveCheckpoint call carries. */
const MAX_CHECKPOINT_BATCH = 512;
/** Most takeovers one loTakeoverSubscriber call carries. */
const MAX_TAKEOVER_BATCH = 256;
/** Sessions whose key names the engine keeps built (see #keys): a few MB at most. */
const KEY_CACHE_MAX = 20_000;

/** Subscriber hashes read at once by listSubscribers. */
const LIST_SUBSCRIBERS_BATCH = 100;

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
 * (asynchronous replication); `waitReplicas` closes it (#replicated).
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
 */
export class RedisEngine implements Engine {
  readonly kind = 'redis';
  readonly #redis: EngineClient;
  readonly #script: ScriptRunner;
  readonly #clock: Clock;
  readonly #limits: EngineLimits;
  readonly #prefix: string;
  readonly #logger: EngineLogger | undefined;
  readonly #idempotencyTtlS: number;
  readonly #notifications: Notifications;
  readonly #commandTimeoutMs: number;
  readonly #waitReplicas: number;
  #lastErrorLog = -Infinity;
  #closed = false;
  /** getSession reads queued and not sent yet, by session (see getSession). */
  readonly #sessionReadsQueued = new Map<string, PendingSessionRead>();
  /** The engine calls of a tick, of any sessions, sent together (see TickQueue). */
  readonly #sessionReads = this.#tickQueue<PendingSessionRead>(
    (chunk) => this.#sendSessionReads(chunk),
    MAX_SESSION_READ_BATCH,
  );
  readonly #creates = this.#tickQueue<PendingCreate>((chunk) => this.#sendCreates(chunk), MAX_CREATE_BATCH);
  readonly #releases = this.#tickQueue<PendingRelease>(
    (chunk) => this.#sendReleases(chunk),
    MAX_RELEASE_BATCH,
  );
  readonly #appends = this.#tickQueue<PendingAppend>(
    (chunk) => this.#sendAppends(chunk),
    MAX_APPEND_SESSIONS,
    MAX_APPEND_EVENTS,
  );
  /**
   * Paced: one call of MAX_CHECKPOINT_BATCH per round, so an append made during a burst of
   * acks waits behind at most one checkpoint call on the connection (see TickQueue).
   */
  readonly #checkpoints = this.#tickQueue<PendingCheckpoint>(
    (chunk) => this.#sendCheckpoints(chunk),
    MAX_CHECKPOINT_BATCH,
    MAX_CHECKPOINT_BATCH,
    MAX_CHECKPOINT_BATCH,
  );
  readonly #takeovers = this.#tickQueue<PendingTakeover>(
    (chunk) => this.#sendTakeovers(chunk),
    MAX_TAKEOVER_BATCH,
  );
  readonly #keyCache = new Map<string, SessionKeys>();
  /** Per subs index: the size above which createSubscriber prunes it next (see #pruneSubscribers). */
  readonly #pruneAt = new Map<string, number>();
  /** Subs indexes being pruned now: creates meanwhile leave them to that prune. */
  readonly #pruning = new Set<string>();

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
    // With replicas waited for, head notices leave after the WAIT (#noticeHeads), not from the scripts.
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
    const redis = engine.#redis;
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
    this.#redis = redis;
    this.#script = scriptRunner(redis);
    this.#clock = options.clock;
    this.#limits = options.limits;
    this.#prefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
    this.#logger = options.logger;
    this.#idempotencyTtlS = options.idempotencyTtlS ?? DEFAULT_IDEMPOTENCY_TTL_S;
    this.#commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    this.#waitReplicas = options.waitReplicas ?? 0;
    // Without a listener ioredis prints every reconnect failure itself.
    redis.on('error', (err: Error) => this.#logConnectionError(err));
    // A cluster reports a failing node (refused connection, failed slot refresh) here.
    redis.on('node error', (err: Error) => this.#logConnectionError(err));
    this.#notifications = notifications((err) => this.#logConnectionError(err));
  }

  /** 'cluster' on a Redis Cluster, 'single' on one Redis. */
  get topology(): 'single' | 'cluster' {
    return isCluster(this.#redis) ? 'cluster' : 'single';
  }

  /**
   * Reads Redis's AOF settings and logs the loss window they imply, with a loud warning
   * when AOF is off (ARCHITECTURE-NOTES decision 9). Never throws for a denied CONFIG.
   */
  async checkPersistence(): Promise<PersistenceReport> {
    // On a cluster every master holds a share of the sessions: the weakest one counts.
    const report = isCluster(this.#redis)
      ? combinePersistence(
          await Promise.all(this.#redis.nodes('master').map((node) => readPersistence(node))),
        )
      : await readPersistence(this.#redis);
    logPersistence(report, this.#logger);
    return report;
  }

  /** With waitReplicas: logs how many replicas are in sync now, and warns when too few. */
  async #checkReplicas(): Promise<void> {
    if (this.#waitReplicas === 0) return;
    const connected = await this.#call('connect', () => replicasOnline(this.#redis));
    // on a cluster, the fewest over the masters
    const fields = { waitReplicas: this.#waitReplicas, connectedReplicas: connected };
    if (connected >= this.#waitReplicas) {
      this.#logger?.info(
        fields,
        'redis engine: writes of events and reads of streams wait for replicas (WAIT)',
      );
    } else {
      this.#logger?.warn(
        fields,
        'redis engine: fewer replicas in sync than REDIS_WAIT_REPLICAS: writes of events and reads of streams fail as unavailable until there are enough',
      );
    }
  }

  /**
   * With waitReplicas, resolves once that many replicas of the master holding `keys`
   * have the writes made so far (WAIT; see replication.ts). A write acknowledged after
   * this survives a failover to one of them; one not confirmed in time rejects with
   * EngineUnavailableError, which callers report as a retryable `unavailable`, and the
   * retry is deduplicated. WAIT blocks its connection while it waits, so it is bounded by
   * half the command timeout: commands queued behind it still fit in theirs. A retry that
   * finds its events stored writes nothing, possibly on a new connection, and its WAIT
   * still covers the first attempt (replication.ts says why).
   *
   * What waits: writes of events (append, sessions created and changed), subscribers
   * created and taken over, checkpoints, and reads of streams (#readConfirmed). A lost
   * subscriber record closes its connection 4009 after the failover (the resync's
   * generation check finds no record); a lost takeover leaves the record a generation
   * behind its connection, whose checkpoints are then fenced and whose generation the next
   * resume takes again; a lost checkpoint replays acknowledged events to a resume without
   * lastSeq. Releases and ends do not wait: nobody is answered for them, and losing one
   * only leaves a resume token valid longer than asked.
   */
  async #replicated(operation: string, keys: readonly string[], what = 'the write'): Promise<void> {
    if (this.#waitReplicas === 0) return;
    const timeoutMs = Math.max(1, Math.floor(this.#commandTimeoutMs / 2));
    const confirmed = await this.#call(operation, () =>
      waitForReplicas(this.#redis, keys, this.#waitReplicas, timeoutMs),
    );
    if (confirmed < this.#waitReplicas) {
      const err = new EngineUnavailableError(
        `redis ${operation}: ${confirmed} of ${this.#waitReplicas} replicas confirmed ${what} within ${timeoutMs} ms`,
      );
      // The same throttle as connection errors: a lagging replica must not flood the log.
      this.#logConnectionError(err, 'redis engine: replicas did not confirm a write');
      throw err;
    }
  }

  /**
   * #sendChunk's `confirm` for a chunk of writes that must reach the replicas (#replicated),
   * each call's key naming its master on a cluster. Undefined unless replicas are waited
   * for: then no closure and no key list.
   */
  #confirmer<T>(
    operation: string,
    what: string,
    chunk: readonly T[],
    keyOf: (call: T) => string,
  ): (() => Promise<void>) | undefined {
    if (this.#waitReplicas === 0) return undefined;
    return () => this.#replicated(operation, chunk.map(keyOf), what);
  }

  /**
   * With waitReplicas, what a read returned counts only once the replicas have it: the
   * read moved its connection's replication offset past every entry it saw (see
   * replication.ts), so WAIT on it confirms them. A node then never delivers, nor takes
   * for its head, an event that a failover could still lose (another node's append may
   * not be confirmed yet); unconfirmed, the read fails as `unavailable` and is retried.
   */
  #readConfirmed(operation: string, k: SessionKeys): Promise<void> {
    return this.#replicated(operation, [k.stream], 'the events read');
  }

  /**
   * With waitReplicas the scripts send no head notice (scriptsFor's headNotices): they go
   * out here, once WAIT confirmed the writes, so another node never hears of a head a
   * failover could take back (it would take that head for seen, and its resync would
   * start a new epoch: 4011 for its subscribers). One loNotify call for all of them on one
   * Redis, an SPUBLISH each on a cluster. Fire and forget, like the scripts' notices: the
   * stream stays the truth, and a lost notice only delays a node until its next notice
   * or read.
   */
  #noticeHeads(heads: ReadonlyArray<{ k: SessionKeys; epoch: string; headSeq: number }>): void {
    const redis = this.#redis;
    if (isCluster(redis)) {
      for (const { k, epoch, headSeq } of heads)
        redis.spublish(k.channel, `${headSeq} ${epoch}`).catch(() => {});
      return;
    }
    const args: string[] = [];
    for (const { k, epoch, headSeq } of heads) args.push(k.channel, `${headSeq} ${epoch}`);
    this.#script('loNotify', [], args).catch(() => {});
  }

  // ── call sessions ──────────────────────────────────────────────────────────────

  /**
   * With an idempotency key, in three steps, each safe to repeat:
   * 1. claim: one script on the idempotency key stores (session id, record JSON, event
   *    JSON) unless a claim exists, and returns the claim that holds. This is where
   *    concurrent calls are decided: exactly one of them claims.
   * 2. write the session: its listing entries (ZADD, in the tenant's slot), then the record
   *    with its `call.created` (loCreateSession: SET NX and the append, one script under
   *    the session's own tag). Every caller that sees an uncommitted claim does it, so a
   *    claimant that crashed or timed out between steps is repaired by the retry, and NX
   *    never overwrites a record that has moved on. Both writers would write the same JSON.
   * 3. mark the claim committed, so a later duplicate whose session has since expired
   *    (ended + retention) does not resurrect it; it gets the claimed snapshot instead.
   * The claim is remembered for `idempotencyTtlS`. Without a key: step 2 only.
   */
  async createSession(
    input: NewSession,
    idempotencyKeyValue?: string,
    event?: Envelope,
  ): Promise<{ session: SessionRecord; created: boolean }> {
    const result = await this.#createSession(input, idempotencyKeyValue, event);
    // the session's record and first event, and the idempotency claim in its tenant's slot
    const keys = [this.#keys(result.session.id).session];
    if (idempotencyKeyValue !== undefined)
      keys.push(idempotencyKey(this.#prefix, input.tenantId, input.ownerId, idempotencyKeyValue));
    await this.#replicated('createSession', keys);
    // With replicas waited for, its script sends no head notice and none follows here: no
    // node watches a session before it exists, and one that starts to reads its head.
    return result;
  }

  async #createSession(
    input: NewSession,
    idempotencyKeyValue?: string,
    event?: Envelope,
  ): Promise<{ session: SessionRecord; created: boolean }> {
    const record: SessionRecord = { ...input, state: 'created', version: 1 };
    const json = JSON.stringify(record);
    const eventJson = event === undefined ? '' : envelopeText(event);
    if (idempotencyKeyValue === undefined) {
      await this.#writeSession(record, json, eventJson);
      return { session: record, created: true };
    }
    const idem = idempotencyKey(this.#prefix, input.tenantId, input.ownerId, idempotencyKeyValue);
    const claim = asArray(
      await this.#run(
        'createSession',
        'loIdemClaim',
        [idem],
        [input.id, json, this.#idempotencyTtlS, eventJson],
      ),
      'claim',
    );
    const created = toInt(claim[0], 'created') === 1;
    const sessionId = String(claim[1]);
    const claimedJson = String(claim[2]);
    const claimed = JSON.parse(claimedJson) as SessionRecord;
    if (String(claim[3]) !== '1') {
      await this.#writeSession(claimed, claimedJson, typeof claim[4] === 'string' ? claim[4] : '');
      // A repair of an old claim: its entry is old enough for a listing to have pruned it
      // while the record was missing, so it is entered again now that the record is there.
      if (!created) await this.#index(claimed);
      await this.#run('createSession', 'loIdemCommit', [idem], []);
    }
    if (created) return { session: record, created: true };
    const current = await this.getSession(sessionId);
    return { session: current ?? claimed, created: false };
  }

  /** Listing entries first (see LIST_PRUNE_GRACE_MS), then the record and its first event. */
  async #writeSession(record: SessionRecord, json: string, eventJson: string): Promise<void> {
    await this.#index(record);
    const k = this.#keys(record.id);
    const args: (string | number)[] = [json, newEpoch(), this.#limits.historyMaxEvents, k.channel];
    if (eventJson !== '') args.push((JSON.parse(eventJson) as Envelope).eventId, eventJson);
    await this.#run('createSession', 'loCreateSession', [k.stream, k.meta, k.ids, k.session], args);
  }

  /** The session's entries in its tenant's and its owner's listing (one slot, one transaction). */
  async #index(record: SessionRecord): Promise<void> {
    const key = sessionOrderKey(record.createdAt, record.id);
    const tenantIndex = tenantIndexKey(this.#prefix, record.tenantId);
    const ownerIndex = ownerIndexKey(this.#prefix, record.tenantId, record.ownerId);
    const replies = await this.#call('createSession', () =>
      this.#redis.multi().zadd(tenantIndex, 0, key).zadd(ownerIndex, 0, key).exec(),
    );
    const failed = replies?.find(([err]) => err !== null)?.[0];
    if (!replies || failed) throw mapRedisError(failed ?? new Error('transaction aborted'), 'createSession');
  }

  /**
   * Calls for one session made in the same tick share one GET, sent from setImmediate once
   * they have all been made (so each still reads a state at least as new as its call); a
   * crowd of fresh `hello`s to one session reads its record once per tick. Each caller
   * gets its own copy of the record.
   */
  /**
   * Reads made in the same tick, of any sessions, go to Redis as one MGET (see
   * TickQueue; on a Redis Cluster, one per session), and the reads of one session share
   * it. A read joins only a queued one, never one already sent: a read made after a write
   * was answered must see that write.
   */
  async getSession(sessionId: string): Promise<SessionRecord | undefined> {
    let pending = this.#sessionReadsQueued.get(sessionId);
    if (!pending) {
      let resolve!: (json: string | null) => void;
      let reject!: (err: unknown) => void;
      const read = new Promise<string | null>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      pending = { sessionId, weight: 1, key: this.#keys(sessionId).session, read, resolve, reject };
      this.#sessionReadsQueued.set(sessionId, pending);
      this.#sessionReads.push(pending);
    }
    const json = await pending.read;
    return json === null ? undefined : (JSON.parse(json) as SessionRecord);
  }

  async #sendSessionReads(chunk: readonly PendingSessionRead[]): Promise<void> {
    for (const read of chunk) this.#sessionReadsQueued.delete(read.sessionId);
    let values: (string | null)[];
    try {
      values = await this.#call('getSession', () => this.#redis.mget(chunk.map((read) => read.key)));
    } catch (err) {
      for (const read of chunk) read.reject(err);
      return;
    }
    chunk.forEach((read, i) => read.resolve(values[i] ?? null));
  }

  /**
   * One script (loTransitionSession) does the compare-and-set, the append and, for a
   * terminal change, the end of the stream. The end then also caps the session's
   * subscriber keys at the retention TTL, which needs their keys declared: that is one
   * more endStream call (a repeat of the end, see END_STREAM_LUA). If it fails the change
   * has happened all the same; this rejects, and a retry of the change is a replay.
   */
  async transitionSession(sessionId: string, change: SessionChange): Promise<SessionChangeResult> {
    const k = this.#keys(sessionId);
    const reply = asArray(
      await this.#run(
        'transitionSession',
        'loTransitionSession',
        [k.stream, k.meta, k.ids, k.session, k.subs],
        [
          int(change.expectedVersion),
          JSON.stringify(change.next),
          change.endStream ? '1' : '0',
          this.#limits.historyTtlAfterEndS,
          newEpoch(),
          this.#limits.historyMaxEvents,
          k.channel,
          change.event.eventId,
          envelopeText(change.event),
        ],
      ),
      'transitionSession',
    );
    await this.#replicated('transitionSession', [k.stream]);
    if (this.#waitReplicas > 0 && String(reply[0]) === 'applied') {
      const { epoch, headSeq } = parseHead(reply.slice(1));
      this.#noticeHeads([{ k, epoch, headSeq }]);
    }
    switch (String(reply[0])) {
      case 'not_found':
        return { status: 'not_found' };
      case 'conflict':
        return { status: 'conflict', current: JSON.parse(String(reply[1])) as SessionRecord };
      case 'ended':
        throw new GatewayError('session_ended', 'the stream has ended');
      case 'applied':
        break;
      default:
        throw new Error(`redis engine: unexpected transition reply ${String(reply[0])}`);
    }
    const head = parseHead(reply.slice(1));
    const flat = asArray(reply[4], 'outcome');
    const outcome = { seq: toInt(flat[0], 'seq'), duplicate: toInt(flat[1], 'duplicate') === 1 };
    if (change.endStream) await this.endStream(sessionId);
    return { status: 'applied', session: change.next, outcome, head };
  }

  /**
   * Reads the index (ZRANGEBYLEX, one entry more than needed to know whether more
   * follow) and then each record. Entries whose record is missing are skipped, and
   * removed once older than LIST_PRUNE_GRACE_MS, so expired sessions do not pile up.
   */
  async listSessions(query: SessionQuery): Promise<SessionPage> {
    const index =
      query.ownerId === undefined
        ? tenantIndexKey(this.#prefix, query.tenantId)
        : ownerIndexKey(this.#prefix, query.tenantId, query.ownerId);
    const limit = Math.max(1, Math.floor(query.limit));
    let from = query.after === undefined ? '-' : `(${sessionOrderKey(query.after.createdAt, query.after.id)}`;
    const sessions: SessionRecord[] = [];
    const missing: string[] = [];
    let last: string | undefined;
    let more = false;
    for (let round = 0; round < LIST_MAX_ROUNDS && sessions.length < limit; round++) {
      const want = limit - sessions.length;
      const keys = await this.#call('listSessions', () =>
        this.#redis.zrangebylex(index, from, '+', 'LIMIT', 0, want + 1),
      );
      const batch = keys.slice(0, want);
      more = keys.length > want;
      const records = await Promise.all(batch.map((key) => this.getSession(idOfOrderKey(key))));
      batch.forEach((key, i) => {
        const record = records[i];
        if (record) sessions.push(record);
        else missing.push(key);
      });
      last = batch.at(-1) ?? last;
      if (!more || last === undefined) break;
      from = `(${last}`;
    }
    await this.#pruneIndex(index, missing);
    return more && last !== undefined ? { sessions, next: positionOfOrderKey(last) } : { sessions };
  }

  async #pruneIndex(index: string, missing: readonly string[]): Promise<void> {
    const now = this.#clock.now();
    const stale = missing.filter(
      (key) => now - Date.parse(positionOfOrderKey(key).createdAt) > LIST_PRUNE_GRACE_MS,
    );
    if (stale.length > 0) await this.#call('listSessions', () => this.#redis.zrem(index, ...stale));
  }

  // ── event streams ──────────────────────────────────────────────────────────────

  /**
   * Calls made in the same tick, for any number of sessions, go to Redis together (see
   * TickQueue): one loAppend call for all of them on one Redis, one per session on a
   * cluster, where a script may only touch keys of one slot. Each batch is applied
   * atomically and gets its own outcome; calls for one session are applied in the order
   * they were made. A failed call (a timeout, Redis unreachable) rejects every batch it
   * carried; like any append, that is safe to retry (dedupe by eventId).
   */
  append(sessionId: string, events: readonly Envelope[], seen?: SeenPosition): Promise<AppendResult> {
    return new Promise((resolve, reject) =>
      this.#appends.push({
        sessionId,
        weight: Math.max(1, events.length),
        k: this.#keys(sessionId),
        events,
        seen,
        resolve,
        reject,
      }),
    );
  }

  #sendAppends(chunk: readonly PendingAppend[]): Promise<void> {
    return this.#sendChunk(
      chunk,
      'append',
      'loAppend',
      [this.#limits.historyMaxEvents, newEpoch()],
      ({ k, events, seen }, keys, args) => {
        keys.push(k.stream, k.meta, k.ids);
        // the session's header (see appendLua); epochs are hex, so never '-'
        args.push(`${events.length} ${Math.max(0, int(seen?.headSeq ?? 0))} ${seen?.epoch || '-'}`);
        for (const event of events) args.push(event.eventId, envelopeText(event));
      },
      (reply, pending) => parseAppendReply(reply, pending.events.length),
      // nothing to confirm (and no closure, no key list) unless replicas are waited for
      this.#waitReplicas > 0
        ? async (replies) => {
            await this.#replicated(
              'append',
              chunk.map((call) => call.k.stream),
            );
            // Duplicates too: a retry's events may be ones whose first attempt the replicas
            // did not confirm, so no node has heard of them yet.
            const heads: Array<{ k: SessionKeys; epoch: string; headSeq: number }> = [];
            chunk.forEach((call, i) => {
              const head = appendReplyHead(replies[i]);
              if (head) heads.push({ k: call.k, ...head });
            });
            this.#noticeHeads(heads);
          }
        : undefined,
    );
  }

  async read(sessionId: string, after: number, limit: number): Promise<ReadResult> {
    const k = this.#keys(sessionId);
    const from = Number.isFinite(after) ? Math.max(0, Math.floor(after)) : 0;
    const count = Number.isFinite(limit) ? Math.min(MAX_READ_LIMIT, Math.max(0, Math.floor(limit))) : 0;
    const reply = asArray(
      await this.#run('read', 'loRead', [k.stream, k.meta, k.ids], [newEpoch(), from, count]),
      'read',
    );
    if (this.#waitReplicas > 0) await this.#readConfirmed('read', k);
    const events = asArray(reply[4], 'entries').map(parseEntry);
    return { events, firstSeq: toInt(reply[3], 'firstSeq'), ...parseHead(reply) };
  }

  async head(sessionId: string, seen?: SeenPosition): Promise<StreamHead> {
    const k = this.#keys(sessionId);
    const args = [newEpoch(), seen?.epoch ?? '', seen?.headSeq ?? 0];
    const reply = asArray(await this.#run('head', 'loHead', [k.stream, k.meta, k.ids], args), 'head');
    if (this.#waitReplicas > 0) await this.#readConfirmed('head', k);
    return parseHead(reply);
  }

  /**
   * HMGET of each stream's meta: one pipeline on one Redis; on a cluster one command per
   * session (a pipeline there must stay in one slot), sent in the same turn. Read only,
   * and not confirmed with WAIT: a caller acts on what it finds through `head` and `read`,
   * which are.
   */
  async peekHeads(sessionIds: readonly string[]): Promise<Array<StreamHead | undefined>> {
    if (sessionIds.length === 0) return [];
    const redis = this.#redis;
    const metas = sessionIds.map((id) => this.#keys(id).meta);
    const replies = await this.#call('peekHeads', async () => {
      if (isCluster(redis))
        return Promise.all(metas.map((meta) => redis.hmget(meta, 'epoch', 'head', 'endedAt')));
      const pipeline = redis.pipeline();
      for (const meta of metas) pipeline.hmget(meta, 'epoch', 'head', 'endedAt');
      const results = (await pipeline.exec()) ?? [];
      return results.map(([err, reply]) => {
        if (err) throw err;
        return reply as Array<string | null>;
      });
    });
    return replies.map((reply) =>
      reply[0] === null || reply[0] === undefined ? undefined : parseHead(reply),
    );
  }

  async endStream(sessionId: string): Promise<StreamHead> {
    const k = this.#keys(sessionId);
    const epoch = newEpoch();
    // The script may only touch keys it is given, so it gets the subscriber keys from the
    // subs index read just before; members it reports as missing (created in between)
    // are added for another pass. See END_STREAM_LUA.
    let members = await this.#call('endStream', () => this.#redis.smembers(k.subs));
    for (let pass = 1; ; pass++) {
      const reply = asArray(
        await this.#run(
          'endStream',
          'loEndStream',
          [k.stream, k.meta, k.ids, k.session, k.subs, ...members.map((m) => k.subPrefix + m)],
          [epoch, this.#limits.historyTtlAfterEndS, ...members],
        ),
        'endStream',
      );
      const missing = asArray(reply[3], 'missing').map(String);
      if (missing.length === 0 || pass >= END_STREAM_MAX_PASSES) return parseHead(reply);
      members = [...members, ...missing];
    }
  }

  // ── subscribers ───────────────────────────────────────────────────────────────

  /**
   * Creates made in the same tick, of any sessions, go to Redis together (see TickQueue):
   * one loCreateSubscribers call on one Redis, one per session on a cluster. A crowd of
   * fresh `hello`s costs one round trip per tick, however many sessions it spreads over.
   * A failed call rejects every create it carried.
   */
  createSubscriber(sessionId: string, sub: NewSubscriber): Promise<SubscriberRecord> {
    return new Promise((resolve, reject) =>
      this.#creates.push({ sessionId, weight: 1, k: this.#keys(sessionId), sub, resolve, reject }),
    );
  }

  async #sendCreates(chunk: readonly PendingCreate[]): Promise<void> {
    const keys: string[] = [];
    const args: (string | number)[] = [];
    for (const { k, sub } of chunk) {
      keys.push(k.subs, k.meta, subscriberKey(k, sub.id));
      args.push(
        subscriberMember(sub.id),
        sub.userId,
        sub.tenantId,
        int(sub.after),
        sub.node ?? '',
        sub.node === undefined ? 0 : int(sub.connectedAt ?? 0),
      );
    }
    let sizes: number[];
    try {
      const reply = asArray(await this.#run('createSubscriber', 'loCreateSubscribers', keys, args), 'subs');
      sizes = reply.map((size) => toInt(size, 'subs'));
      if (sizes.length !== chunk.length)
        throw new Error('redis engine: createSubscriber returned a wrong number of replies');
    } catch (err) {
      for (const pending of chunk) pending.reject(err);
      return;
    }
    if (this.#waitReplicas > 0) {
      try {
        await this.#replicated(
          'createSubscriber',
          chunk.map((pending) => pending.k.subs),
          'the subscriber',
        );
      } catch (err) {
        for (const pending of chunk) pending.reject(err);
        // The master has the records, but nobody will ever hold their tokens (each hello
        // refused, its retry a new subscriber): delete them, or a client retrying through
        // an hour-long replica outage would leave a record every few seconds, kept as
        // long as its session. Best effort: if this fails too, the record stays.
        for (const { sessionId, sub } of chunk) void this.endSubscriber(sessionId, sub.id).catch(() => {});
        return;
      }
    }
    // Housekeeping: a session whose index is due for a prune gets its answers once the
    // prune is done (as before batching); the others at once. A failed prune is retried
    // by the next create, since the mark did not move.
    const prunes = new Map<string, Promise<void>>();
    chunk.forEach(({ k }, i) => {
      if (sizes[i]! <= (this.#pruneAt.get(k.subs) ?? PRUNE_THRESHOLD) || this.#pruning.has(k.subs)) return;
      this.#pruning.add(k.subs);
      const prune = this.#pruneSubscribers(k)
        .catch(() => {})
        .finally(() => this.#pruning.delete(k.subs));
      prunes.set(k.subs, prune);
    });
    for (const pending of chunk) {
      const record = newSubscriberRecord(pending.sub);
      const prune = prunes.get(pending.k.subs);
      if (prune) void prune.then(() => pending.resolve(record));
      else pending.resolve(record);
    }
  }

  /**
   * Keeps the subs index proportional to live subscribers: drops members whose key
   * expired. A prune reads and checks every member, so it must not run on every create
   * (with N live subscribers that made N fresh hellos cost O(N²) in Redis): the next
   * prune of the session waits until the index has doubled from what this one left
   * (PRUNE_THRESHOLD at least), which keeps it amortised O(1) per create and the index
   * below twice the live subscribers (plus the threshold). The mark is this node's own
   * (another node prunes on its own marks); losing it only means one early prune.
   */
  async #pruneSubscribers(k: SessionKeys): Promise<void> {
    const members = await this.#call('createSubscriber', () => this.#redis.smembers(k.subs));
    const dropped = toInt(
      await this.#run(
        'createSubscriber',
        'loPruneSubscribers',
        [k.subs, ...members.map((m) => k.subPrefix + m)],
        members,
      ),
      'dropped',
    );
    this.#pruneAt.delete(k.subs);
    this.#pruneAt.set(k.subs, Math.max(PRUNE_THRESHOLD, 2 * (members.length - dropped)));
    if (this.#pruneAt.size > MAX_PRUNE_MARKS) this.#pruneAt.delete(this.#pruneAt.keys().next().value!);
  }

  async getSubscriber(sessionId: string, subscriberId: string): Promise<SubscriberRecord | undefined> {
    const key = subscriberKey(this.#keys(sessionId), subscriberId);
    const fields = subscriberFields(await this.#call('getSubscriber', () => this.#redis.hgetall(key)));
    // Same logical expiry as live_sub in the scripts; Redis's TTL removes the key later.
    const exp = fields.get('exp');
    if (exp !== undefined && toInt(exp, 'exp') <= this.#clock.now()) return undefined;
    return parseSubscriber(subscriberId, fields);
  }

  /**
   * Takeovers made in the same tick, of any sessions, go to Redis together (see
   * TickQueue), applied one after the other in the order they were made, exactly as
   * separate calls would be; each gets its own answer, and a failed call rejects every
   * takeover it carried (their outcome is unknown, like a timed-out single one).
   */
  takeoverSubscriber(
    sessionId: string,
    subscriberId: string,
    now: number,
    windowMs: number,
    node?: string,
    acked?: number,
  ): Promise<SubscriberRecord | undefined> {
    return new Promise((resolve, reject) =>
      this.#takeovers.push({
        sessionId,
        weight: 1,
        k: this.#keys(sessionId),
        subscriberId,
        now: int(now),
        windowMs: int(windowMs),
        node: node ?? '',
        acked: acked === undefined ? -1 : int(acked),
        resolve,
        reject,
      }),
    );
  }

  #sendTakeovers(chunk: readonly PendingTakeover[]): Promise<void> {
    return this.#sendChunk(
      chunk,
      'takeoverSubscriber',
      'loTakeoverSubscriber',
      [int(this.#clock.now())],
      (t, keys, args) => {
        keys.push(subscriberKey(t.k, t.subscriberId), t.k.meta);
        args.push(t.now, t.windowMs, t.k.channel, t.subscriberId, t.node, t.acked);
      },
      (reply, t) => parseSubscriber(t.subscriberId, subscriberFields(reply)),
      this.#confirmer('takeoverSubscriber', 'the takeover', chunk, (t) => t.k.meta),
    );
  }

  /**
   * One script call for a round's queued calls of one kind (see TickQueue): `add` puts each
   * call's keys and arguments after `head`, in order, and each call gets its own reply,
   * parsed. A failed call rejects every call it carried (their outcome is unknown, like a
   * timed-out single one); a reply that does not parse rejects only its own call.
   * `confirm`, when given, runs after the reply and before any call resolves; if it
   * rejects, so does every call (appends wait for replicas there).
   */
  async #sendChunk<R, T extends { resolve(value: R): void; reject(err: unknown): void }>(
    chunk: readonly T[],
    operation: string,
    script: ScriptName,
    head: (string | number)[],
    add: (call: T, keys: string[], args: (string | number)[]) => void,
    parse: (reply: unknown, call: T) => R,
    confirm?: (replies: unknown[]) => Promise<void>,
  ): Promise<void> {
    let replies: unknown[];
    try {
      const keys: string[] = [];
      const args = head;
      for (const call of chunk) add(call, keys, args);
      replies = asArray(await this.#run(operation, script, keys, args), operation);
      if (replies.length !== chunk.length)
        throw new Error(`redis engine: ${operation} returned a wrong number of replies`);
      await confirm?.(replies);
    } catch (err) {
      for (const call of chunk) call.reject(err);
      return;
    }
    chunk.forEach((call, i) => {
      try {
        call.resolve(parse(replies[i], call));
      } catch (err) {
        call.reject(err);
      }
    });
  }

  /**
   * Checkpoints saved in the same tick, of any sessions, go to Redis together (see
   * TickQueue): one loSaveCheckpoint call on one Redis, one per session on a cluster.
   * Each is applied on its own (fenced by generation, only upwards) and gets its own
   * answer; a failed call rejects every checkpoint it carried.
   */
  async saveCheckpoint(
    sessionId: string,
    subscriberId: string,
    generation: number,
    seq: number,
  ): Promise<number> {
    const [stored] = await this.saveCheckpoints(sessionId, [{ subscriberId, generation, seq }]);
    return stored!;
  }

  /**
   * As saveCheckpoint for each write, through the same per-tick queue (so with the
   * checkpoints of every other session of the tick), but with one promise for the group:
   * its items settle into it without a closure or a promise each.
   */
  saveCheckpoints(sessionId: string, writes: readonly CheckpointWrite[]): Promise<number[]> {
    if (writes.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      const group = new CheckpointGroup(writes.length, resolve, reject);
      const keys = this.#keys(sessionId);
      for (let i = 0; i < writes.length; i++) {
        const w = writes[i]!;
        this.#checkpoints.push(
          new GroupedCheckpoint(
            group,
            i,
            sessionId,
            subscriberKey(keys, w.subscriberId),
            int(w.generation),
            int(w.seq),
          ),
        );
      }
    });
  }

  #sendCheckpoints(chunk: readonly PendingCheckpoint[]): Promise<void> {
    return this.#sendChunk(
      chunk,
      'saveCheckpoint',
      'loSaveCheckpoint',
      [int(this.#clock.now())],
      (pending, keys, args) => {
        keys.push(pending.key);
        args.push(pending.generation, pending.seq);
      },
      (reply) => toInt(reply, 'checkpoint'),
      this.#confirmer('saveCheckpoint', 'the checkpoint', chunk, (pending) => pending.key),
    );
  }

  /**
   * Releases made in the same tick, of any sessions, go to Redis together (see
   * TickQueue): a crowd of closes (a deploy, a network blip) costs one round trip per
   * tick. Each is applied on its own, fenced by generation.
   */
  async releaseSubscriber(
    sessionId: string,
    subscriberId: string,
    generation: number,
    now: number,
    windowMs: number,
  ): Promise<void> {
    await new Promise<boolean>((resolve, reject) =>
      this.#releases.push({
        sessionId,
        weight: 1,
        key: subscriberKey(this.#keys(sessionId), subscriberId),
        generation: int(generation),
        now: int(now),
        windowMs: Math.max(0, int(windowMs)),
        resolve,
        reject,
      }),
    );
  }

  #sendReleases(chunk: readonly PendingRelease[]): Promise<void> {
    return this.#sendChunk(
      chunk,
      'releaseSubscriber',
      'loReleaseSubscribers',
      [int(this.#clock.now())],
      (r, keys, args) => {
        keys.push(r.key);
        args.push(r.generation, r.now, r.windowMs, r.windowMs + RELEASE_TTL_GRACE_MS);
      },
      (reply) => toInt(reply, 'released') === 1,
    );
  }

  async endSubscriber(sessionId: string, subscriberId: string): Promise<void> {
    const k = this.#keys(sessionId);
    await this.#run(
      'endSubscriber',
      'loEndSubscriber',
      [subscriberKey(k, subscriberId), k.subs],
      [subscriberMember(subscriberId)],
    );
  }

  /**
   * The subs index, then each member's hash (all in the session's slot). Members whose
   * key expired, or whose release window passed (`exp`), are left out; the index itself
   * is pruned by createSubscriber, not here.
   */
  async listSubscribers(sessionId: string, limit: number): Promise<SubscriberList> {
    const k = this.#keys(sessionId);
    const members = (await this.#call('listSubscribers', () => this.#redis.smembers(k.subs))).sort();
    const now = this.#clock.now();
    const subscribers: SubscriberRecord[] = [];
    // Read a batch at a time until `limit` live ones are found: the index may hold dead members.
    for (let at = 0; at < members.length && subscribers.length <= limit; at += LIST_SUBSCRIBERS_BATCH) {
      const batch = members.slice(at, at + LIST_SUBSCRIBERS_BATCH);
      const hashes = await this.#call('listSubscribers', () =>
        Promise.all(batch.map((m) => this.#redis.hgetall(k.subPrefix + m))),
      );
      hashes.forEach((raw, i) => {
        const fields = subscriberFields(raw);
        const exp = fields.get('exp');
        if (exp !== undefined && toInt(exp, 'exp') <= now) return;
        const record = parseSubscriber(decodeURIComponent(batch[i]!), fields);
        if (record) subscribers.push(record);
      });
    }
    const truncated = subscribers.length > limit;
    return { subscribers: subscribers.slice(0, limit), truncated };
  }

  // ── lifecycle ─────────────────────────────────────────────────────────────────

  watch(sessionId: string, listener: SessionListener): Watch {
    return this.#notifications.watch(this.#keys(sessionId).channel, listener);
  }

  /**
   * Readiness (`/readyz`). One Redis: PING. A cluster: every master, see pingEveryMaster;
   * a cluster with one master down cannot serve that master's sessions, so it is not ready.
   */
  async ping(): Promise<void> {
    const redis = this.#redis;
    await this.#call('ping', async () => {
      if (isCluster(redis)) await pingEveryMaster(redis, this.#commandTimeoutMs);
      else await redis.ping();
    });
  }

  /** QUIT lets Redis answer what is in flight; if Redis is unreachable, drop the socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Calls queued for this tick go out before QUIT, which Redis answers after them.
    this.#appends.flush();
    this.#checkpoints.flush();
    this.#takeovers.flush();
    this.#creates.flush();
    this.#releases.flush();
    this.#sessionReads.flush();
    this.#notifications.close();
    try {
      await this.#redis.quit();
    } catch {
      this.#redis.disconnect();
    }
  }

  // ── internals ─────────────────────────────────────────────────────────────────

  /** A TickQueue of this engine: chunks of at most maxItems calls and maxWeight weight, one session per chunk on a cluster. */
  #tickQueue<T extends QueuedCall>(
    send: (chunk: T[]) => Promise<void>,
    maxItems: number,
    maxWeight = maxItems,
    maxRoundItems = Infinity,
  ): TickQueue<T> {
    return new TickQueue<T>({
      send,
      maxItems,
      maxWeight,
      maxRoundItems,
      perSession: () => isCluster(this.#redis),
    });
  }

  /**
   * The session's key names, built once and kept while the session is busy: every append
   * and checkpoint needs them, and building them is seven strings and an encode. Bounded:
   * past KEY_CACHE_MAX sessions the cache starts over.
   */
  #keys(sessionId: string): SessionKeys {
    let keys = this.#keyCache.get(sessionId);
    if (keys === undefined) {
      if (this.#keyCache.size >= KEY_CACHE_MAX) this.#keyCache.clear();
      keys = sessionKeys(this.#prefix, sessionId);
      this.#keyCache.set(sessionId, keys);
    }
    return keys;
  }

  async #call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw mapRedisError(err, operation);
    }
  }

  #run(
    operation: string,
    name: ScriptName,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    return this.#call(operation, () => this.#script(name, keys, args));
  }

  #logConnectionError(err: Error, message = 'redis engine: connection error'): void {
    const t = performance.now();
    if (t - this.#lastErrorLog < ERROR_LOG_INTERVAL_MS) return;
    this.#lastErrorLog = t;
    this.#logger?.warn({ err: err.message, status: this.#redis.status }, message);
  }
}

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
async function pingEveryMaster(cluster: Cluster, timeoutMs: number): Promise<void> {
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
function clusterConnectDeadlineMs(commandTimeoutMs: number): number {
  return Math.max(2000, commandTimeoutMs * 3);
}

function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** A fresh candidate epoch for a script to adopt if it finds the session's meta missing. */
function newEpoch(): string {
  return randomHex(8);
}

/**
 * The `<epoch> <head>` an append reply opens with (see parseAppendReply), for the notice
 * the engine sends after WAIT; undefined when the reply does not carry them.
 */
function appendReplyHead(raw: unknown): { epoch: string; headSeq: number } | undefined {
  if (typeof raw !== 'string') return undefined;
  const [epoch, head] = raw.split(' ', 2);
  const headSeq = Number(head);
  return epoch && Number.isSafeInteger(headSeq) ? { epoch, headSeq } : undefined;
}

/** One session's part of a loAppend reply (see appendLua): `<epoch> <head> <endedAt|-> <refused|-> <seq> <dup> …`. */
function parseAppendReply(raw: unknown, count: number): AppendResult {
  if (typeof raw !== 'string') throw new Error('redis engine: an append reply is not a string');
  const parts = raw.split(' ');
  if (parts[3] === 'ended') throw new GatewayError('session_ended', 'the stream has ended');
  if (parts.length !== 4 + 2 * count)
    throw new Error('redis engine: append returned a wrong number of outcomes');
  const outcomes: AppendOutcome[] = [];
  for (let i = 4; i < parts.length; i += 2) {
    outcomes.push({ seq: toInt(parts[i], 'seq'), duplicate: parts[i + 1] === '1' });
  }
  const headSeq = toInt(parts[1], 'head');
  const epoch = parts[0]!;
  return parts[2] === '-'
    ? { outcomes, headSeq, epoch }
    : { outcomes, headSeq, epoch, endedAt: toInt(parts[2], 'endedAt') };
}

/** Script arguments must be integers (PEXPIRE and friends reject fractions). */
function int(n: number): number {
  return Number.isFinite(n) ? Math.trunc(n) : 0;
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
