import type { CheckpointWrite, NewSubscriber, SubscriberList, SubscriberRecord } from '../engine.ts';
import { newSubscriberRecord } from '../subscriber-record.ts';
import { int, type EngineCore } from './engine-core.ts';
import { isDataFault } from './errors.ts';
import { subscriberKey, subscriberMember, type SessionKeys } from './keys.ts';
import { asArray, parseSubscriber, subscriberFields, toInt } from './records.ts';
import { PRUNE_THRESHOLD } from './scripts/subscriber-scripts.ts';
import type { QueuedCall, TickQueue } from './tick-queue.ts';

/** Redis's TTL on a released subscriber outlasts its logical window a little; the window itself is exact. */
const RELEASE_TTL_GRACE_MS = 5_000;
/** Prune marks remembered (sessions with more than PRUNE_THRESHOLD subscribers); the oldest go first. */
const MAX_PRUNE_MARKS = 10_000;
/** Most subscribers one loCreateSubscribers call creates (a longer script blocks Redis longer). */
const MAX_CREATE_BATCH = 256;
/** Most releases one loReleaseSubscribers call carries. */
const MAX_RELEASE_BATCH = 512;
/** Most checkpoints one loSaveCheckpoint call carries, and most in flight at once (see TickQueue). */
const MAX_CHECKPOINT_BATCH = 512;
/**
 * A checkpoint call out this long is taken for stalled (its master stopped answering) and
 * no longer holds back the others' (see TickQueue). Rounds of a 3,000-session burst on a
 * cluster take 12-57 ms.
 */
const CHECKPOINT_STALL_MS = 250;
/** Most takeovers one loTakeoverSubscriber call carries. */
const MAX_TAKEOVER_BATCH = 256;
/** Subscriber hashes read at once by listSubscribers. */
const LIST_SUBSCRIBERS_BATCH = 100;

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
 * The subscribers of the Redis engine: a hash per subscriber (generation, checkpoint,
 * release window) and each session's subs index, changed only by the scripts of
 * scripts/subscriber-scripts.ts. Creates, takeovers, checkpoints and releases made in one
 * tick go to Redis together (see TickQueue).
 */
export class RedisSubscribers {
  readonly #core: EngineCore;
  readonly #creates: TickQueue<PendingCreate>;
  readonly #releases: TickQueue<PendingRelease>;
  /**
   * Paced: one call of MAX_CHECKPOINT_BATCH per round, so an append made during a burst of
   * acks waits behind at most one checkpoint call on the connection (see TickQueue).
   */
  readonly #checkpoints: TickQueue<PendingCheckpoint>;
  readonly #takeovers: TickQueue<PendingTakeover>;
  /** Per subs index: the size above which create prunes it next (see #prune). */
  readonly #pruneAt = new Map<string, number>();
  /** Subs indexes being pruned now: creates meanwhile leave them to that prune. */
  readonly #pruning = new Set<string>();

