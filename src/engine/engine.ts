import type { Envelope } from '../protocol/envelope.ts';

/**
 * The storage port. The engine is the sequencing authority (ARCHITECTURE-NOTES
 * decision 1): it assigns every accepted event its seq, atomically, and it holds the
 * truth about subscribers and their checkpoints (decision 7). Session actors are local
 * owners that batch and fan out; they never invent a seq.
 *
 * Positions: a seq is an integer ≥ 1, contiguous per session and epoch. "after = n"
 * always means "events with seq > n"; 0 means "from the first retained event". An
 * epoch is an opaque string that changes only when stored history was lost or reset;
 * seqs are never reused under one epoch.
 *
 * Every method may reject with EngineUnavailableError when the backing store cannot
 * be reached in time; no method leaves partial state behind when it rejects.
 */
export interface Engine {
  /** A short name for logs and metrics: "memory" or "redis". */
  readonly kind: 'memory' | 'redis';

  // ── call sessions ──────────────────────────────────────────────────────────────
  /**
   * Creates a session record (state `created`, version 1), or returns the one created
   * earlier under the same (tenantId, ownerId, idempotencyKey). Atomic: two concurrent
   * calls with one key create one session. `created` tells which happened. `event` (the
   * session's `call.created`) is appended to the new session's stream in the same atomic
   * step as the record is written, with the semantics of `append`; a repeat under the same
   * key appends nothing more. The session is entered in its owner's and its tenant's
   * listing before its record is written (see listSessions).
   */
  createSession(
    input: NewSession,
    idempotencyKey?: string,
    event?: Envelope,
  ): Promise<{ session: SessionRecord; created: boolean }>;
  /** The record, or undefined: never created, or expired after its stream ended. */
  getSession(sessionId: string): Promise<SessionRecord | undefined>;

  /**
   * Compare-and-set of a session record together with the event that announces the
   * change, in one atomic step: applied only while the stored record's version equals
   * `change.expectedVersion`. Then the record becomes `change.next` and `change.event` is
   * appended to the session's stream exactly as `append` would (dedupe by eventId, next
   * seq, epoch, cross-node notice), and with `endStream` the stream ends at that event
   * (as `endStream` would, same retention), so the record and the stream never disagree.
   * Otherwise nothing changes: `conflict` carries the current record, `not_found` means
   * there is none. The engine does not judge the change itself (the lifecycle rules live
   * in the call service); it only guarantees that of concurrent changes from one version,
   * on any number of nodes, exactly one is applied.
   * Rejects with GatewayError `session_ended` when the stream has already ended.
   */
  transitionSession(sessionId: string, change: SessionChange): Promise<SessionChangeResult>;

  /**
   * A page of a tenant's sessions (or of one owner's, with `ownerId`), newest first: by
   * `createdAt` descending, then by id ascending. `after` continues after that position
   * (the `next` of the previous page). Listing is by index entries written before each
   * record: an entry whose record is missing (still being created, or expired after its
   * stream ended) is skipped, so a page may hold fewer than `limit` sessions while `next`
   * is set; the listing is complete once `next` is absent.
   */
  listSessions(query: SessionQuery): Promise<SessionPage>;

  // ── event streams ──────────────────────────────────────────────────────────────
  /**
   * Appends a batch to a session's stream in one atomic step. Each event is deduped
   * by eventId within the session: an eventId already stored returns its original seq
   * with `duplicate: true` and appends nothing. Results are in input order; new seqs
   * are contiguous and increasing in input order. Once the stream has ended nothing new
   * follows its last event: a batch holding an event not stored yet rejects with
   * GatewayError `session_ended` and appends nothing (a batch of duplicates still returns
   * their seqs). So the event that ends a stream must be appended before `endStream`, or
   * with it (transitionSession).
   */
  append(sessionId: string, events: readonly Envelope[], seen?: SeenPosition): Promise<AppendResult>;

  /**
   * Reads up to `limit` events with seq > after, in seq order. `firstSeq` is the
   * lowest retained seq (head + 1 when the stream is empty); when after + 1 < firstSeq
   * the caller has lost history and gets what is retained, so it must check.
   */
  read(sessionId: string, after: number, limit: number): Promise<ReadResult>;

  /** The stream's current head and epoch without reading events. */
  head(sessionId: string, seen?: SeenPosition): Promise<StreamHead>;

