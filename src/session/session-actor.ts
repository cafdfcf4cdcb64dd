import type {
  Engine,
  AppendOutcome,
  AppendResult,
  SessionNotice,
  StreamHead,
  SubscriberRecord,
  Watch,
} from '../engine/engine.ts';
import type { Envelope } from '../protocol/envelope.ts';
import { TerminalEventTypes } from '../protocol/event-types.ts';
import { CloseCodes } from '../protocol/close-codes.ts';
import { GatewayError } from '../errors/gateway-error.ts';
import type { Clock } from '../util/clock.ts';
import type { Logger } from '../observability/logger.ts';
import type { WarnSink } from '../observability/log-throttle.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { ResumeClaims } from '../auth/resume-token.ts';
import type { SessionAccess } from '../auth/access.ts';
import type { CacheBudget } from './cache-budget.ts';
import { EncodedEvent, EventCache, RecentReads } from './event-cache.ts';
import type { Connection, ConnectionIdentity } from './connection.ts';
import { ResumeQueue, claimedAck, type QueuedResume, type ResumeHost } from './resume-queue.ts';
import { SubscriberWrites, type SubscriberWritesHost } from './subscriber-writes.ts';
import { AppendQueue, nack, type AppendHost, type PendingPublish } from './append-queue.ts';
import { TRY_AGAIN_LATER } from './close-reason.ts';

export interface ActorLimits {
  maxInFlight: number;
  backpressureBytes: number;
  slowConsumerMs: number;
  replayBatch: number;
  queueMax: number;
  cacheEvents: number;
  resumeWindowMs: number;
  heartbeatMs: number;
  idleMs: number;
}

export interface ActorDeps {
  engine: Engine;
  clock: Clock;
  limits: ActorLimits;
  metrics: Metrics;
  logger: Logger;
  issueResumeToken: (claims: ResumeClaims) => string;
  /**
   * This node's id, recorded with each subscriber it attaches (create, takeover) so an
   * inspector on any node can tell where a subscriber's connection is. Absent: not recorded.
   */
  nodeId?: string;
  /**
   * Where the warnings go that every session raises at once for one cause (a Redis stall:
   * gap fills, checkpoint writes, resyncs), throttled node-wide (see LogThrottle). Absent:
   * `logger`, one line each.
   */
  warnings?: WarnSink;
  /** The node-wide bound on cached events, shared by every actor (see CacheBudget). Absent: none. */
  cacheBudget?: CacheBudget;
  /** Called once the actor has had nothing to do for `idleMs`; the registry drops it. */
  onIdle: (actor: SessionActor) => void;
}

/** One live connection on this node, for the inspector. Positions as in Connection. */
export interface LiveConnectionView {
  subscriberId: string;
  connectionId: string;
  generation: number;
  codec: string;
  /** Highest seq delivered on this connection. */
  sentSeq: number;
  /** Highest seq the client acknowledged on it (the checkpoint may trail it briefly). */
  ackedSeq: number;
  bufferedBytes: number;
}

type HeadNotice = Extract<SessionNotice, { kind: 'head' }>;

const speaksMsgpack = (conn: Connection): boolean => conn.codec.name === 'msgpack';

/** First wait before retrying a failed resync; it doubles up to the max. */
const RESYNC_RETRY_MS = 200;
const RESYNC_RETRY_MAX_MS = 5_000;

/** Wait before retrying a failed gap fill. */
const GAP_FILL_RETRY_MS = 250;

/** Takeover generations remembered per actor (see #noticedGenerations). */
const MAX_NOTICED_GENERATIONS = 4096;

/**
 * The local owner of one session on this node.
 *
 * - Resumes run in arrival order (ResumeQueue), so "the resume processed last wins" is
 *   well defined on this node. Fresh subscriptions share nothing and attach at once.
 * - Publishes arriving in one tick go to the engine as one append; only one append is
 *   in flight at a time, so results, and fan-out, come back in seq order (AppendQueue).
 * - Delivery is one mechanism for replay and live: each connection has `sentSeq`, and
 *   `#pump` sends `sentSeq + 1`, `sentSeq + 2`, … from the cache, or reads them from the
 *   engine when the cache does not have them. A connection only ever receives the seq
 *   right after the one it last received, so the replay→live handoff can neither skip
 *   nor repeat an event (ARCHITECTURE-NOTES decision 5).
 * - Nothing waits in memory for a paused or slow connection: it simply stops advancing
 *   and later catches up from the cache or the engine (decision 4).
 */
