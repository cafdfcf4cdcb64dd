import { randomBytes } from 'node:crypto';
import type { Clock } from '../../util/clock.ts';
import type { Envelope } from '../../protocol/envelope.ts';
import type {
  CheckpointWrite,
  AppendOutcome,
  AppendResult,
  Engine,
  EngineLimits,
  NewSession,
  NewSubscriber,
  ReadResult,
  SessionChange,
  SessionChangeResult,
  SessionListener,
  SessionNotice,
  SessionPage,
  SessionQuery,
  SessionRecord,
  Watch,
  StoredEvent,
  StreamHead,
  SubscriberList,
  SubscriberRecord,
} from '../engine.ts';
import { GatewayError } from '../../errors/gateway-error.ts';
import { idOfOrderKey, positionOfOrderKey, sessionOrderKey } from '../session-order.ts';
import { newSubscriberRecord } from '../subscriber-record.ts';

/**
 * The embedded engine: everything in this process's memory.
 *
 * Limits, by design:
 * - one gateway node only: nothing is shared with other processes;
 * - nothing survives a restart: every restart is a new epoch, so resuming clients get
 *   `history_gone` and start fresh;
 * - retention is by count (`historyMaxEvents` per stream) and by time after a stream
 *   ended (`historyTtlAfterEndS`, the session record with it), swept lazily on access
 *   and by a timer;
 * - atomicity is a synchronous critical section: every method does its checks and
 *   writes in one synchronous run after its single `await`, so nothing interleaves.
 * Use the redis engine for anything that must survive a restart or span nodes.
 */
export class MemoryEngine implements Engine {
  readonly kind = 'memory';
  readonly #clock: Clock;
  readonly #limits: EngineLimits;
  /** One epoch per process: a restart loses everything, so it must look like a new stream. */
  readonly #epoch = randomBytes(8).toString('hex');
  readonly #sessions = new Map<string, SessionEntry>();
  readonly #idempotency = new Map<string, { id: string; snapshot: SessionRecord }>();
  /** Listing indexes: sorted order keys (session-order.ts) per tenant and per tenant + owner. */
  readonly #byTenant = new Map<string, string[]>();
  readonly #byOwner = new Map<string, string[]>();
  readonly #streams = new Map<string, Stream>();
  readonly #subscribers = new Map<string, SubscriberEntry>();
  readonly #sweep: NodeJS.Timeout;
  readonly #watchers = new Map<string, Set<SessionListener>>();

  constructor(clock: Clock, limits: EngineLimits) {
    this.#clock = clock;
    this.#limits = limits;
    this.#sweep = setInterval(() => this.sweep(), 30_000);
    this.#sweep.unref();
  }