  /**
   * The stored heads of many streams, read only, in the order asked; undefined for a
   * stream with nothing stored (no epoch yet, or its data gone). A hint for the
   * anti-entropy audit (HeadAudit): unlike `head` it never starts an epoch nor checks a
   * seen position, so a caller that finds an epoch or a head it does not expect calls
   * `head` for the truth. One round trip for the lot on one Redis.
   *
   * `null` for a head that could not be read while others were: on a Redis Cluster each
   * read settles alone, so a master that does not answer costs only its own sessions'
   * (ask again later). The call rejects when the engine is away as a whole.
   */
  peekHeads(sessionIds: readonly string[]): Promise<Array<StreamHead | undefined | null>>;

  /**
   * Marks the stream ended at its current head and schedules its data, the session
   * record included, to expire after the retention TTL. Idempotent.
   */
  endStream(sessionId: string): Promise<StreamHead>;

  // ── subscribers ───────────────────────────────────────────────────────────────
  /**
   * Creates a subscriber with generation 1, connected, with checkpoint = `after`; `node`,
   * when given, is stored with `connectedAt` (0 when absent; without `node` neither is).
   */
  createSubscriber(sessionId: string, sub: NewSubscriber): Promise<SubscriberRecord>;
  getSubscriber(sessionId: string, subscriberId: string): Promise<SubscriberRecord | undefined>;

  /**
   * Takes a subscriber over for a new connection: increments its generation and marks
   * it connected, atomically, but only while it is resumable at `now` (connected, or
   * disconnected for at most `windowMs`, and not ended). With `node`, records that node
   * as the holder of the connection, connected since `now`, in the same step. With
   * `acked` (a resume's lastSeq: the client holds every event up to it), raises the
   * checkpoint to it in the same step, so a later resume of the subscriber starts there
   * whatever happened to the connection meanwhile. Returns the updated record, or
   * undefined when it is not resumable.
   */
  takeoverSubscriber(
    sessionId: string,
    subscriberId: string,
    now: number,
    windowMs: number,
    node?: string,
    acked?: number,
  ): Promise<SubscriberRecord | undefined>;

  /**
   * Moves a checkpoint forward. Applied only when `generation` is still the current one
   * and `seq` is higher than the stored checkpoint; returns the checkpoint after the call.
   */
  saveCheckpoint(sessionId: string, subscriberId: string, generation: number, seq: number): Promise<number>;

  /**
   * saveCheckpoint for several subscribers of one session, applied in order; resolves
   * with the checkpoint after each write, in order. One promise for a session actor's
   * acks of a tick, instead of one per ack (a fan-out to thousands at a few events a
   * second is acked event by event).
   */
  saveCheckpoints(sessionId: string, writes: readonly CheckpointWrite[]): Promise<number[]>;

  /**
   * Records that the connection of `generation` closed at `now`. Ignored when a newer
   * generation has taken over. The record expires after `windowMs` unless resumed.
   */
  releaseSubscriber(
    sessionId: string,
    subscriberId: string,
    generation: number,
    now: number,
    windowMs: number,
  ): Promise<void>;

  /** Ends a subscriber for good (`bye`): its resume token stops working at once. */
  endSubscriber(sessionId: string, subscriberId: string): Promise<void>;

  /**
   * The session's subscribers that still exist (connected, or released and inside their
   * resume window), for inspection: at most `limit` of them, in no particular order,
   * `truncated` when there are more. Not a snapshot: each record is read on its own, so
   * records may come from slightly different moments. Never used on the delivery path.
   */
  listSubscribers(sessionId: string, limit: number): Promise<SubscriberList>;

  // ── cross-node notifications ──────────────────────────────────────────────────
  /**
   * Tells `listener` about changes to a session made by any node, this one included: a
   * new head after an append, a subscriber takeover. This is the fast path only
   * (ARCHITECTURE-NOTES decision 6): notices can be lost, so a listener treats a head
   * notice as "read up to here from the stream", and `resync` as "you may have missed
   * notices: re-read the head". `ready` resolves once every later change is certain to
   * be noticed (the subscription is active); `stop` ends the watch.
   */
  watch(sessionId: string, listener: SessionListener): Watch;

  // ── lifecycle ─────────────────────────────────────────────────────────────────
  /** Resolves when the backing store answers; rejects otherwise. */
  ping(): Promise<void>;
  /** Flushes pending writes and releases connections. */
  close(): Promise<void>;
}