export class SessionActor {
  /** The view of their actor that its queues and writes have: one for all (see AppendHost). */
  static readonly #appendHost: AppendHost<SessionActor> = {
    loading: (a) => (a.#loaded ? undefined : a.#ensureLoaded()),
    ended: (a) => a.#endSeq !== undefined,
    seen: (a) => ({ epoch: a.#epoch, headSeq: a.#head }),
    applied: (a, batch, result) => a.#applyAppend(batch, result),
    failed: (a, batch, error) => a.#appendFailed(batch, error),
    settled: (a, queued) => a.#appendSettled(queued),
  };
  static readonly #resumeHost: ResumeHost<SessionActor> = {
    prepare: (a) => a.#prepareAttach(),
    epoch: (a) => a.#epoch,
    head: (a) => a.#head,
    takeover: (a, r) => a.#takeover(r),
    resumed: (a, r, record) => a.#resumed(r, record),
    resumeAlone: (a, r) => a.#resumeAlone(r),
  };
  static readonly #writesHost: SubscriberWritesHost<SessionActor> = {
    warn: (a, fields, msg) => a.#warn(fields, msg),
    // its notice never reached this node (lost across a Redis reconnect): find out which
    // connections are stale now
    fenced: (a, conn) => {
      if (a.#has(conn)) void a.#checkGenerations().catch(() => {});
    },
  };

  readonly sessionId: string;
  /**
   * The session's tenant and owner, from a hello's read of its record (they never change):
   * later hellos check access against these instead of reading the record again. Gone with
   * the actor when it goes idle, and when it finds its history lost (see keepAccess).
   */
  #access: SessionAccess | undefined;
  readonly #deps: ActorDeps;
  readonly #cache: EventCache;
  readonly #recentReads: RecentReads;
  /**
   * The live connections, by subscriber: one each (a takeover forgets the previous one
   * before it attaches the next). Also the set of this actor's connections (see #has).
   */
  readonly #bySubscriber = new Map<string, Connection>();
  /** How many of them speak MessagePack: new events get that frame made up front too. */
  #msgpackSubscribers = 0;
  readonly #appends: AppendQueue<SessionActor>;
  /** Made at the first resume: most actors never see one. */
  #resumes: ResumeQueue<SessionActor> | undefined;
  #loading: Promise<void> | undefined;
  #loaded = false;
  /**
   * The highest head notice that came while the head read was out. The notice of an
   * append Redis ran just after that read can overtake its reply (pub/sub and commands
   * are two connections): dropped, this node would not hear of the event until the
   * session's next append. Applied once the read is in.
   */
  #noticeWhileLoading: HeadNotice | undefined;
  /** Set while this node watches the session's cross-node notices (while it has connections). */
  #watch: Watch | undefined;
  /**
   * The newest generation a takeover notice announced, per subscriber. A notice can
   * overtake this node's own takeover of the same subscriber; then the connection it
   * attaches is already superseded and is closed at once.
   */
  readonly #noticedGenerations = new Map<string, number>();
  #filling = false;
  /**
   * The highest head a notice announced while this actor's own append was out (0: none).
   * The append's PUBLISH and its reply come back on different Redis connections, in
   * either order: most such notices announce that very append, and reading the engine
   * for it would cost a read per event. What the append's reply does not cover is
   * filled after it (#afterAppend).
   */
  #noticedHead = 0;
  /** Attaches under way (fresh or resume): they keep the actor and its watch alive. */
  #attaching = 0;
  /**
   * When this node last heard of the stream's head from Redis (a head notice, a load, a
   * resync or an audit). A session quiet for HEAD_AUDIT_MS has its head read again by
   * HeadAudit: a lost notice of its last append would otherwise hold its subscribers
   * here back until the session's next event.
   */
  #heardAt = 0;
  #head = 0;
  #epoch = '';
  /** Seq of the stream's last event once it ended; undefined while it is open. */
  #endSeq: number | undefined;
  #ending = false;
  #idleTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** Checkpoints and releases of its subscribers, awaited on shutdown. */
  readonly #writes: SubscriberWrites<SessionActor>;
  /** The connection #pumpCurrent serves: set around each synchronous cork (see #pump). */
  #pumping: Connection | undefined;
  readonly #pumpCurrent = (): void => {
    if (this.#pumping) this.#pumpCorked(this.#pumping);
  };

  constructor(sessionId: string, deps: ActorDeps) {
    this.sessionId = sessionId;
    this.#deps = deps;
    this.#cache = new EventCache(deps.limits.cacheEvents, deps.cacheBudget);
    this.#recentReads = new RecentReads(deps.limits.cacheEvents, deps.cacheBudget);
    this.#appends = new AppendQueue(sessionId, deps, SessionActor.#appendHost, this);
    this.#writes = new SubscriberWrites(sessionId, deps, SessionActor.#writesHost, this);
    this.#scheduleIdle();
  }

  get access(): SessionAccess | undefined {
    return this.#access;
  }

  /** The stream epoch the actor holds; '' until it first loaded its head. */
  get epoch(): string {
    return this.#epoch;
  }

  /**
   * Keeps what a hello read of the session's record, if the read began under the epoch the
   * actor still holds (`readUnder`, from `epoch` before the read). A read that began
   * before the actor knew its epoch, or before it found its history lost, may have
   * returned the record from before the loss (Redis keeps records and streams together):
   * kept, it would welcome hellos to a session that no longer exists until the actor idles.
   */
  keepAccess(access: SessionAccess, readUnder: string): void {
    if (this.#access !== undefined || readUnder === '' || readUnder !== this.#epoch) return;
    this.#access = { tenantId: access.tenantId, ownerId: access.ownerId };
  }

  get connectionCount(): number {
    return this.#bySubscriber.size;
  }

  get headSeq(): number {
    return this.#head;
  }

  /** This node's live connections of the session, as the inspector shows them. */
  liveConnections(): LiveConnectionView[] {
    return [...this.#bySubscriber.values()].map((conn) => ({
      subscriberId: conn.subscriberId,
      connectionId: conn.id,
      generation: conn.generation,
      codec: conn.codec.name,
      sentSeq: conn.sentSeq,
      ackedSeq: conn.ackedSeq,
      bufferedBytes: conn.sink.bufferedAmount(),
    }));
  }

  // ── attaching connections ────────────────────────────────────────────────────────

