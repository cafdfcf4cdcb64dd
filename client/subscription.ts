import { backoffDelay, type BackoffOptions } from './backoff.ts';
import { closeAction } from './close-action.ts';
import type { Codec } from './codec.ts';
import { Conn, type SocketLike, type Timer } from './conn.ts';
import { Emitter } from './emitter.ts';
import { ConnectionRefusedError, HistoryGoneError, LifeosClientError, ServerError } from './errors.ts';
import { PublishOutbox } from './outbox.ts';
import {
  checkServerFrame,
  CloseCodes,
  type ClientFrame,
  type EventPayload,
  type EventType,
  type HelloFrame,
  type ServerFrame,
  type WelcomeFrame,
} from './protocol.ts';
import type { Checkpoint, CheckpointStorage } from './storage.ts';
import type {
  DeliveredEvent,
  PublishOptions,
  PublishResult,
  SubscribeOptions,
  Subscription,
  SubscriptionEvents,
  SubscriptionListeners,
  SubscriptionState,
  SubscriptionStats,
  WebSocketConstructor,
} from './types.ts';

/** Everything a subscription takes from its client, resolved to concrete values. */
export interface Runtime {
  url: string;
  codec: Codec;
  storage: CheckpointStorage;
  backoff: BackoffOptions;
  heartbeatMissed: number;
  ackEvery: number;
  ackIntervalMs: number;
  outboxMax: number;
  WebSocket: WebSocketConstructor;
  connectTimeoutMs: number;
  probeTimeoutMs: number;
  random: () => number;
  log: (msg: string, fields: Record<string, unknown>) => void;
  /** The JWT; `force` skips the cache (after a 4001). */
  token(force: boolean): Promise<string>;
  /** True while the browser says it is offline. */
  isOffline(): boolean;
  onClosed(sub: SubscriptionImpl): void;
}

/** How many 4001 closes in a row (no welcome between) before the subscription stops. */
const MAX_AUTH_FAILURES = 3;

/**
 * One subscription: one WebSocket at a time, reconnected and resumed until it is closed.
 *
 * Positions, all seqs of the session's stream:
 * - `#lastSeq`: the last event handed to the application (its listener returned);
 * - `#savedSeq`: the last one whose checkpoint storage accepted: acks never go beyond it;
 * - `#highest`: the last one queued or processed: an `ev` at or below it is a duplicate.
 *   `#savedSeq ≤ #lastSeq ≤ #highest`.
 *
 * Invariants: events reach the application one at a time in seq order, each once (an ev
 * with seq ≤ #highest is dropped, one above #highest + 1 is a gap and drops the
 * connection); an ack never exceeds #savedSeq nor what this connection delivered; the
 * event queue holds at most what the gateway may have in flight (its maxInFlight), and a
 * gateway that sends more is dropped.
 */
export class SubscriptionImpl implements Subscription {
  readonly sessionId: string;
  readonly key: string;
  readonly #rt: Runtime;
  readonly #after: number | 'latest';
  readonly #emitter: Emitter<SubscriptionEvents>;
  readonly #ready: Promise<void>;

  #state: SubscriptionState = 'connecting';
  #conn: Conn | undefined;
  /** Bumped for every connect attempt and on close: a stale async step sees it changed. */
  #gen = 0;
  #retryTimer: Timer | undefined;
  #attempt = 0;
  #socketsOpened = 0;
  #forceToken = false;
  #authFailures = 0;
  #historyGoneStreak = 0;

  #lastSeq: number | undefined;
  #savedSeq = 0;
  #highest: number | undefined;
  #epoch: string | undefined;
  #resumeToken: string | undefined;
  #subscriberId: string | undefined;
  #headKnown = 0;
  #eosSeq: number | undefined;
  /** A `replayed` waiting for the application to have every event up to its seq. */
  #replayedSeq: number | undefined;

  readonly #queue: DeliveredEvent[] = [];
  #queueMax = 1024;
  #pumpActive = false;
  #pumpDone: Promise<void> = Promise.resolve();
  /** Inside an `event` listener: a close() from there cannot wait for the pump (it waits for the listener). */
  #inListener = false;
  /** Closed with `bye`: the checkpoint is deleted, and the pump must not write it again. */
  #byed = false;
  readonly #outbox: PublishOutbox;
  #storageChain: Promise<void> = Promise.resolve();