export type SessionNotice =
  | { kind: 'head'; headSeq: number; epoch: string }
  | { kind: 'takeover'; subscriberId: string; generation: number }
  | { kind: 'resync' };

export type SessionListener = (notice: SessionNotice) => void;

export interface Watch {
  ready: Promise<void>;
  stop(): void;
}

export interface NewSession {
  id: string;
  tenantId: string;
  ownerId: string;
  createdAt: string;
  metadata?: Record<string, string>;
}

export type SessionState = 'created' | 'connecting' | 'active' | 'ending' | 'ended' | 'failed';

/** The provider's ids of a call: set with the move to `active`, never changed after. */
export interface ProviderCorrelation {
  provider?: string;
  providerRoomId?: string;
  providerParticipantId?: string;
  providerCallId?: string;
}

/** The fields of a lifecycle change as its caller gave them (compared for replays). */
export interface TransitionFields extends ProviderCorrelation {
  reason?: string;
}

export interface SessionRecord extends NewSession, ProviderCorrelation {
  state: SessionState;
  /** 1 at creation; grows by one with every change. */
  version: number;
  /** When the session became `active` (RFC 3339), once it has. */
  activatedAt?: string;
  /** The change that produced the current state; absent while `created`. */
  lastTransition?: TransitionFields & { to: SessionState; at: string };
}

export interface SessionChange {
  /** The version the change was decided on. */
  expectedVersion: number;
  /** The record after the change (its version is expectedVersion + 1). */
  next: SessionRecord;
  /** The event announcing the change; its sessionId is the session's. */
  event: Envelope;
  /** End the stream at this event (a terminal change). */
  endStream: boolean;
}

export type SessionChangeResult =
  | { status: 'applied'; session: SessionRecord; outcome: AppendOutcome; head: StreamHead }
  | { status: 'conflict'; current: SessionRecord }
  | { status: 'not_found' };

/** A position in a listing: the last session a page covered. */
export interface SessionPosition {
  createdAt: string;
  id: string;
}

export interface SessionQuery {
  tenantId: string;
  /** Only this owner's sessions; absent: the whole tenant's. */
  ownerId?: string;
  /** At most this many sessions (≥ 1). */
  limit: number;
  after?: SessionPosition;
}

export interface SessionPage {
  sessions: SessionRecord[];
  /** Where the next page starts; absent when the listing is complete. */
  next?: SessionPosition;
}

/**
 * The furthest position a caller has seen of a stream. When the stored head is behind
 * it under the same epoch, stored history was lost (a truncated AOF, a restore): the
 * engine moves the stream to a new epoch instead of handing out those seqs again.
 */
export interface SeenPosition {
  epoch: string;
  headSeq: number;
}

export interface StoredEvent {
  seq: number;
  event: Envelope;
}

export interface AppendOutcome {
  seq: number;
  duplicate: boolean;
}

export interface StreamHead {
  headSeq: number;
  epoch: string;
  /** Set once the stream ended: the seq of its last event. */
  endedAt?: number;
}

export interface AppendResult extends StreamHead {
  outcomes: AppendOutcome[];
}

export interface ReadResult extends StreamHead {
  firstSeq: number;
  events: StoredEvent[];
}

/** One checkpoint to save (see Engine#saveCheckpoints). */
export interface CheckpointWrite {
  subscriberId: string;
  generation: number;
  seq: number;
}

export interface NewSubscriber {
  id: string;
  userId: string;
  tenantId: string;
  after: number;
  /**
   * The node holding the subscriber's current connection (NODE_ID), and when that
   * connection attached (ms since the epoch). Informational only (the inspector shows
   * them): recorded at create and takeover, never read for delivery or fencing, and not
   * cleared on release, where they name the node that held the last connection. Absent
   * when the caller did not say.
   */
  node?: string;
  connectedAt?: number;
}

export interface SubscriberRecord extends NewSubscriber {
  generation: number;
  checkpoint: number;
  connected: boolean;
  /** ms since the epoch; 0 while connected. */
  disconnectedAt: number;
  ended: boolean;
}

export interface SubscriberList {
  subscribers: SubscriberRecord[];
  /** More subscribers exist than were returned. */
  truncated: boolean;
}

export interface EngineLimits {
  /** Events kept per stream; older ones are trimmed (HISTORY_MAX_EVENTS). */
  historyMaxEvents: number;
  /** Seconds an ended session's data is kept (HISTORY_TTL_AFTER_END_S). */
  historyTtlAfterEndS: number;
}