  /** A fresh subscription (`hello` without `resume`). Rejects with a GatewayError. */
  attachFresh(conn: Connection, identity: ConnectionIdentity, after: number | 'latest'): Promise<void> {
    // Fresh subscribers share nothing, so they attach concurrently (a reconnect storm is
    // not serialised behind one engine round trip each); only resumes use the mailbox.
    return this.#busy(async () => {
      await this.#prepareAttach();
      const { engine } = this.#deps;
      // after: 0 means "everything still retained", which starts before the oldest one kept.
      const start = after === 'latest' ? this.#head : after === 0 ? await this.#retainedStart() : after;
      if (start > this.#head) throw new GatewayError('history_gone', 'after is beyond the stream head');
      const subscriberId = conn.freshSubscriberId;
      const record = await this.#time('createSubscriber', () =>
        engine.createSubscriber(this.sessionId, {
          id: subscriberId,
          userId: identity.userId,
          tenantId: identity.tenantId,
          after: start,
          ...(this.#deps.nodeId !== undefined
            ? { node: this.#deps.nodeId, connectedAt: this.#deps.clock.now() }
            : {}),
        }),
      );
      this.#attach(conn, identity, record.id, record.generation, start, record.checkpoint, false);
    });
  }

  /**
   * A resume (`hello` with `resume`): takes the subscriber over for this connection, in
   * arrival order with the session's other resumes (ResumeQueue).
   */
  attachResume(conn: Connection, claims: ResumeClaims, lastSeq?: number, epoch?: string): Promise<void> {
    this.#resumes ??= new ResumeQueue(this.#deps.limits.queueMax, SessionActor.#resumeHost, this);
    const resumes = this.#resumes;
    return this.#busy(() => resumes.push(conn, claims, lastSeq, epoch));
  }

  #takeover(r: QueuedResume): Promise<SubscriberRecord | undefined> {
    const { engine, clock, limits, nodeId } = this.#deps;
    return this.#time('takeover', () =>
      engine.takeoverSubscriber(
        this.sessionId,
        r.claims.subscriberId,
        clock.now(),
        limits.resumeWindowMs,
        nodeId,
        claimedAck(r),
      ),
    );
  }

  /** A resume whose lastSeq is beyond this node's head: the stream is asked first. */
  async #resumeAlone(r: QueuedResume): Promise<void> {
    const { claims, lastSeq, epoch } = r;
    if (epoch !== undefined && epoch !== this.#epoch) throw new GatewayError('history_gone', 'epoch changed');
    const { engine, clock, limits } = this.#deps;
    if (lastSeq !== undefined && lastSeq > this.#head) {
      // This node's head may lag the stream (a notice still on its way, or lost across
      // a Redis reconnect): ask the stream before telling a client its events are gone.
      const head = await this.#time('head', () =>
        engine.head(this.sessionId, { epoch: this.#epoch, headSeq: this.#head }),
      );
      if (head.epoch !== this.#epoch) {
        this.#resetEpoch(head);
        this.#advanceHead(head);
        throw new GatewayError('history_gone', 'epoch changed');
      }
      if (head.headSeq > this.#head) {
        this.#advanceHead(head);
        void this.#fillGap();
      }
    }
    if (lastSeq !== undefined && lastSeq > this.#head) {
      // Rare: look before refusing, so a dead token still reads as resume_expired.
      const current = await this.#time('getSubscriber', () =>
        engine.getSubscriber(this.sessionId, claims.subscriberId),
      );
      const alive =
        current !== undefined &&
        !current.ended &&
        (current.connected || clock.now() - current.disconnectedAt <= limits.resumeWindowMs);
      if (!alive) throw new GatewayError('resume_expired');
      throw new GatewayError('history_gone', 'lastSeq is beyond the stream head');
    }
    this.#resumed(r, await this.#takeover(r));
  }

  /** Applies a takeover's result to the resuming connection; throws when refused. */
  #resumed(r: QueuedResume, record: SubscriberRecord | undefined): void {
    const { conn, claims, lastSeq } = r;
    if (!record) {
      this.#deps.metrics.resumes.inc({ outcome: 'expired' });
      throw new GatewayError('resume_expired');
    }
    const start = lastSeq ?? record.checkpoint;
    const previous = this.#bySubscriber.get(record.id);
    if (previous) {
      this.#forget(previous);
      this.#closeConn(previous, CloseCodes.superseded, 'superseded');
      this.#deps.metrics.resumes.inc({ outcome: 'superseded_local' });
    }
    this.#deps.metrics.resumes.inc({ outcome: 'ok' });
    if ((this.#noticedGenerations.get(record.id) ?? 0) > record.generation) {
      // Another node took the subscriber over after us, and we heard of it first.
      this.#deps.metrics.resumes.inc({ outcome: 'superseded_remote' });
      this.#closeConn(conn, CloseCodes.superseded, 'superseded');
      return;
    }
    const identity = { userId: claims.userId, tenantId: claims.tenantId, role: claims.role };
    this.#attach(conn, identity, record.id, record.generation, start, record.checkpoint, true);
  }

  #attach(
    conn: Connection,
    identity: ConnectionIdentity,
    subscriberId: string,
    generation: number,
    after: number,
    checkpoint: number,
    resumed: boolean,
  ): void {
    if (conn.state === 'closed') {
      // The socket went away while we were checking its hello: let the subscriber's
      // resume window start now rather than leaving it "connected" forever.
      this.#writes.release(subscriberId, generation);
      return;
    }
    conn.state = 'live';
    conn.actor = this;
    conn.subscriberId = subscriberId;
    conn.generation = generation;
    conn.role = identity.role;
    conn.sentSeq = after;
    conn.ackedSeq = after;
    conn.savedSeq = checkpoint;
    const replaced = this.#bySubscriber.get(subscriberId);
    if (replaced && speaksMsgpack(replaced)) this.#msgpackSubscribers--;
    this.#bySubscriber.set(subscriberId, conn);
    if (speaksMsgpack(conn)) this.#msgpackSubscribers++;
    this.#cancelIdle();
    // welcome and what the first pump sends (`replayed`, events) in one corked write:
    // one syscall, not two, on every handshake.
    conn.sink.cork(() => this.#welcome(conn, identity, subscriberId, after, resumed));
  }

  #welcome(
    conn: Connection,
    identity: ConnectionIdentity,
    subscriberId: string,
    after: number,
    resumed: boolean,
  ): void {
    const { limits } = this.#deps;
    conn.sendFrame({
      op: 'welcome',
      connectionId: conn.id,
      sessionId: this.sessionId,
      subscriberId,
      resumeToken: this.#deps.issueResumeToken({
        sessionId: this.sessionId,
        subscriberId,
        userId: identity.userId,
        tenantId: identity.tenantId,
        role: identity.role,
      }),
      resumeWindowMs: limits.resumeWindowMs,
      epoch: this.#epoch,
      headSeq: this.#head,
      after,
      resumed,
      heartbeatMs: limits.heartbeatMs,
      maxInFlight: limits.maxInFlight,
    });
    this.#pump(conn);
  }

  // ── frames from a live connection ────────────────────────────────────────────────

  /** A cumulative ack (PROTOCOL.md §4). */
  ack(conn: Connection, seq: number): void {
    if (!conn.live || !this.#has(conn)) return; // superseded or closed: ignored
    if (seq > conn.sentSeq) {
      conn.sendError('ack_ahead', `ack ${seq} is above the highest seq delivered (${conn.sentSeq})`);
      return;
    }
    if (seq <= conn.ackedSeq) return;
    conn.ackedSeq = seq;
    this.#writes.checkpoint(conn);
    this.#pump(conn);
  }

  /** `bye`: the subscriber ends; its resume token stops working at once. */
  async bye(conn: Connection): Promise<void> {
    if (!this.#has(conn)) return;
    this.#forget(conn);
    this.#closeConn(conn, CloseCodes.normal, 'bye');
    this.#writes.checkpoint(conn);
    try {
      await this.#time('endSubscriber', () =>
        this.#deps.engine.endSubscriber(this.sessionId, conn.subscriberId),
      );
    } catch (err) {
      this.#warn({ sessionId: this.sessionId, err }, 'end subscriber failed');
    }
  }

  /** The socket closed (for any reason). */
  detach(conn: Connection): void {
    conn.state = 'closed';
    conn.clearTimers();
    if (!this.#has(conn)) return;
    this.#forget(conn);
    this.#writes.checkpoint(conn);
    this.#writes.release(conn.subscriberId, conn.generation);
  }

  /** The socket drained below its limit: deliver what it missed. */
  drained(conn: Connection): void {
    if (!this.#has(conn)) return;
    if (conn.sink.bufferedAmount() <= this.#deps.limits.backpressureBytes) {
      clearTimeout(conn.slowTimer);
      conn.slowTimer = undefined;
    }
    this.#pump(conn);
  }

  // ── publishing ──────────────────────────────────────────────────────────────────

  /**
   * Appends an event (batched with the tick's others) and resolves once it is durable,
   * with its seq; a duplicate eventId resolves with the original seq.
   */
  publish(event: Envelope): Promise<AppendOutcome> {
    const refused = this.#refusal();
    if (refused) return Promise.reject(refused);
    this.#queueing(event);
    return this.#appends.push(event);
  }

  /**
   * A `pub` frame of a live connection of this session: like publish, but answered on
   * the connection by the actor (`puback` once durable, else `nack`), and its
   * `pendingPubs` is decremented then. The caller incremented it.
   */
  publishFrom(conn: Connection, event: Envelope): void {
    const refused = this.#refusal();
    if (refused) return nack(conn, event.eventId, refused);
    this.#queueing(event);
    this.#appends.pushFrom(conn, event);
  }

  #refusal(): GatewayError | undefined {
    if (this.#ending || this.#endSeq !== undefined) return new GatewayError('session_ended');
    if (this.#appends.queued >= this.#deps.limits.queueMax) {
      return new GatewayError('overloaded', 'too many publishes queued for this session');
    }
    return undefined;
  }

  #queueing(event: Envelope): void {
    // Once a terminal event is queued nothing may follow it into the stream.
    if (TerminalEventTypes.has(event.type)) this.#ending = true;
    this.#cancelIdle();
  }

  /** An append was refused; its publishes are answered already. */
  #appendFailed(batch: readonly PendingPublish[], error: GatewayError): void {
    // The engine knew of an end this actor has not heard of (it is not watching, or the
    // notice is on its way): learn it, so later publishes are refused here.
    if (error.code === 'session_ended' && this.#endSeq === undefined) void this.#learnEnd();
    // A terminal event that was not stored does not end anything: publishing reopens.
    if (this.#endSeq === undefined && batch.some((p) => TerminalEventTypes.has(p.event.type))) {
      this.#ending = false;
    }
  }

  #appendSettled(queued: number): void {
    // after #applyAppend's own microtask has moved the head
    if (this.#noticedHead > 0) queueMicrotask(this.#afterAppend);
    if (queued === 0) this.#scheduleIdle();
  }

  /** A notice came during the append: fill what the append's reply did not bring. */
  readonly #afterAppend = (): void => {
    const noticed = this.#noticedHead;
    this.#noticedHead = 0;
    if (!this.#stopped && noticed > this.#head) this.#remoteHead(noticed);
  };

  /** Another node moved the head past ours: fetch the events in between, then fan out. */
  #remoteHead(headSeq: number): void {
    this.#head = headSeq;
    this.#deps.metrics.remoteNotices.inc({ kind: 'head' });
    void this.#fillGap();
  }

  #applyAppend(batch: readonly PendingPublish[], result: AppendResult): void {
    if (result.epoch !== this.#epoch) this.#resetEpoch(result);
    let added = 0;
    let terminal = false;
    for (let i = 0; i < batch.length; i++) {
      const outcome = result.outcomes[i]!;
      if (outcome.duplicate) continue;
      const event = batch[i]!.event;
      this.#cache.push(new EncodedEvent({ seq: outcome.seq, event }, this.#msgpackSubscribers > 0));
      if (TerminalEventTypes.has(event.type)) terminal = true;
      added++;
    }
    const { metrics } = this.#deps;
    metrics.eventsAppended.inc(added);
    if (added < batch.length) metrics.eventsDuplicate.inc(batch.length - added);
    // Publishers hear back before the fan-out: their puback jobs are queued first, so a
    // publish is not held up by delivering to every subscriber (and agents do not run
    // into their in-flight limit because a session has many listeners). A connection's
    // pubacks wait in its outbox for the fan-out's pump, which writes them first, in one
    // corked write with the events it sends that connection.
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i]!;
      const outcome = result.outcomes[i]!;
      const from = p.from;
      if (!from) {
        p.resolve(outcome);
        continue;
      }
      from.pendingPubs--;
      if (from.state === 'closed') continue;
      const puback = from.codec.puback(p.event.eventId, outcome.seq);
      if (from.outbox) from.outbox.push(puback);
      else from.outbox = [puback];
      // Not pumped by the fan-out (it left this session): answered on its own.
      if (!this.#has(from)) this.#flushOutbox(from);
    }
    queueMicrotask(() => {
      this.#advanceHead(result);
      if (terminal) void this.#endStream();
    });
  }

  /** Ends the stream after a terminal event: subscribers get `eos` once they have it all. */
  async #endStream(): Promise<void> {
    this.#ending = true;
    try {
      const head = await this.#time('endStream', () => this.#deps.engine.endStream(this.sessionId));
      this.#advanceHead(head);
    } catch (err) {
      // The terminal event is stored; a later actor learns the end from the engine.
      this.#deps.logger.error({ sessionId: this.sessionId, err }, 'end stream failed');
    }
  }

  async #learnEnd(): Promise<void> {
    try {
      const head = await this.#time('head', () => this.#deps.engine.head(this.sessionId));
      if (head.epoch === this.#epoch && head.endedAt !== undefined) this.#advanceHead(head);
    } catch {
      // the next refused publish asks again
    }
  }

  #advanceHead(head: StreamHead): void {
    if (head.headSeq > this.#head) this.#head = head.headSeq;
    if (head.endedAt !== undefined) this.#endSeq = head.endedAt;
    this.#fanOut();
  }

  // ── delivery ────────────────────────────────────────────────────────────────────

  #fanOut(): void {
    for (const conn of this.#bySubscriber.values()) this.#pump(conn);
  }

  /**
   * Sends the connection everything it may have now: events from the cache while it has
   * room (maxInFlight) and its socket is under its limit; an engine read when the cache
   * does not reach back far enough; then `replayed` once it first catches up, and `eos`
   * once it has the whole ended stream.
   */
  #pump(conn: Connection): void {
    if (!conn.live) return;
    if (conn.reading) {
      if (conn.outbox) conn.sink.cork(() => this.#flushOutbox(conn));
      return;
    }
    // One bound function per actor, told which connection to serve through #pumping:
    // cork runs it synchronously, and the fan-out allocates nothing per subscriber.
    const outer = this.#pumping;
    this.#pumping = conn;
    try {
      conn.sink.cork(this.#pumpCurrent);
    } finally {
      this.#pumping = outer;
    }
  }

  /** Writes the control frames waiting for the connection's next pump (pubacks). */
  #flushOutbox(conn: Connection): void {
    const outbox = conn.outbox;
    if (!outbox) return;
    conn.outbox = undefined;
    if (conn.state === 'closed') return;
    for (const bytes of outbox) conn.sink.send(bytes, conn.codec.binary);
  }

  #pumpCorked(conn: Connection): void {
    if (conn.outbox) this.#flushOutbox(conn);
    const { limits, metrics } = this.#deps;
    let sent = 0;
    while (conn.sentSeq < this.#head) {
      if (conn.sentSeq - conn.ackedSeq >= limits.maxInFlight) break;
      if (conn.sink.bufferedAmount() > limits.backpressureBytes) {
        this.#markSlow(conn);
        break;
      }
      const next = this.#cache.get(conn.sentSeq + 1) ?? this.#recentReads.get(conn.sentSeq + 1);
      if (!next) {
        // Newer than anything cached: one shared gap fill fetches it for everyone.
        // Older than the cache: this connection reads the engine on its own.
        if (conn.sentSeq >= (this.#cache.lastSeq ?? Infinity)) void this.#fillGap();
        else void this.#catchUp(conn);
        break;
      }
      conn.sink.send(next.bytes(conn.codec), conn.codec.binary);
      conn.sentSeq = next.seq;
      sent++;
    }
    metrics.delivered += sent;
    if (conn.reading || !conn.live) return;
    if (!conn.replayedSent && conn.sentSeq >= this.#head) {
      conn.replayedSent = true;
      conn.sendFrame({ op: 'replayed', seq: conn.sentSeq });
    }
    if (this.#endSeq !== undefined && conn.sentSeq >= this.#endSeq && !conn.eosSent) {
      conn.eosSent = true;
      conn.sendFrame({ op: 'eos', seq: this.#endSeq });
      this.#drop(conn, CloseCodes.normal, 'session ended');
    }
  }

  /** Reads the events after `conn.sentSeq` that the cache no longer has. */
  async #catchUp(conn: Connection): Promise<void> {
    conn.reading = true;
    let sent = 0;
    const { engine, limits, metrics } = this.#deps;
    metrics.replays.inc();
    try {
      const room = Math.min(limits.replayBatch, limits.maxInFlight - (conn.sentSeq - conn.ackedSeq));
      const result = await this.#time('read', () => engine.read(this.sessionId, conn.sentSeq, room));
      if (!conn.live) return;
      if (result.epoch !== this.#epoch) {
        // The stream moved to a new epoch (this connection would have been dropped if
        // the actor had known before the read): its events are not this connection's.
        this.#resetEpoch(result);
        return;
      }
      if (result.firstSeq > conn.sentSeq + 1) {
        this.#drop(conn, CloseCodes.history_gone, 'history_gone');
        return;
      }
      conn.sink.cork(() => {
        for (const stored of result.events) {
          if (stored.seq !== conn.sentSeq + 1) continue; // already sent, or not contiguous
          // The same socket limit as live delivery: what does not fit is read again later.
          if (conn.sink.bufferedAmount() > limits.backpressureBytes) {
            this.#markSlow(conn);
            break;
          }
          const encoded =
            this.#recentReads.get(stored.seq) ??
            this.#recentReads.share(new EncodedEvent(stored, speaksMsgpack(conn)));
          conn.sink.send(encoded.bytes(conn.codec), conn.codec.binary);
          conn.sentSeq = stored.seq;
          sent++;
        }
        metrics.delivered += sent;
      });
      // The read may be how this actor learns that the stream ended (a notice of the
      // ending event already moved the head): then eos follows once the rest is sent.
      if (result.headSeq > this.#head || (result.endedAt !== undefined && this.#endSeq === undefined)) {
        this.#advanceHead(result);
      }
    } catch (err) {
      if (!conn.live) return;
      this.#warn({ sessionId: this.sessionId, err }, 'catch-up read failed');
      this.#drop(conn, TRY_AGAIN_LATER, 'unavailable');
      return;
    } finally {
      conn.reading = false;
    }
    if (sent === 0 && conn.sentSeq < this.#head && conn.live && !conn.slowTimer) {
      // Nothing after sentSeq came back though the head is past it: pumping now would
      // read again at once, and a memory engine answers within the same turn, so the
      // loop would starve every other connection. Try again a little later.
      this.#warn(
        { sessionId: this.sessionId, after: conn.sentSeq, head: this.#head },
        'catch-up read found no next event',
      );
      setTimeout(() => {
        if (this.#has(conn)) this.#pump(conn);
      }, GAP_FILL_RETRY_MS).unref();
      return;
    }
    this.#pump(conn);
  }

  #markSlow(conn: Connection): void {
    if (conn.slowTimer) return;
    conn.slowTimer = setTimeout(() => {
      conn.slowTimer = undefined;
      if (!this.#has(conn)) return;
      if (conn.sink.bufferedAmount() <= this.#deps.limits.backpressureBytes) return this.#pump(conn);
      this.#drop(conn, CloseCodes.slow_consumer, 'slow_consumer');
    }, this.#deps.limits.slowConsumerMs);
    conn.slowTimer.unref();
  }

  // ── bookkeeping ─────────────────────────────────────────────────────────────────

  /** A warning every session may raise at once for one cause: throttled (ActorDeps.warnings). */
  #warn(fields: object, msg: string): void {
    (this.#deps.warnings ?? this.#deps.logger).warn(fields, msg);
  }

  /** Whether `conn` is one of this actor's live connections. */
  #has(conn: Connection): boolean {
    return this.#bySubscriber.get(conn.subscriberId) === conn;
  }

  #forget(conn: Connection): void {
    if (this.#has(conn)) {
      this.#bySubscriber.delete(conn.subscriberId);
      if (speaksMsgpack(conn)) this.#msgpackSubscribers--;
    }
    if (this.#bySubscriber.size === 0) {
      this.#maybeStopWatching();
      this.#scheduleIdle();
    }
  }

  /**
   * The gateway ends a live connection: it leaves the actor, its last acks are written,
   * and its subscriber's resume window starts (the client may resume elsewhere).
   */
  #drop(conn: Connection, code: number, reason: string): void {
    this.#forget(conn);
    this.#closeConn(conn, code, reason);
    this.#writes.checkpoint(conn);
    this.#writes.release(conn.subscriberId, conn.generation);
  }

  #closeConn(conn: Connection, code: number, reason: string): void {
    this.#deps.metrics.closes.inc({ code: String(code) });
    conn.close(code, reason);
  }

  async #retainedStart(): Promise<number> {
    const page = await this.#time('read', () => this.#deps.engine.read(this.sessionId, 0, 1));
    return page.firstSeq - 1;
  }

  /**
   * Before the first connection attaches, start watching cross-node notices, then read
   * the head: appends other nodes made while nobody here was watching are then known.
   */
  async #prepareAttach(): Promise<void> {
    if (this.#watch) {
      await this.#watch.ready;
      return this.#ensureLoaded();
    }
    this.#watch = this.#deps.engine.watch(this.sessionId, this.#onNotice);
    this.#loaded = false;
    this.#loading = undefined;
    this.#noticeWhileLoading = undefined;
    // Subscribed first, then read: no change can fall between the two. On failure the
    // attach fails, and #busy stops the watch if nobody is left.
    await this.#watch.ready;
    await this.#ensureLoaded();
  }

  /**
   * Stops watching once no connection is here and no attach is under way: an attach in
   * flight must keep hearing of other nodes' takeovers.
   */
  #maybeStopWatching(): void {
    if (this.#bySubscriber.size === 0 && this.#attaching === 0) this.#stopWatching();
  }

  #stopWatching(): void {
    this.#watch?.stop();
    this.#watch = undefined;
    this.#noticedGenerations.clear();
  }

  /** A change made by some node (maybe this one): see ARCHITECTURE-NOTES decision 6. */
  readonly #onNotice = (notice: SessionNotice): void => {
    if (this.#stopped) return;
    switch (notice.kind) {
      case 'head':
        this.#heardAt = this.#deps.clock.now();
        if (!this.#loaded) {
          if (this.#loading && notice.headSeq > (this.#noticeWhileLoading?.headSeq ?? -1))
            this.#noticeWhileLoading = notice;
          return;
        }
        if (notice.epoch !== this.#epoch) return void this.#resync();
        if (notice.headSeq > this.#head) {
          if (this.#appends.appending) {
            if (notice.headSeq > this.#noticedHead) this.#noticedHead = notice.headSeq;
            return;
          }
          this.#remoteHead(notice.headSeq);
        }
        return;
      case 'takeover': {
        this.#noteGeneration(notice.subscriberId, notice.generation);
        const conn = this.#bySubscriber.get(notice.subscriberId);
        if (!conn || conn.generation >= notice.generation) return;
        // Another node resumed this subscriber: this connection is fenced in the engine
        // already; close it so the client stops talking to the wrong node.
        this.#forget(conn);
        this.#closeConn(conn, CloseCodes.superseded, 'superseded');
        this.#deps.metrics.resumes.inc({ outcome: 'superseded_remote' });
        return;
      }
      case 'resync':
        void this.#resync();
        return;
    }
  };

  #noteGeneration(subscriberId: string, generation: number): void {
    if ((this.#noticedGenerations.get(subscriberId) ?? 0) >= generation) return;
    this.#noticedGenerations.delete(subscriberId);
    this.#noticedGenerations.set(subscriberId, generation);
    // Bounded: the oldest entries are the least likely to matter.
    if (this.#noticedGenerations.size > MAX_NOTICED_GENERATIONS) {
      this.#noticedGenerations.delete(this.#noticedGenerations.keys().next().value!);
    }
  }

  /** Notices may have been missed: the stream is the truth, so read its head again. */
  async #resync(attempt = 0): Promise<void> {
    if (this.#stopped || !this.#watch) return;
    try {
      const seen = { epoch: this.#epoch, headSeq: this.#head };
      const head = await this.#time('head', () => this.#deps.engine.head(this.sessionId, seen));
      this.#heardAt = this.#deps.clock.now();
      if (head.epoch !== this.#epoch) {
        this.#resetEpoch(head);
        this.#advanceHead(head);
        return;
      }
      await this.#checkGenerations();
      if (head.headSeq > this.#head || (head.endedAt !== undefined && this.#endSeq === undefined)) {
        this.#head = Math.max(this.#head, head.headSeq);
        if (head.endedAt !== undefined) this.#endSeq = head.endedAt;
        void this.#fillGap();
      }
    } catch (err) {
      // The pub/sub connection can be back before the command connection is: keep trying,
      // or missed notices would stall this session until its next event.
      this.#warn({ sessionId: this.sessionId, err, attempt }, 'resync failed');
      const delay = Math.min(RESYNC_RETRY_MS * 2 ** attempt, RESYNC_RETRY_MAX_MS);
      setTimeout(() => void this.#resync(attempt + 1), delay).unref();
    }
  }

  /**
   * Whether HeadAudit should read this stream's head: the actor watches (it has local
   * connections), knows its head, and has heard nothing of it for `quietMs`. Busy
   * sessions are never due: their next notice carries every head a lost one announced.
   */
  auditDue(now: number, quietMs: number): boolean {
    return (
      this.#watch !== undefined &&
      this.#loaded &&
      !this.#stopped &&
      !this.#appends.appending &&
      !this.#filling &&
      now - this.#heardAt >= quietMs
    );
  }

  /**
   * What HeadAudit read of the stream's head (Engine.peekHeads): treated like a head
   * notice that arrived late. A head past ours is filled; an epoch that is not ours, or
   * no stream at all, is left to #resync, which asks the engine for the truth. A head
   * behind ours is a stale read (a notice overtook it), not news; so is no stream once
   * ours ended (its retention ran out: a resync would only start an empty one).
   */
  audited(peek: StreamHead | undefined): void {
    this.#heardAt = this.#deps.clock.now();
    if (this.#stopped || !this.#watch || !this.#loaded) return;
    if (peek === undefined && this.#endSeq !== undefined) return;
    if (peek === undefined || peek.epoch !== this.#epoch) {
      this.#deps.metrics.remoteNotices.inc({ kind: 'anti_entropy' });
      return void this.#resync();
    }
    const ended = peek.endedAt !== undefined && this.#endSeq === undefined;
    if (peek.headSeq <= this.#head && !ended) return;
    this.#deps.metrics.remoteNotices.inc({ kind: 'anti_entropy' });
    if (this.#appends.appending) {
      // the append's reply or #afterAppend brings the rest, as for a notice meanwhile
      if (peek.headSeq > this.#noticedHead) this.#noticedHead = peek.headSeq;
      return;
    }
    this.#head = Math.max(this.#head, peek.headSeq);
    if (ended) this.#endSeq = peek.endedAt;
    void this.#fillGap();
  }

  /**
   * Takeover notices may have been lost too: ask the engine whether each local
   * connection is still its subscriber's current one, and close the ones that are not.
   */
  async #checkGenerations(): Promise<void> {
    const conns = [...this.#bySubscriber.values()];
    const records = await Promise.all(
      conns.map((conn) =>
        this.#time('getSubscriber', () => this.#deps.engine.getSubscriber(this.sessionId, conn.subscriberId)),
      ),
    );
    conns.forEach((conn, i) => {
      const record = records[i];
      if (!this.#has(conn) || (record && record.generation <= conn.generation && !record.ended)) return;
      this.#forget(conn);
      this.#closeConn(conn, CloseCodes.superseded, 'superseded');
      this.#deps.metrics.resumes.inc({ outcome: 'superseded_remote' });
    });
  }

  /**
   * Events other nodes appended: read them once into the cache (encoded once, shared),
   * then fan out. One fill at a time; it loops until the cache reaches the head.
   */
  async #fillGap(): Promise<void> {
    if (this.#filling) return;
    if (this.#cache.capacity === 0) return this.#fanOut();
    this.#filling = true;
    const { engine, limits } = this.#deps;
    try {
      for (;;) {
        const from = this.#cache.lastSeq ?? this.#lowestCursor();
        if (from >= this.#head) break;
        const epoch = this.#epoch;
        const page = await this.#time('read', () => engine.read(this.sessionId, from, limits.replayBatch));
        // The actor moved to another epoch while this read was out: the page is stale.
        if (this.#epoch !== epoch) continue;
        if (page.epoch !== this.#epoch) {
          this.#resetEpoch(page);
          break;
        }
        const msgpack = this.#msgpackSubscribers > 0;
        for (const stored of page.events) this.#cache.push(new EncodedEvent(stored, msgpack));
        this.#deps.metrics.gapFills.inc();
        if (page.headSeq > this.#head) this.#head = page.headSeq;
        if (page.endedAt !== undefined) this.#endSeq = page.endedAt;
        this.#fanOut();
        if (page.events.length === 0) break;
      }
    } catch (err) {
      this.#warn({ sessionId: this.sessionId, err }, 'gap fill failed');
      // Connections waiting on it would otherwise wait for the next event or ack.
      setTimeout(() => void this.#fillGap(), GAP_FILL_RETRY_MS).unref();
    } finally {
      this.#filling = false;
    }
  }

  /** Where a gap fill with an empty cache starts: the furthest-behind live cursor. */
  #lowestCursor(): number {
    let lowest = this.#head;
    for (const conn of this.#bySubscriber.values()) if (conn.sentSeq < lowest) lowest = conn.sentSeq;
    return lowest;
  }

  #ensureLoaded(): Promise<void> {
    if (this.#loaded) return Promise.resolve();
    // An actor that stopped watching (its last connection left) keeps its cache and
    // position. It tells the engine how far it had seen, so a head rolled back under the
    // same epoch moves the stream to a new one, and a new epoch empties the cache: the
    // cached events belong to the old stream and must never be sent under the new epoch.
    const seen = this.#epoch === '' ? undefined : { epoch: this.#epoch, headSeq: this.#head };
    this.#loading ??= this.#time('head', () => this.#deps.engine.head(this.sessionId, seen)).then(
      (head) => {
        if (this.#epoch !== '' && head.epoch !== this.#epoch) this.#resetEpoch(head);
        this.#epoch = head.epoch;
        // Never back within an epoch: an append's reply, or an earlier load's notice, may
        // have moved the head past what this read saw (a publish's first flush loads the
        // head too, and a first attach starts a second load while that one is out).
        if (head.headSeq > this.#head) this.#head = head.headSeq;
        if (head.endedAt !== undefined) this.#endSeq = head.endedAt;
        this.#loaded = true;
        this.#heardAt = this.#deps.clock.now();
        const early = this.#noticeWhileLoading;
        this.#noticeWhileLoading = undefined;
        if (early) {
          if (early.epoch === this.#epoch && early.headSeq > this.#head)
            this.#deps.metrics.remoteNotices.inc({ kind: 'head_during_load' });
          this.#onNotice(early);
        }
      },
      (err: unknown) => {
        this.#loading = undefined;
        // The next read is made after it: it covers what the notice announced.
        this.#noticeWhileLoading = undefined;
        throw err;
      },
    );
    return this.#loading;
  }

  /** The engine lost this stream's history: nobody's position means anything any more. */
  #resetEpoch(head: StreamHead): void {
    this.#deps.logger.warn({ sessionId: this.sessionId, from: this.#epoch, to: head.epoch }, 'epoch changed');
    this.#deps.metrics.epochChanges.inc();
    this.#epoch = head.epoch;
    this.#head = 0;
    this.#noticedHead = 0;
    this.#endSeq = head.endedAt;
    this.#cache.clear();
    this.#recentReads.clear();
    // Lost with the history, perhaps: the next hello reads the record (it may be gone too).
    this.#access = undefined;
    for (const conn of [...this.#bySubscriber.values()]) {
      this.#drop(conn, CloseCodes.history_gone, 'history_gone');
    }
  }

  #scheduleIdle(): void {
    if (this.#stopped || this.#idleTimer || this.#bySubscriber.size > 0 || this.#appends.queued > 0) return;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      if (
        this.#bySubscriber.size === 0 &&
        this.#appends.queued === 0 &&
        !this.#appends.appending &&
        this.#attaching === 0
      ) {
        // its events would otherwise stay until the node's budget came round to them
        this.#cache.clear();
        this.#recentReads.clear();
        this.#deps.onIdle(this);
      } else {
        this.#scheduleIdle();
      }
    }, this.#deps.limits.idleMs);
    this.#idleTimer.unref();
  }

  #cancelIdle(): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  /**
   * Closes every connection with `code` (1001 when draining) and stops timers. `pace` is
   * asked after each close and may return a promise to wait for first: the registry's
   * drain lets the loop turn between slices of closes (ActorRegistry.stopAll).
   */
  async stop(code: number, reason: string, pace?: () => Promise<void> | undefined): Promise<void> {
    this.#stopped = true;
    this.#cancelIdle();
    for (const conn of [...this.#bySubscriber.values()]) {
      // It may have gone on its own while the loop turned.
      if (!this.#has(conn)) continue;
      this.#drop(conn, code, reason);
      const turn = pace?.();
      if (turn) await turn;
    }
    this.#cancelIdle();
  }

  /** Resolves when queued publishes and operations are done (for shutdown). */
  async settle(): Promise<void> {
    await this.#resumes?.drain();
    while (this.#appends.queued > 0 || this.#appends.appending) {
      await new Promise((r) => setImmediate(r));
    }
    await this.#writes.settle();
  }

  /** Counts an attach as work under way; afterwards, stop watching if nobody is left. */
  #busy(op: () => Promise<void>): Promise<void> {
    this.#attaching++;
    const done = op().finally(() => this.#attaching--);
    void done.then(
      () => this.#maybeStopWatching(),
      () => this.#maybeStopWatching(),
    );
    return done;
  }

  #time<T>(op: string, call: () => Promise<T>): Promise<T> {
    return this.#deps.metrics.time(op, call);
  }
}
