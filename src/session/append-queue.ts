import type { AppendOutcome, AppendResult, Engine, SeenPosition } from '../engine/engine.ts';
import type { Envelope } from '../protocol/envelope.ts';
import { GatewayError, toGatewayError } from '../errors/gateway-error.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Connection } from './connection.ts';
import { actorTicks } from '../util/next-tick-tasks.ts';

/** One publish waiting for its append. */
export interface PendingPublish {
  event: Envelope;
  /**
   * A `pub` frame's connection: the actor answers it there itself (puback or nack), the
   * puback in the same corked write as the events that connection is sent next.
   * Undefined for HTTP ingest and server-side producers, which get resolve/reject.
   */
  from: Connection | undefined;
  resolve(outcome: AppendOutcome): void;
  reject(err: GatewayError): void;
}

/**
 * What the queue needs of its owner, the session actor. One host serves every actor (it
 * is told which), so an actor costs no closures for it: a host of six closures per actor
 * was about half a KB of heap per actor as bundled, 2 KB under tsx
 * (bench/tools/actor-heap.ts). Each hook is called once per append, never per event.
 */
export interface AppendHost<O> {
  /** Undefined once the actor knows its stream's head; else the read that learns it. */
  loading(owner: O): Promise<void> | undefined;
  /** Whether the stream has ended (the append is then refused, `session_ended`). */
  ended(owner: O): boolean;
  /** How far the actor has seen the stream, told to the engine with the append. */
  seen(owner: O): SeenPosition;
  /** The append is stored: cache, answer and fan out. May throw (the batch is then refused). */
  applied(owner: O, batch: readonly PendingPublish[], result: AppendResult): void;
  /** The append was refused, and every publish of it answered with `error`. */
  failed(owner: O, batch: readonly PendingPublish[], error: GatewayError): void;
  /** The append settled, either way; `queued` publishes wait for the next one. */
  settled(owner: O, queued: number): void;
}

export interface AppendQueueDeps {
  engine: Engine;
  metrics: Metrics;
  logger: Logger;
}

/** Most events one engine append carries; the rest wait for the next tick. */
const MAX_APPEND_BATCH = 512;

/** No append out: #batch's value then (never pushed to). */
const NO_BATCH: PendingPublish[] = [];

function noop(): void {}

/** Answers a `pub` frame that was not stored, on its connection. */
export function nack(conn: Connection, id: string, error: GatewayError): void {
  conn.pendingPubs--;
  conn.sendFrame({ op: 'nack', id, code: error.code, message: error.message, retryable: error.retryable });
}

/**
 * A session's publishes on their way to the engine. Publishes arriving in one tick go as
 * one append; one append is out at a time, so results, and the fan-out, come back in seq
 * order. The actor decides what is refused before it queues (ended, overloaded) and what
 * a stored append means (SessionActor#applyAppend).
 *
 * Once the actor is loaded an append makes no closure and no async frame: its batch and
 * start time live on the queue and the reply comes back to two bound handlers. With
 * thousands of sessions publishing an event each, those were garbage made per event
 * (about 8 % of the young-generation collections in bench/tools/pipeline-cost.ts).
 */
export class AppendQueue<O> {
  readonly #sessionId: string;
  readonly #deps: AppendQueueDeps;
  readonly #host: AppendHost<O>;
  readonly #owner: O;
  readonly #pending: PendingPublish[] = [];
  #appending = false;
  /** The publishes of the append that is out, and when it was sent (-1: not yet). */
  #batch: PendingPublish[] = NO_BATCH;
  #appendStart = -1;
  #flushScheduled = false;

  constructor(sessionId: string, deps: AppendQueueDeps, host: AppendHost<O>, owner: O) {
    this.#sessionId = sessionId;
    this.#deps = deps;
    this.#host = host;
    this.#owner = owner;
  }

  /** Publishes waiting for an append (not counting the one out). */
  get queued(): number {
    return this.#pending.length;
  }

  /** Whether an append is out. */
  get appending(): boolean {
    return this.#appending;
  }

  /** A publish answered through its promise (HTTP ingest, server-side producers). */
  push(event: Envelope): Promise<AppendOutcome> {
    return new Promise((resolve, reject) => this.#enqueue({ event, from: undefined, resolve, reject }));
  }

  /** A `pub` frame: answered on `conn` (puback by the actor, nack here). */
  pushFrom(conn: Connection, event: Envelope): void {
    this.#enqueue({ event, from: conn, resolve: noop, reject: noop });
  }

  #enqueue(pending: PendingPublish): void {
    this.#pending.push(pending);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#flushScheduled || this.#appending) return;
    this.#flushScheduled = true;
    actorTicks.schedule(this.#flush);
  }

  /** Sends the queued publishes as one append. */
  readonly #flush = (): void => {
    this.#flushScheduled = false;
    if (this.#appending || this.#pending.length === 0) return;
    this.#appending = true;
    this.#batch = this.#pending.splice(0, MAX_APPEND_BATCH);
    // A fresh actor learns the head (and whether the stream ended) first.
    const loading = this.#host.loading(this.#owner);
    if (loading) loading.then(this.#send, this.#failed);
    else this.#send();
  };

  readonly #send = (): void => {
    const batch = this.#batch;
    // A fresh actor learns only now (from the engine) that the stream has ended.
    if (this.#host.ended(this.#owner)) return this.#failed(new GatewayError('session_ended'));
    const events = new Array<Envelope>(batch.length);
    for (let i = 0; i < batch.length; i++) events[i] = batch[i]!.event;
    this.#appendStart = performance.now();
    let sent: Promise<AppendResult>;
    try {
      sent = this.#deps.engine.append(this.#sessionId, events, this.#host.seen(this.#owner));
    } catch (err) {
      return this.#failed(err);
    }
    sent.then(this.#appended, this.#failed);
  };

  readonly #appended = (result: AppendResult): void => {
    this.#deps.metrics.timed('append', this.#appendStart, false, undefined);
    this.#appendStart = -1;
    try {
      this.#host.applied(this.#owner, this.#batch, result);
    } catch (err) {
      // a reply the actor cannot apply (an engine bug): the batch is refused, not lost silently
      return this.#failed(err);
    }
    this.#done();
  };

  readonly #failed = (err: unknown): void => {
    if (this.#appendStart >= 0) this.#deps.metrics.timed('append', this.#appendStart, true, err);
    const batch = this.#batch;
    const error = toGatewayError(err);
    if (error.code === 'internal')
      this.#deps.logger.error({ sessionId: this.#sessionId, err }, 'append failed');
    for (const p of batch) {
      if (p.from) nack(p.from, p.event.eventId, error);
      else p.reject(error);
    }
    this.#host.failed(this.#owner, batch, error);
    this.#done();
  };

  #done(): void {
    this.#batch = NO_BATCH;
    this.#appendStart = -1;
    this.#appending = false;
    if (this.#pending.length > 0) this.#schedule();
    this.#host.settled(this.#owner, this.#pending.length);
  }
}
