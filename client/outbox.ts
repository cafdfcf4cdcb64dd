import { backoffDelay, type BackoffOptions } from './backoff.ts';
import type { Conn, Timer } from './conn.ts';
import { LifeosClientError, PublishRejectedError } from './errors.ts';
import type { ClientFrame, EventPayload, EventType } from './protocol.ts';
import type { PublishOptions, PublishResult } from './types.ts';
import { randomId } from './util.ts';

interface PendingPublish {
  readonly id: string;
  readonly frame: ClientFrame;
  readonly promise: Promise<PublishResult>;
  resolve(result: PublishResult): void;
  reject(err: Error): void;
  /** The connection it was last sent on; undefined: to be sent. */
  sentOn: Conn | undefined;
}

export interface OutboxOptions {
  max: number;
  backoff: BackoffOptions;
  random: () => number;
  /** The live connection to send on, if any (welcomed and not closing). */
  live(): Conn | undefined;
  send(conn: Conn, frame: ClientFrame): void;
}

/**
 * Publishes waiting for their `puback`, bounded. Each keeps its id across reconnects, so a
 * retry after a lost connection is deduplicated by the gateway; at most the gateway's
 * maxInFlight of them are unanswered on one connection. A retryable `nack` holds the whole
 * outbox for a backoff, then everything waiting goes again in the order it was published:
 * the gateway numbers one connection's publishes in the order they arrive, so a publisher's
 * events keep their order through an outage (each publish on its own backoff came back
 * shuffled). Any other `nack` rejects the publish.
 */
export class PublishOutbox {
  readonly #pending = new Map<string, PendingPublish>();
  readonly #o: OutboxOptions;
  /** Set while a retryable nack's backoff runs: nothing is sent until it fires. */
  #retryTimer: Timer | undefined;
  /** Backoffs since the last puback, for the next delay. */
  #backoffs = 0;

  constructor(options: OutboxOptions) {
    this.#o = options;
  }

  add<T extends EventType>(
    type: T,
    payload: EventPayload<T>,
    options: PublishOptions,
  ): Promise<PublishResult> {
    const id = options.id ?? randomId();
    const existing = this.#pending.get(id);
    if (existing) return existing.promise;
    if (this.#pending.size >= this.#o.max) {
      return Promise.reject(
        new LifeosClientError(
          'outbox_full',
          `publish outbox is full: ${this.#o.max} publishes are waiting for their puback`,
        ),
      );
    }
    const frame: ClientFrame =
      options.ts === undefined
        ? { op: 'pub', id, type, payload }
        : { op: 'pub', id, type, payload, ts: options.ts };
    let resolve!: (r: PublishResult) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<PublishResult>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.#pending.set(id, {
      id,
      frame,
      promise,
      resolve,
      reject,
      sentOn: undefined,
    });
    this.flush();
    return promise;
  }

  /** Sends what waits, in order, keeping ≤ maxInFlight publishes unanswered. */
  flush(): void {
    const conn = this.#o.live();
    if (!conn?.welcome || this.#retryTimer !== undefined) return;
    const limit = Math.max(1, conn.welcome.maxInFlight);
    for (const entry of this.#pending.values()) {
      if (conn.pubsInFlight >= limit) break;
      if (entry.sentOn === conn) continue;
      entry.sentOn = conn;
      conn.pubsInFlight++;
      this.#o.send(conn, entry.frame);
    }
  }

  /** A new connection was welcomed: publishes waiting out a nack's backoff go now. */
  resend(): void {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.flush();
  }

  puback(conn: Conn, id: string, seq: number): void {
    const entry = this.#settle(conn, id);
    if (!entry) return; // an answer to a retry that was already answered
    this.#pending.delete(id);
    this.#backoffs = 0;
    entry.resolve({ id, seq });
    this.flush();
  }

  nack(conn: Conn, id: string, code: string, message: string, retryable: boolean): void {
    const entry = this.#settle(conn, id);
    if (!entry) return;
    if (retryable) {
      // The publishes sent after this one are likely refused too; one backoff for all.
      this.#retryTimer ??= setTimeout(
        () => {
          this.#retryTimer = undefined;
          this.flush();
        },
        backoffDelay(this.#backoffs++, this.#o.backoff, this.#o.random),
      );
    } else {
      this.#pending.delete(id);
      entry.reject(new PublishRejectedError(id, code, message));
    }
    this.flush();
  }

  /** The subscription closed: every publish still waiting fails. */
  rejectAll(why: string): void {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    for (const entry of this.#pending.values()) {
      entry.reject(new LifeosClientError('closed', `subscription closed before the puback: ${why}`));
    }
    this.#pending.clear();
  }

  #settle(conn: Conn, id: string): PendingPublish | undefined {
    const entry = this.#pending.get(id);
    if (entry?.sentOn === conn) {
      conn.pubsInFlight--;
      entry.sentOn = undefined;
    }
    return entry;
  }
}