  #closing = false;
  #closePromise: Promise<void> | undefined;
  /**
   * Closed with 4009: another client (a tab sharing this storage) resumed the subscriber
   * and owns the checkpoint from then on; this one never writes or deletes it again.
   */
  #superseded = false;

  readonly #stats = {
    reconnects: 0,
    resumes: 0,
    freshStarts: 0,
    duplicatesDropped: 0,
    delivered: 0,
    acksSent: 0,
  };

  constructor(rt: Runtime, sessionId: string, options: SubscribeOptions = {}) {
    this.#rt = rt;
    this.sessionId = sessionId;
    this.key = options.key ?? sessionId;
    this.#after = options.after ?? 'latest';
    this.#outbox = new PublishOutbox({
      max: rt.outboxMax,
      backoff: rt.backoff,
      random: rt.random,
      live: () => (this.#closing ? undefined : this.#conn),
      send: (conn, frame) => this.#send(conn, frame),
    });
    this.#emitter = new Emitter<SubscriptionEvents>((err, name) => {
      if (name !== 'error')
        this.#error(new LifeosClientError('handler_failed', `${name} listener threw`, { cause: err }));
    });
    // Started on a later turn, so listeners added right after subscribe() see everything.
    this.#ready = Promise.resolve().then(() => this.#start());
  }

  // ── public surface ──────────────────────────────────────────────────────────────────

  get state(): SubscriptionState {
    return this.#state;
  }

  get stats(): SubscriptionStats {
    const lastSeq = this.#lastSeq ?? 0;
    return { ...this.#stats, lastSeq, lag: Math.max(0, this.#headKnown - lastSeq) };
  }

  on<K extends keyof SubscriptionListeners>(name: K, listener: SubscriptionListeners[K]): () => void {
    return this.#emitter.on(name, listener as (value: SubscriptionEvents[K]) => unknown);
  }

  publish<T extends EventType>(
    type: T,
    payload: EventPayload<T>,
    options: PublishOptions = {},
  ): Promise<PublishResult> {
    if (this.#closing) return Promise.reject(new LifeosClientError('closed', 'subscription is closed'));
    return this.#outbox.add(type, payload, options);
  }

  close(options: { bye?: boolean } = {}): Promise<void> {
    this.#closePromise ??= this.#close(options.bye === true);
    return this.#closePromise;
  }

  // ── browser integration (called by the client) ──────────────────────────────────────

  /** The browser went offline: drop the socket, wait for `online`. */
  goOffline(): void {
    if (this.#closing) return;
    this.#rt.log('offline', { sessionId: this.sessionId });
    this.#gen++;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (this.#conn) this.#abandon(this.#conn);
    this.#setState('offline');
  }

  /** The browser is back online: reconnect now. */
  goOnline(): void {
    if (this.#closing || this.#state !== 'offline') return;
    this.#attempt = 0;
    this.#open();
  }

  /** The page became visible: a live connection must answer a ping soon; a waiting retry runs now. */
  checkLiveness(): void {
    if (this.#closing) return;
    const conn = this.#conn;
    if (conn?.welcome) {
      const since = Date.now();
      this.#send(conn, { op: 'ping', n: ++conn.pings });
      conn.lastPingAt = since;
      clearTimeout(conn.probeTimer);
      conn.probeTimer = setTimeout(() => {
        conn.probeTimer = undefined;
        if (conn.lastFrameAt < since) this.#drop(conn, 'no answer after the page became visible');
      }, this.#rt.probeTimeoutMs);
    } else if (this.#retryTimer !== undefined) {
      this.#attempt = 0;
      this.#open();
    }
  }

  // ── connecting ─────────────────────────────────────────────────────────────────────

  async #start(): Promise<void> {
    let cp: Checkpoint | undefined;
    try {
      cp = await this.#rt.storage.get(this.key);
    } catch (err) {
      this.#error(new LifeosClientError('storage_failed', 'reading the checkpoint failed', { cause: err }));
    }
    if (this.#closing) return;
    if (cp && cp.sessionId === this.sessionId && Number.isSafeInteger(cp.lastSeq) && cp.lastSeq >= 0) {
      this.#lastSeq = this.#highest = this.#savedSeq = cp.lastSeq;
      this.#epoch = cp.epoch;
      this.#resumeToken = cp.resumeToken;
      this.#subscriberId = cp.subscriberId;
      this.#rt.log('checkpoint loaded', {
        sessionId: this.sessionId,
        lastSeq: cp.lastSeq,
        resume: !!cp.resumeToken,
      });
    }
    this.#open();
  }

  #open(): void {
    if (this.#closing) return;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (this.#rt.isOffline()) {
      this.#setState('offline');
      return;
    }
    const gen = ++this.#gen;
    const resume = this.#resumeToken !== undefined;
    this.#setState(resume ? 'resuming' : 'connecting');
    void this.#openSocket(gen, resume);
  }

  async #openSocket(gen: number, resume: boolean): Promise<void> {
    let hello: HelloFrame;
    if (resume) {
      const r: NonNullable<HelloFrame['resume']> = { token: this.#resumeToken! };
      if (this.#lastSeq !== undefined) r.lastSeq = this.#lastSeq;
      if (this.#epoch !== undefined) r.epoch = this.#epoch;
      hello = { op: 'hello', sessionId: this.sessionId, resume: r };
    } else {
      let token: string;
      try {
        token = await this.#rt.token(this.#forceToken);
        this.#forceToken = false;
      } catch (err) {
        if (gen !== this.#gen) return;
        this.#error(
          err instanceof LifeosClientError
            ? err
            : new LifeosClientError('token_failed', 'the token provider failed', { cause: err }),
        );
        this.#scheduleRetry();
        return;
      }
      if (gen !== this.#gen || this.#closing) return;
      hello = { op: 'hello', sessionId: this.sessionId, token, after: this.#lastSeq ?? this.#after };
    }

    let ws: SocketLike;
    try {
      ws = new this.#rt.WebSocket(this.#rt.url, [this.#rt.codec.protocol]) as SocketLike;
    } catch (err) {
      this.#error(new LifeosClientError('protocol_error', 'could not open a WebSocket', { cause: err }));
      this.#scheduleRetry();
      return;
    }
    if (this.#socketsOpened++ > 0) this.#stats.reconnects++;
    const conn = new Conn(ws, resume ? 'resume' : 'fresh');
    this.#conn = conn;
    this.#rt.log('connecting', { sessionId: this.sessionId, mode: conn.mode, lastSeq: this.#lastSeq });
    ws.binaryType = 'arraybuffer';
    conn.connectTimer = setTimeout(() => this.#drop(conn, 'no welcome in time'), this.#rt.connectTimeoutMs);
    ws.onopen = () => {
      if (this.#conn !== conn) return;
      if (ws.protocol !== this.#rt.codec.protocol) {
        this.#error(new LifeosClientError('protocol_error', `gateway chose subprotocol "${ws.protocol}"`));
        this.#drop(conn, 'wrong subprotocol');
        return;
      }
      this.#send(conn, hello);
    };
    ws.onmessage = (ev) => this.#onMessage(conn, ev.data);
    ws.onclose = (ev) => {
      conn.markClosed();
      if (this.#conn === conn) this.#onClose(conn, ev.code, ev.reason);
    };
    ws.onerror = () => {}; // a close event follows
  }

  #send(conn: Conn, frame: ClientFrame): void {
    try {
      conn.ws.send(this.#rt.codec.encode(frame));
      conn.lastSentAt = Date.now();
    } catch {
      // The socket is closing; its close event decides what happens next.
    }
  }

  #scheduleRetry(): void {
    if (this.#closing) return;
    if (this.#rt.isOffline()) {
      this.#setState('offline');
      return;
    }
    this.#setState(this.#resumeToken !== undefined ? 'resuming' : 'connecting');
    const delay = backoffDelay(this.#attempt++, this.#rt.backoff, this.#rt.random);
    this.#rt.log('retry', { sessionId: this.sessionId, delay, attempt: this.#attempt });
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => this.#open(), delay);
  }

  // ── frames ────────────────────────────────────────────────────────────────────────

  #onMessage(conn: Conn, data: unknown): void {
    if (this.#conn !== conn) return;
    conn.lastFrameAt = Date.now();
    let checked: ReturnType<typeof checkServerFrame>;
    try {
      checked = checkServerFrame(this.#rt.codec.decode(data));
    } catch {
      checked = undefined;
    }
    if (!checked) {
      this.#error(new LifeosClientError('protocol_error', 'undecodable frame from the gateway'));
      this.#drop(conn, 'bad frame');
      return;
    }
    const frame = checked as ServerFrame;
    switch (frame.op) {
      case 'welcome':
        return this.#onWelcome(conn, frame);
      case 'ev':
        if (!conn.welcome) return this.#drop(conn, 'ev before welcome');
        return this.#onEvent(conn, { seq: frame.seq, event: frame.event });
      case 'replayed':
        this.#headKnown = Math.max(this.#headKnown, frame.seq);
        // Told to the application once it has every event up to seq, as eos is: the
        // catch-up's events may still be queued for its listeners.
        this.#replayedSeq = Math.max(this.#replayedSeq ?? 0, frame.seq);
        this.#emitReplayed();
        return;
      case 'puback':
        return this.#outbox.puback(conn, frame.id, frame.seq);
      case 'nack':
        return this.#outbox.nack(conn, frame.id, frame.code, frame.message, frame.retryable === true);
      case 'pong':
        return;
      case 'error':
        this.#error(new ServerError(frame.code, frame.message, frame.retryable === true));
        return;
      case 'eos':
        this.#eosSeq = frame.seq;
        this.#headKnown = Math.max(this.#headKnown, frame.seq);
        this.#pump();
        return;
      default:
        return; // an op this SDK does not know: ignored
    }
  }

  #onWelcome(conn: Conn, w: WelcomeFrame): void {
    if (this.#closing) return;
    if (conn.welcome) return this.#drop(conn, 'second welcome');
    clearTimeout(conn.connectTimer);
    conn.connectTimer = undefined;
    conn.welcome = w;
    conn.maxReceived = conn.acked = w.after;
    this.#attempt = 0;
    this.#authFailures = 0;
    this.#historyGoneStreak = 0;
    if (w.resumed) this.#stats.resumes++;
    else this.#stats.freshStarts++;
    this.#resumeToken = w.resumeToken;
    this.#epoch = w.epoch;
    this.#subscriberId = w.subscriberId;
    this.#headKnown = Math.max(this.#headKnown, w.headSeq);
    // At most maxInFlight unacked events per connection, plus what an earlier one left queued.
    this.#queueMax = 2 * Math.max(1, w.maxInFlight) + 64;
    if (this.#lastSeq === undefined) {
      this.#lastSeq = this.#highest = this.#savedSeq = w.after;
    } else if (w.after > (this.#highest ?? 0)) {
      // The gateway starts later than we asked: events were skipped. Never expected.
      this.#error(
        new LifeosClientError(
          'protocol_error',
          `welcome starts after ${w.after} but seq ${this.#highest ?? 0} was the last one received`,
        ),
      );
      this.#lastSeq = this.#highest = this.#savedSeq = w.after;
    }
    this.#rt.log('welcome', {
      sessionId: this.sessionId,
      resumed: w.resumed,
      after: w.after,
      headSeq: w.headSeq,
      subscriberId: w.subscriberId,
    });
    void this.#saveCheckpoint();
    this.#setState('live');
    const hb = Math.max(100, w.heartbeatMs);
    conn.heartbeatTimer = setInterval(() => this.#heartbeat(conn, hb), Math.min(hb / 2, 1000));
    this.#outbox.resend();
  }

  #heartbeat(conn: Conn, hb: number): void {
    const now = Date.now();
    if (now - conn.lastFrameAt > this.#rt.heartbeatMissed * hb) {
      this.#drop(conn, 'heartbeat missed');
      return;
    }
    const half = hb / 2;
    if (now - conn.lastPingAt >= half && (now - conn.lastFrameAt >= half || now - conn.lastSentAt >= half)) {
      conn.lastPingAt = now;
      this.#send(conn, { op: 'ping', n: ++conn.pings });
    }
  }

  #onEvent(conn: Conn, ev: DeliveredEvent): void {
    conn.maxReceived = Math.max(conn.maxReceived, ev.seq);
    this.#headKnown = Math.max(this.#headKnown, ev.seq);
    const highest = this.#highest ?? 0;
    if (ev.seq <= highest) {
      this.#stats.duplicatesDropped++;
      this.#maybeAck(conn);
      return;
    }
    if (ev.seq !== highest + 1) {
      this.#error(new LifeosClientError('protocol_error', `seq gap: got ${ev.seq} after ${highest}`));
      this.#drop(conn, 'seq gap');
      return;
    }
    if (this.#queue.length >= this.#queueMax) {
      this.#error(new LifeosClientError('protocol_error', 'the gateway sent more than its in-flight limit'));
      this.#drop(conn, 'event queue full');
      return;
    }
    this.#queue.push(ev);
    this.#highest = ev.seq;
    this.#pump();
  }

  // ── delivery, checkpoints and acks ──────────────────────────────────────────────────

  #pump(): void {
    if (this.#pumpActive) return;
    this.#pumpActive = true;
    this.#pumpDone = this.#runPump();
  }

  async #runPump(): Promise<void> {
    try {
      while (!this.#closing && this.#queue.length > 0) {
        const ev = this.#queue.shift()!;
        for (const listener of this.#emitter.listeners('event')) {
          this.#inListener = true;
          try {
            await (listener as SubscriptionListeners['event'])(ev);
          } catch (err) {
            this.#error(
              new LifeosClientError('handler_failed', `event listener failed on seq ${ev.seq}`, {
                cause: err,
              }),
            );
          } finally {
            this.#inListener = false;
          }
        }
        this.#stats.delivered++;
        this.#lastSeq = ev.seq;
        if (this.#byed) break;
        await this.#saveCheckpoint();
        this.#savedSeq = Math.max(this.#savedSeq, ev.seq);
        if (this.#conn) this.#maybeAck(this.#conn);
        this.#emitReplayed();
      }
    } finally {
      this.#pumpActive = false;
    }
    if (!this.#closing && this.#eosSeq !== undefined && (this.#lastSeq ?? 0) >= this.#eosSeq) {
      const seq = this.#eosSeq;
      this.#rt.log('eos', { sessionId: this.sessionId, seq });
      this.#emitter.emit('eos', { seq });
      this.#shutdown('the session ended');
    }
  }

  #emitReplayed(): void {
    const seq = this.#replayedSeq;
    if (seq === undefined || this.#closing || (this.#lastSeq ?? 0) < seq) return;
    this.#replayedSeq = undefined;
    this.#emitter.emit('replayed', { seq });
  }

  #checkpoint(): Checkpoint {
    const cp: Checkpoint = { sessionId: this.sessionId, lastSeq: this.#lastSeq ?? 0, updatedAt: Date.now() };
    if (this.#epoch !== undefined) cp.epoch = this.#epoch;
    if (this.#resumeToken !== undefined) cp.resumeToken = this.#resumeToken;
    if (this.#subscriberId !== undefined) cp.subscriberId = this.#subscriberId;
    return cp;
  }

  /** Storage calls for this subscription run one after another. */
  #storage(op: () => void | Promise<void>, what: string): Promise<void> {
    const next = this.#storageChain.then(op).catch((err: unknown) => {
      this.#error(new LifeosClientError('storage_failed', `${what} failed`, { cause: err }));
    });
    this.#storageChain = next;
    return next;
  }

  #saveCheckpoint(): Promise<void> {
    const cp = this.#checkpoint();
    // Checked when the write runs: one queued before a 4009 would still undo the survivor's.
    return this.#storage(
      () => (this.#superseded ? undefined : this.#rt.storage.set(this.key, cp)),
      'saving the checkpoint',
    );
  }

  /**
   * Acks up to what is both saved and delivered on this connection: at once when
   * `acks.every` are pending (or half the gateway's in-flight window, whichever is
   * smaller, so the gateway never pauses), else after `acks.intervalMs`.
   */
  #maybeAck(conn: Conn): void {
    if (!conn.welcome || conn !== this.#conn) return;
    const ackable = Math.min(this.#savedSeq, conn.maxReceived);
    const pending = ackable - conn.acked;
    if (pending <= 0) return;
    const threshold = Math.max(1, Math.min(this.#rt.ackEvery, Math.floor(conn.welcome.maxInFlight / 2)));
    if (pending >= threshold) this.#flushAck(conn);
    else
      conn.ackTimer ??= setTimeout(() => {
        conn.ackTimer = undefined;
        this.#flushAck(conn);
      }, this.#rt.ackIntervalMs);
  }

  #flushAck(conn: Conn): void {
    clearTimeout(conn.ackTimer);
    conn.ackTimer = undefined;
    if (!conn.welcome || conn !== this.#conn) return;
    const seq = Math.min(this.#savedSeq, conn.maxReceived);
    if (seq <= conn.acked) return;
    conn.acked = seq;
    this.#stats.acksSent++;
    this.#send(conn, { op: 'ack', seq });
  }

  // ── losing a connection ───────────────────────────────────────────────────────────

  /**
   * Forgets a connection: timers and handlers off, socket closed: with a close frame when
   * `graceful`, else at once (`terminate()` where the WebSocket has it), since a dead
   * peer never answers a close frame.
   */
  #abandon(conn: Conn, graceful = false): void {
    conn.clearTimers();
    if (this.#conn === conn) this.#conn = undefined;
    const ws = conn.ws;
    ws.onopen = ws.onmessage = null;
    // `ws` emits an error when a handshake in progress is aborted: keep a listener.
    ws.onerror = () => {};
    ws.onclose = () => conn.markClosed();
    try {
      if (!graceful && ws.terminate) ws.terminate();
      else ws.close(1000);
    } catch {
      // already closed
    }
    conn.markClosed();
  }

  /** The SDK decided this connection is dead: drop it and resume as after a network loss. */
  #drop(conn: Conn, why: string): void {
    if (this.#conn !== conn) return;
    this.#rt.log('drop', { sessionId: this.sessionId, why });
    this.#abandon(conn);
    this.#afterClose(CloseCodes.abnormal, why);
  }

  #onClose(conn: Conn, code: number, reason: string): void {
    this.#rt.log('closed', { sessionId: this.sessionId, code, reason });
    conn.clearTimers();
    this.#conn = undefined;
    this.#afterClose(code, reason);
  }

  #afterClose(code: number, reason: string): void {
    if (this.#closing) return;
    // After eos the pump ends the subscription once the last event is handled (the
    // gateway closes with 1000 right after eos).
    if (this.#eosSeq !== undefined && (this.#highest ?? 0) >= this.#eosSeq) return;
    switch (closeAction(code)) {
      case 'resume':
        return this.#scheduleRetry();
      case 'fresh':
        this.#resumeToken = undefined;
        void this.#saveCheckpoint();
        return this.#scheduleRetry();
      case 'reauth':
        if (++this.#authFailures >= MAX_AUTH_FAILURES) {
          return this.#stop(new ConnectionRefusedError(code, reason));
        }
        this.#forceToken = true;
        this.#resumeToken = undefined;
        void this.#saveCheckpoint();
        return this.#scheduleRetry();
      case 'history_gone':
        this.#error(new HistoryGoneError(this.#lastSeq, this.#epoch, reason));
        if (++this.#historyGoneStreak >= 2) return this.#stop(undefined);
        this.#resumeToken = undefined;
        this.#epoch = undefined;
        void this.#saveCheckpoint();
        return this.#scheduleRetry();
      case 'stop':
        if (code === CloseCodes.superseded) this.#superseded = true;
        return this.#stop(code === CloseCodes.normal ? undefined : new ConnectionRefusedError(code, reason));
    }
  }

  #stop(err: LifeosClientError | undefined): void {
    if (err) this.#error(err);
    this.#shutdown(err ? err.message : 'the gateway closed the connection');
  }

  /** Ends the subscription: no more connections, deliveries or retries. */
  #shutdown(why: string): void {
    if (this.#state === 'closed') return;
    this.#closing = true;
    this.#gen++;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (this.#conn) this.#abandon(this.#conn, true);
    this.#outbox.rejectAll(why);
    this.#queue.length = 0;
    this.#setState('closed');
    this.#rt.onClosed(this);
  }

  async #close(bye: boolean): Promise<void> {
    await this.#ready;
    // No more deliveries, reconnects or welcomes from here on.
    this.#closing = true;
    clearTimeout(this.#retryTimer);
    this.#byed = bye;
    // The event being handled right now finishes and is checkpointed; later ones are not
    // delivered. Called from an event listener, close cannot wait for that event (the
    // pump waits for the listener, which waits for close): the pump checkpoints it once
    // the listener returns, unless this is a bye.
    if (!this.#inListener) await this.#pumpDone;
    const conn = this.#conn;
    let byeSent = false;
    if (conn?.welcome && this.#state !== 'closed') {
      // What the application processed is acknowledged before the socket goes.
      this.#flushAck(conn);
      if (bye) {
        this.#send(conn, { op: 'bye' });
        byeSent = true;
        // The gateway closes after `bye` (1000): from then on the resume token is dead.
        let timer: Timer | undefined;
        await Promise.race([conn.closed, new Promise<void>((r) => (timer = setTimeout(r, 2000)))]);
        clearTimeout(timer);
      }
    }
    const wasOpen = this.#state !== 'closed';
    this.#shutdown('closed by the application');
    // Between connections (resuming, offline): the subscriber and its resume token still
    // live on the gateway, so `bye` goes over a connection of its own.
    if (bye && !byeSent && wasOpen && this.#resumeToken !== undefined && !this.#superseded) {
      if (!(await this.#byeAlone())) {
        this.#error(
          new LifeosClientError(
            'bye_failed',
            'bye could not reach the gateway: the subscriber ends when its resume window passes',
          ),
        );
      }
    }
    await this.#storageChain;
    // A superseded subscription's checkpoint belongs to the client that took over.
    if (bye && !this.#superseded) {
      await this.#storage(() => this.#rt.storage.delete(this.key), 'deleting the checkpoint');
    }
  }

  /**
   * Resumes the subscriber on a socket of its own only to send `bye`. True once the
   * gateway closed after it, or answered that the subscriber or session is gone already;
   * false when it could not be reached within connectTimeoutMs.
   */
  #byeAlone(): Promise<boolean> {
    const resume: NonNullable<HelloFrame['resume']> = { token: this.#resumeToken! };
    if (this.#lastSeq !== undefined) resume.lastSeq = this.#lastSeq;
    if (this.#epoch !== undefined) resume.epoch = this.#epoch;
    const codec = this.#rt.codec;
    let ws: SocketLike;
    try {
      ws = new this.#rt.WebSocket(this.#rt.url, [codec.protocol]) as SocketLike;
    } catch {
      return Promise.resolve(false);
    }
    ws.binaryType = 'arraybuffer';
    return new Promise<boolean>((resolve) => {
      let sent = false;
      let done = false;
      const finish = (ok: boolean): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        ws.onopen = ws.onmessage = ws.onclose = null;
        try {
          ws.close(1000);
        } catch {
          // already closed
        }
        resolve(ok);
      };
      const timer = setTimeout(() => finish(sent), this.#rt.connectTimeoutMs);
      const send = (frame: ClientFrame): void => {
        try {
          ws.send(codec.encode(frame));
        } catch {
          finish(false);
        }
      };
      ws.onopen = () => send({ op: 'hello', sessionId: this.sessionId, resume });
      ws.onmessage = (ev) => {
        let frame: ReturnType<typeof checkServerFrame>;
        try {
          frame = checkServerFrame(codec.decode(ev.data));
        } catch {
          frame = undefined;
        }
        if (frame?.op !== 'welcome' || sent) return;
        sent = true;
        send({ op: 'bye' });
      };
      // 4010: the subscriber is gone already; 4004: the session is.
      ws.onclose = (ev) => finish(sent || ev.code === 4010 || ev.code === 4004);
      ws.onerror = () => {};
    });
  }

  // ── state and errors ──────────────────────────────────────────────────────────────

  #setState(next: SubscriptionState): void {
    if (this.#state === next || this.#state === 'closed') return;
    this.#rt.log('state', { sessionId: this.sessionId, from: this.#state, to: next });
    this.#state = next;
    this.#emitter.emit('state', next);
  }

  #error(err: LifeosClientError): void {
    this.#rt.log('error', { sessionId: this.sessionId, code: err.code, message: err.message });
    this.#emitter.emit('error', err);
  }
}