  async createSession(
    input: NewSession,
    idempotencyKey?: string,
    event?: Envelope,
  ): Promise<{ session: SessionRecord; created: boolean }> {
    await tick();
    const idemKey =
      idempotencyKey === undefined ? undefined : `${input.tenantId}\0${input.ownerId}\0${idempotencyKey}`;
    if (idemKey !== undefined) {
      const claim = this.#idempotency.get(idemKey);
      // Like the redis engine: a session that has expired since is not created again.
      if (claim)
        return {
          session: structuredClone(this.#liveSession(claim.id)?.record ?? claim.snapshot),
          created: false,
        };
    }
    const session: SessionRecord = { ...input, state: 'created', version: 1 };
    const key = sessionOrderKey(input.createdAt, input.id);
    insertSorted(indexOf(this.#byTenant, input.tenantId), key);
    insertSorted(indexOf(this.#byOwner, ownerIndex(input.tenantId, input.ownerId)), key);
    this.#sessions.set(input.id, { record: structuredClone(session), expiresAt: Infinity });
    if (idemKey !== undefined)
      this.#idempotency.set(idemKey, { id: input.id, snapshot: structuredClone(session) });
    const stream = event && this.#stream(input.id);
    // (a stream left ended under a reused id is left alone, as on redis)
    if (event && stream && stream.endedAt === undefined) this.#appendNow(input.id, stream, [event]);
    return { session, created: true };
  }

  async getSession(sessionId: string): Promise<SessionRecord | undefined> {
    await tick();
    const entry = this.#liveSession(sessionId);
    return entry && structuredClone(entry.record);
  }

  async transitionSession(sessionId: string, change: SessionChange): Promise<SessionChangeResult> {
    await tick();
    const entry = this.#liveSession(sessionId);
    if (!entry) return { status: 'not_found' };
    if (entry.record.version !== change.expectedVersion) {
      return { status: 'conflict', current: structuredClone(entry.record) };
    }
    const stream = this.#stream(sessionId);
    this.#refuseAfterEnd(stream, [change.event]);
    const outcome = this.#appendNow(sessionId, stream, [change.event])[0]!;
    entry.record = structuredClone(change.next);
    if (change.endStream) this.#end(sessionId, stream);
    return {
      status: 'applied',
      session: structuredClone(change.next),
      outcome,
      head: headOf(stream, this.#epoch),
    };
  }

  async listSessions(query: SessionQuery): Promise<SessionPage> {
    await tick();
    const keys =
      (query.ownerId === undefined
        ? this.#byTenant.get(query.tenantId)
        : this.#byOwner.get(ownerIndex(query.tenantId, query.ownerId))) ?? [];
    const limit = Math.max(1, Math.floor(query.limit));
    let i =
      query.after === undefined
        ? 0
        : upperBound(keys, sessionOrderKey(query.after.createdAt, query.after.id));
    const sessions: SessionRecord[] = [];
    const expired: string[] = [];
    const now = this.#clock.now();
    let last: string | undefined;
    for (; i < keys.length && sessions.length < limit; i++) {
      last = keys[i]!;
      const id = idOfOrderKey(last);
      const entry = this.#sessions.get(id);
      if (entry && entry.expiresAt > now) sessions.push(structuredClone(entry.record));
      else if (entry) expired.push(id);
    }
    const more = i < keys.length;
    // dropped only now: dropping removes index entries, from the array being walked
    for (const id of expired) this.#liveSession(id);
    return more && last !== undefined ? { sessions, next: positionOfOrderKey(last) } : { sessions };
  }

  async append(sessionId: string, events: readonly Envelope[]): Promise<AppendResult> {
    await tick();
    const stream = this.#stream(sessionId);
    this.#refuseAfterEnd(stream, events);
    const outcomes = this.#appendNow(sessionId, stream, events);
    return { outcomes, ...headOf(stream, this.#epoch) };
  }

  /** Nothing new follows the end of a stream: see Engine.append. */
  #refuseAfterEnd(stream: Stream, events: readonly Envelope[]): void {
    if (stream.endedAt !== undefined && events.some((e) => !stream.ids.has(e.eventId))) {
      throw new GatewayError('session_ended', 'the stream has ended');
    }
  }

  /** Dedupes, assigns seqs, trims and notifies: the body of an append, synchronous. */
  #appendNow(sessionId: string, stream: Stream, events: readonly Envelope[]): AppendOutcome[] {
    // Copied before any seq is taken: an event that cannot be copied fails the whole
    // batch and leaves no gap (all or nothing, as a Redis append is).
    const copies = events.map((event) =>
      stream.ids.has(event.eventId) ? undefined : structuredClone(event),
    );
    const outcomes = events.map((event, i) => {
      const known = stream.ids.get(event.eventId);
      if (known !== undefined) return { seq: known, duplicate: true };
      const seq = ++stream.head;
      stream.events.push({ seq, event: copies[i] ?? structuredClone(event) });
      stream.ids.set(event.eventId, seq);
      return { seq, duplicate: false };
    });
    this.#trim(stream);
    if (outcomes.some((o) => !o.duplicate)) {
      this.#notify(sessionId, { kind: 'head', headSeq: stream.head, epoch: this.#epoch });
    }
    return outcomes;
  }

  async read(sessionId: string, after: number, limit: number): Promise<ReadResult> {
    await tick();
    const stream = this.#stream(sessionId);
    const firstSeq = stream.events[0]?.seq ?? stream.head + 1;
    const start = Math.max(0, after + 1 - firstSeq);
    const events = stream.events.slice(start, start + Math.max(0, limit)).map(cloneStored);
    return { events, firstSeq, ...headOf(stream, this.#epoch) };
  }

  async head(sessionId: string): Promise<StreamHead> {
    await tick();
    return headOf(this.#stream(sessionId), this.#epoch);
  }

  async peekHeads(sessionIds: readonly string[]): Promise<Array<StreamHead | undefined>> {
    await tick();
    return sessionIds.map((id) => {
      const stream = this.#streams.get(id);
      return stream && headOf(stream, this.#epoch);
    });
  }

  async endStream(sessionId: string): Promise<StreamHead> {
    await tick();
    const stream = this.#stream(sessionId);
    this.#end(sessionId, stream);
    return headOf(stream, this.#epoch);
  }

  /** Ends the stream at its head, once; its data and the session record expire together. */
  #end(sessionId: string, stream: Stream): void {
    if (stream.endedAt !== undefined) return;
    stream.endedAt = stream.head;
    stream.expiresAt = this.#clock.now() + this.#limits.historyTtlAfterEndS * 1000;
    const entry = this.#sessions.get(sessionId);
    if (entry) entry.expiresAt = stream.expiresAt;
  }

  async createSubscriber(sessionId: string, sub: NewSubscriber): Promise<SubscriberRecord> {
    await tick();
    const record = newSubscriberRecord(sub);
    this.#subscribers.set(subKey(sessionId, sub.id), { record, expiresAt: Infinity });
    return { ...record };
  }

  async getSubscriber(sessionId: string, subscriberId: string): Promise<SubscriberRecord | undefined> {
    await tick();
    const entry = this.#liveSubscriber(sessionId, subscriberId);
    return entry && { ...entry.record };
  }

  async takeoverSubscriber(
    sessionId: string,
    subscriberId: string,
    now: number,
    windowMs: number,
    node?: string,
    acked?: number,
  ): Promise<SubscriberRecord | undefined> {
    await tick();
    const entry = this.#liveSubscriber(sessionId, subscriberId);
    if (!entry) return undefined;
    const r = entry.record;
    if (r.ended || (!r.connected && now - r.disconnectedAt > windowMs)) return undefined;
    r.generation += 1;
    r.connected = true;
    r.disconnectedAt = 0;
    if (acked !== undefined && acked > r.checkpoint) r.checkpoint = acked;
    if (node !== undefined) {
      r.node = node;
      r.connectedAt = now;
    }
    entry.expiresAt = Infinity;
    this.#notify(sessionId, { kind: 'takeover', subscriberId, generation: r.generation });
    return { ...r };
  }

  async saveCheckpoint(
    sessionId: string,
    subscriberId: string,
    generation: number,
    seq: number,
  ): Promise<number> {
    await tick();
    const entry = this.#liveSubscriber(sessionId, subscriberId);
    if (!entry) return 0;
    const r = entry.record;
    if (r.generation === generation && seq > r.checkpoint) r.checkpoint = seq;
    return r.checkpoint;
  }

  /** Through saveCheckpoint, so a subclass that wraps it sees each write; applied in order. */
  saveCheckpoints(sessionId: string, writes: readonly CheckpointWrite[]): Promise<number[]> {
    return Promise.all(
      writes.map((w) => this.saveCheckpoint(sessionId, w.subscriberId, w.generation, w.seq)),
    );
  }

  async releaseSubscriber(
    sessionId: string,
    subscriberId: string,
    generation: number,
    now: number,
    windowMs: number,
  ): Promise<void> {
    await tick();
    const entry = this.#liveSubscriber(sessionId, subscriberId);
    if (!entry || entry.record.generation !== generation) return;
    entry.record.connected = false;
    entry.record.disconnectedAt = now;
    entry.expiresAt = now + windowMs;
  }

  async endSubscriber(sessionId: string, subscriberId: string): Promise<void> {
    await tick();
    this.#subscribers.delete(subKey(sessionId, subscriberId));
  }

  /** A scan of every subscriber of the process: fine for an operator's occasional look. */
  async listSubscribers(sessionId: string, limit: number): Promise<SubscriberList> {
    await tick();
    const prefix = subKey(sessionId, '');
    const now = this.#clock.now();
    const subscribers: SubscriberRecord[] = [];
    let truncated = false;
    for (const [key, entry] of this.#subscribers) {
      if (!key.startsWith(prefix) || entry.expiresAt <= now) continue;
      if (subscribers.length >= limit) {
        truncated = true;
        break;
      }
      subscribers.push({ ...entry.record });
    }
    return { subscribers, truncated };
  }

  watch(sessionId: string, listener: SessionListener): Watch {
    let set = this.#watchers.get(sessionId);
    if (!set) this.#watchers.set(sessionId, (set = new Set()));
    set.add(listener);
    return {
      ready: Promise.resolve(),
      stop: () => {
        set.delete(listener);
        if (set.size === 0 && this.#watchers.get(sessionId) === set) this.#watchers.delete(sessionId);
      },
    };
  }

  /** Delivered on a later tick, like a message from Redis would be. */
  #notify(sessionId: string, notice: SessionNotice): void {
    const set = this.#watchers.get(sessionId);
    if (!set) return;
    const listeners = [...set];
    setImmediate(() => {
      for (const listener of listeners) listener(notice);
    });
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.#sweep);
  }

  /** Drops expired streams and subscribers. Runs on a timer; public for tests. */
  sweep(): void {
    const now = this.#clock.now();
    for (const [id, stream] of this.#streams) if (stream.expiresAt <= now) this.#streams.delete(id);
    for (const [id, entry] of this.#sessions) if (entry.expiresAt <= now) this.#dropSession(id, entry);
    for (const [key, entry] of this.#subscribers) if (entry.expiresAt <= now) this.#subscribers.delete(key);
  }

  #stream(sessionId: string): Stream {
    let stream = this.#streams.get(sessionId);
    if (stream && stream.expiresAt <= this.#clock.now()) {
      this.#streams.delete(sessionId);
      stream = undefined;
    }
    if (!stream) {
      stream = { head: 0, events: [], ids: new Map(), expiresAt: Infinity };
      this.#streams.set(sessionId, stream);
    }
    return stream;
  }

  #liveSession(sessionId: string): SessionEntry | undefined {
    const entry = this.#sessions.get(sessionId);
    if (entry && entry.expiresAt <= this.#clock.now()) {
      this.#dropSession(sessionId, entry);
      return undefined;
    }
    return entry;
  }

  /** Retention: the record goes, and with it its listing entries. */
  #dropSession(sessionId: string, entry: SessionEntry): void {
    this.#sessions.delete(sessionId);
    const { tenantId, ownerId, createdAt } = entry.record;
    const key = sessionOrderKey(createdAt, sessionId);
    removeSorted(this.#byTenant, tenantId, key);
    removeSorted(this.#byOwner, ownerIndex(tenantId, ownerId), key);
  }

  #liveSubscriber(sessionId: string, subscriberId: string): SubscriberEntry | undefined {
    const key = subKey(sessionId, subscriberId);
    const entry = this.#subscribers.get(key);
    if (entry && entry.expiresAt <= this.#clock.now()) {
      this.#subscribers.delete(key);
      return undefined;
    }
    return entry;
  }

  #trim(stream: Stream): void {
    const excess = stream.events.length - this.#limits.historyMaxEvents;
    if (excess > 0) stream.events.splice(0, excess);
  }
}

interface Stream {
  head: number;
  events: StoredEvent[];
  /** eventId → seq, for idempotent appends; kept for the stream's lifetime. */
  ids: Map<string, number>;
  endedAt?: number;
  expiresAt: number;
}

interface SessionEntry {
  record: SessionRecord;
  /** Infinity until the stream ended; then the end of retention. */
  expiresAt: number;
}

interface SubscriberEntry {
  record: SubscriberRecord;
  expiresAt: number;
}

function ownerIndex(tenantId: string, ownerId: string): string {
  return `${tenantId}\0${ownerId}`;
}

function indexOf(indexes: Map<string, string[]>, name: string): string[] {
  let keys = indexes.get(name);
  if (!keys) indexes.set(name, (keys = []));
  return keys;
}

/** The first position whose key is greater than `key`. */
function upperBound(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! <= key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Inserts once, in order (new sessions are mostly the newest: near the front). */
function insertSorted(keys: string[], key: string): void {
  const at = upperBound(keys, key);
  if (keys[at - 1] !== key) keys.splice(at, 0, key);
}

function removeSorted(indexes: Map<string, string[]>, name: string, key: string): void {
  const keys = indexes.get(name);
  if (!keys) return;
  const at = upperBound(keys, key) - 1;
  if (keys[at] === key) keys.splice(at, 1);
  if (keys.length === 0) indexes.delete(name);
}

function subKey(sessionId: string, subscriberId: string): string {
  return `${sessionId}\0${subscriberId}`;
}

function headOf(stream: Stream, epoch: string): StreamHead {
  return stream.endedAt === undefined
    ? { headSeq: stream.head, epoch }
    : { headSeq: stream.head, epoch, endedAt: stream.endedAt };
}

function cloneStored(e: StoredEvent): StoredEvent {
  return { seq: e.seq, event: structuredClone(e.event) };
}

/**
 * Yields once, so callers see the same asynchrony as with a remote engine: code that
 * only works because the memory engine answered synchronously would break on Redis.
 */
function tick(): Promise<void> {
  return Promise.resolve();
}
