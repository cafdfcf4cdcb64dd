import { randomBytes } from 'node:crypto';
import type { Clock } from '../../util/clock.ts';
import type { Envelope } from '../../protocol/envelope.ts';
import type {
  AppendResult,
  Engine,
  EngineLimits,
  NewSession,
  NewSubscriber,
  ReadResult,
  SessionListener,
  SessionNotice,
  SessionRecord,
  Watch,
  StoredEvent,
  StreamHead,
  SubscriberRecord,
} from '../engine.ts';

/**
 * The embedded engine: everything in this process's memory.
 *
 * Limits, by design:
 * - one gateway node only: nothing is shared with other processes;
 * - nothing survives a restart: every restart is a new epoch, so resuming clients get
 *   `history_gone` and start fresh;
 * - retention is by count (`historyMaxEvents` per stream) and by time after a stream
 *   ended (`historyTtlAfterEndS`), swept lazily on access and by a timer.
 * Use the redis engine for anything that must survive a restart or span nodes.
 */
export class MemoryEngine implements Engine {
  readonly kind = 'memory';
  readonly #clock: Clock;
  readonly #limits: EngineLimits;
  /** One epoch per process: a restart loses everything, so it must look like a new stream. */
  readonly #epoch = randomBytes(8).toString('hex');
  readonly #sessions = new Map<string, SessionRecord>();
  readonly #idempotency = new Map<string, string>();
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
  ): Promise<{ session: SessionRecord; created: boolean }> {
    await tick();
    const idemKey =
      idempotencyKey === undefined ? undefined : `${input.tenantId}\0${input.ownerId}\0${idempotencyKey}`;
    if (idemKey !== undefined) {
      const existing = this.#idempotency.get(idemKey);
      const session = existing === undefined ? undefined : this.#sessions.get(existing);
      if (session) return { session: structuredClone(session), created: false };
    }
    const session: SessionRecord = { ...input, state: 'created', version: 1 };
    this.#sessions.set(input.id, session);
    if (idemKey !== undefined) this.#idempotency.set(idemKey, input.id);
    return { session: structuredClone(session), created: true };
  }

  async getSession(sessionId: string): Promise<SessionRecord | undefined> {
    await tick();
    const s = this.#sessions.get(sessionId);
    return s && structuredClone(s);
  }

  async append(sessionId: string, events: readonly Envelope[]): Promise<AppendResult> {
    await tick();
    const stream = this.#stream(sessionId);
    const outcomes = events.map((event) => {
      const known = stream.ids.get(event.eventId);
      if (known !== undefined) return { seq: known, duplicate: true };
      const seq = ++stream.head;
      stream.events.push({ seq, event: structuredClone(event) });
      stream.ids.set(event.eventId, seq);
      return { seq, duplicate: false };
    });
    this.#trim(stream);
    if (outcomes.some((o) => !o.duplicate)) {
      this.#notify(sessionId, { kind: 'head', headSeq: stream.head, epoch: this.#epoch });
    }
    return { outcomes, ...headOf(stream, this.#epoch) };
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

  async endStream(sessionId: string): Promise<StreamHead> {
    await tick();
    const stream = this.#stream(sessionId);
    if (stream.endedAt === undefined) {
      stream.endedAt = stream.head;
      stream.expiresAt = this.#clock.now() + this.#limits.historyTtlAfterEndS * 1000;
    }
    return headOf(stream, this.#epoch);
  }

  async createSubscriber(sessionId: string, sub: NewSubscriber): Promise<SubscriberRecord> {
    await tick();
    const record: SubscriberRecord = {
      ...sub,
      generation: 1,
      checkpoint: sub.after,
      connected: true,
      disconnectedAt: 0,
      ended: false,
    };
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
  ): Promise<SubscriberRecord | undefined> {
    await tick();
    const entry = this.#liveSubscriber(sessionId, subscriberId);
    if (!entry) return undefined;
    const r = entry.record;
    if (r.ended || (!r.connected && now - r.disconnectedAt > windowMs)) return undefined;
    r.generation += 1;
    r.connected = true;
    r.disconnectedAt = 0;
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

interface SubscriberEntry {
  record: SubscriberRecord;
  expiresAt: number;
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