  constructor(core: EngineCore) {
    this.#core = core;
    this.#creates = core.tickQueue<PendingCreate>((chunk) => this.#sendCreates(chunk), MAX_CREATE_BATCH);
    this.#releases = core.tickQueue<PendingRelease>((chunk) => this.#sendReleases(chunk), MAX_RELEASE_BATCH);
    this.#checkpoints = core.tickQueue<PendingCheckpoint>(
      (chunk) => this.#sendCheckpoints(chunk),
      MAX_CHECKPOINT_BATCH,
      MAX_CHECKPOINT_BATCH,
      { items: MAX_CHECKPOINT_BATCH, stallMs: CHECKPOINT_STALL_MS },
    );
    this.#takeovers = core.tickQueue<PendingTakeover>(
      (chunk) => this.#sendTakeovers(chunk),
      MAX_TAKEOVER_BATCH,
    );
  }

  /**
   * Creates made in the same tick, of any sessions, go to Redis together (see TickQueue):
   * one loCreateSubscribers call on one Redis, one per session on a cluster. A crowd of
   * fresh `hello`s costs one round trip per tick, however many sessions it spreads over.
   * A failed call rejects every create it carried.
   */
  create(sessionId: string, sub: NewSubscriber): Promise<SubscriberRecord> {
    return new Promise((resolve, reject) =>
      this.#creates.push({ sessionId, weight: 1, k: this.#core.keys(sessionId), sub, resolve, reject }),
    );
  }

  async #sendCreates(chunk: readonly PendingCreate[]): Promise<void> {
    const core = this.#core;
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
      const reply = asArray(await core.run('createSubscriber', 'loCreateSubscribers', keys, args), 'subs');
      sizes = reply.map((size) => toInt(size, 'subs'));
      if (sizes.length !== chunk.length)
        throw new Error('redis engine: createSubscriber returned a wrong number of replies');
    } catch (err) {
      // one session's keys of the wrong type: the others are created on their own, as in
      // EngineCore#sendChunk (a create run again writes the same record)
      if (chunk.length > 1 && isDataFault(err)) {
        await Promise.all(chunk.map((pending) => this.#sendCreates([pending])));
        return;
      }
      if (isDataFault(err)) core.dataFault(chunk[0]!.sessionId, err);
      for (const pending of chunk) pending.reject(err);
      return;
    }
    if (core.waitReplicas > 0) {
      try {
        await core.replicated(
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
        for (const { sessionId, sub } of chunk) void this.end(sessionId, sub.id).catch(() => {});
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
      const prune = this.#prune(k)
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
  async #prune(k: SessionKeys): Promise<void> {
    const core = this.#core;
    const members = await core.call('createSubscriber', () => core.redis.smembers(k.subs));
    const dropped = toInt(
      await core.run(
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

  async get(sessionId: string, subscriberId: string): Promise<SubscriberRecord | undefined> {
    const core = this.#core;
    const key = subscriberKey(core.keys(sessionId), subscriberId);
    const fields = subscriberFields(await core.call('getSubscriber', () => core.redis.hgetall(key)));
    // Same logical expiry as live_sub in the scripts; Redis's TTL removes the key later.
    const exp = fields.get('exp');
    if (exp !== undefined && toInt(exp, 'exp') <= core.clock.now()) return undefined;
    return parseSubscriber(subscriberId, fields);
  }

  /**
   * Takeovers made in the same tick, of any sessions, go to Redis together (see
   * TickQueue), applied one after the other in the order they were made, exactly as
   * separate calls would be; each gets its own answer, and a failed call rejects every
   * takeover it carried (their outcome is unknown, like a timed-out single one).
   */
  takeover(
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
        k: this.#core.keys(sessionId),
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
    const core = this.#core;
    return core.sendChunk(
      chunk,
      'takeoverSubscriber',
      'loTakeoverSubscriber',
      [int(core.clock.now())],
      (t, keys, args) => {
        keys.push(subscriberKey(t.k, t.subscriberId), t.k.meta);
        args.push(t.now, t.windowMs, t.k.channel, t.subscriberId, t.node, t.acked);
      },
      (reply, t) => parseSubscriber(t.subscriberId, subscriberFields(reply)),
      core.confirmer('takeoverSubscriber', 'the takeover', chunk, (t) => t.k.meta),
    );
  }

  /**
   * Checkpoints saved in the same tick, of any sessions, go to Redis together (see
   * TickQueue): one loSaveCheckpoint call on one Redis, one per session on a cluster.
   * Each is applied on its own (fenced by generation, only upwards) and gets its own
   * answer; a failed call rejects every checkpoint it carried. A group (one session's
   * writes) has one promise: its items settle into it without a closure or a promise each.
   */
  saveCheckpoints(sessionId: string, writes: readonly CheckpointWrite[]): Promise<number[]> {
    if (writes.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      const group = new CheckpointGroup(writes.length, resolve, reject);
      const keys = this.#core.keys(sessionId);
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
    const core = this.#core;
    return core.sendChunk(
      chunk,
      'saveCheckpoint',
      'loSaveCheckpoint',
      [int(core.clock.now())],
      (pending, keys, args) => {
        keys.push(pending.key);
        args.push(pending.generation, pending.seq);
      },
      (reply) => toInt(reply, 'checkpoint'),
      core.confirmer('saveCheckpoint', 'the checkpoint', chunk, (pending) => pending.key),
    );
  }

  /**
   * Releases made in the same tick, of any sessions, go to Redis together (see
   * TickQueue): a crowd of closes (a deploy, a network blip) costs one round trip per
   * tick. Each is applied on its own, fenced by generation.
   */
  async release(
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
        key: subscriberKey(this.#core.keys(sessionId), subscriberId),
        generation: int(generation),
        now: int(now),
        windowMs: Math.max(0, int(windowMs)),
        resolve,
        reject,
      }),
    );
  }

  #sendReleases(chunk: readonly PendingRelease[]): Promise<void> {
    return this.#core.sendChunk(
      chunk,
      'releaseSubscriber',
      'loReleaseSubscribers',
      [int(this.#core.clock.now())],
      (r, keys, args) => {
        keys.push(r.key);
        args.push(r.generation, r.now, r.windowMs, r.windowMs + RELEASE_TTL_GRACE_MS);
      },
      (reply) => toInt(reply, 'released') === 1,
    );
  }

  async end(sessionId: string, subscriberId: string): Promise<void> {
    const k = this.#core.keys(sessionId);
    await this.#core.run(
      'endSubscriber',
      'loEndSubscriber',
      [subscriberKey(k, subscriberId), k.subs],
      [subscriberMember(subscriberId)],
    );
  }

  /**
   * The subs index, then each member's hash (all in the session's slot). Members whose
   * key expired, or whose release window passed (`exp`), are left out; the index itself
   * is pruned by create, not here.
   */
  async list(sessionId: string, limit: number): Promise<SubscriberList> {
    const core = this.#core;
    const k = core.keys(sessionId);
    const members = (await core.call('listSubscribers', () => core.redis.smembers(k.subs))).sort();
    const now = core.clock.now();
    const subscribers: SubscriberRecord[] = [];
    // Read a batch at a time until `limit` live ones are found: the index may hold dead members.
    for (let at = 0; at < members.length && subscribers.length <= limit; at += LIST_SUBSCRIBERS_BATCH) {
      const batch = members.slice(at, at + LIST_SUBSCRIBERS_BATCH);
      const hashes = await core.call('listSubscribers', () =>
        Promise.all(batch.map((m) => core.redis.hgetall(k.subPrefix + m))),
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

  /** Sends what is queued for this tick now (engine close: before QUIT). */
  flush(): void {
    this.#checkpoints.flush();
    this.#takeovers.flush();
    this.#creates.flush();
    this.#releases.flush();
  }
}
