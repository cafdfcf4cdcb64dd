import { wsUrl, type SwarmContext } from './context.ts';
import type { Rng } from './rng.ts';
import { WireConn, type Frame } from './wire.ts';

/**
 * A publisher: publishes `transcript.partial` events to one session at a steady rate and
 * retries every unanswered publish with the same `eventId` until it gets a `puback` (or a
 * final refusal), reconnecting to any node after a failure. Each attempt is recorded once,
 * with outcome ok (puback), fail (a non-retryable nack) or unknown (the connection went
 * away first, or a retryable nack).
 *
 * It also consumes the session as a subscriber (every connection is one) and acks what it
 * gets, so flow control never pauses it; those deliveries are not recorded.
 */
interface Pending {
  readonly eventId: string;
  attempt: number;
  /** The connection the current attempt went out on; undefined while waiting to be sent. */
  sentOn: Link | undefined;
}

interface Link {
  readonly name: string;
  readonly wire: WireConn;
  epoch: string | undefined;
  welcomed: boolean;
  highest: number;
  unacked: number;
}

export class Publisher {
  readonly name: string;
  readonly session: string;
  readonly #ctx: SwarmContext;
  readonly #rng: Rng;
  readonly #pending = new Map<string, Pending>();
  #link: Link | undefined;
  #links = 0;
  #next = 0;
  #attempts = 0;
  #publishing = false;
  #stopped = false;
  #tick: NodeJS.Timeout | undefined;
  #watch: NodeJS.Timeout | undefined;
  #reconnect: NodeJS.Timeout | undefined;
  #fatal: string | undefined;
  stats = { published: 0, acked: 0, nacked: 0, unknown: 0, connects: 0 };

  constructor(name: string, session: string, ctx: SwarmContext, rng: Rng) {
    this.name = name;
    this.session = session;
    this.#ctx = ctx;
    this.#rng = rng;
  }

  get outstanding(): number {
    return this.#pending.size;
  }

  /** Why it gave up, if it met a refusal that retrying cannot fix. */
  get fatal(): string | undefined {
    return this.#fatal;
  }

  start(): void {
    this.#publishing = true;
    this.#connect();
    const interval = 1000 / this.#ctx.behaviour.publishRate;
    this.#tick = setInterval(() => this.#publishNext(), interval);
    this.#watch = setInterval(() => this.#link?.wire.heartbeat(this.#ctx.behaviour.deadAfterMs), 500);
  }

  /** No new events from now on; outstanding ones are still retried until answered. */
  stopPublishing(): void {
    this.#publishing = false;
    if (this.#tick) clearInterval(this.#tick);
    this.#tick = undefined;
  }

  /** Resolves once every publish is answered, or false at the deadline. */
  async settle(deadline: number): Promise<boolean> {
    while (this.#pending.size > 0 && !this.#fatal) {
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.#pending.size === 0;
  }

  stop(): void {
    this.stopPublishing();
    this.#stopped = true;
    if (this.#watch) clearInterval(this.#watch);
    if (this.#reconnect) clearTimeout(this.#reconnect);
    this.#link?.wire.close(1000);
  }

  #publishNext(): void {
    if (!this.#publishing || this.#pending.size >= this.#ctx.behaviour.publishWindow) return;
    const eventId = `${this.name}-${++this.#next}`;
    const pending: Pending = { eventId, attempt: 0, sentOn: undefined };
    this.#pending.set(eventId, pending);
    this.stats.published++;
    this.#send(pending);
  }

  #send(pending: Pending): void {
    const link = this.#link;
    if (!link?.welcomed || !link.wire.isOpen) return; // sent after the next welcome
    pending.attempt++;
    pending.sentOn = link;
    link.wire.send({
      op: 'pub',
      id: pending.eventId,
      type: 'transcript.partial',
      payload: {
        segmentId: pending.eventId,
        revision: pending.attempt,
        text: 'x'.repeat(this.#ctx.behaviour.payloadBytes),
      },
    });
  }

  #connect(): void {
    if (this.#stopped || this.#link) return;
    const name = `${this.name}#${++this.#links}`;
    const url = wsUrl(this.#rng.pick(this.#ctx.targets.urls));
    const codec = this.#rng.chance(this.#ctx.behaviour.msgpackShare) ? 'msgpack' : 'json';
    const link: Link = {
      name,
      epoch: undefined,
      welcomed: false,
      highest: 0,
      unacked: 0,
      wire: new WireConn(url, codec, {
        onOpen: () =>
          link.wire.send({
            op: 'hello',
            sessionId: this.session,
            token: this.#ctx.publisherToken,
            after: 'latest',
          }),
        onFrame: (frame) => this.#onFrame(link, frame),
        onClose: (code, reason) => this.#onClose(link, code, reason),
      }),
    };
    this.#link = link;
    this.stats.connects++;
  }

  #onFrame(link: Link, frame: Frame): void {
    switch (frame.op) {
      case 'welcome':
        link.welcomed = true;
        link.epoch = String(frame['epoch']);
        this.#attempts = 0;
        for (const pending of this.#pending.values()) this.#send(pending);
        return;
      case 'puback':
      case 'nack':
        this.#onAnswer(link, frame);
        return;
      case 'ev': {
        link.highest = Number(frame['seq']);
        if (++link.unacked >= 32) {
          link.unacked = 0;
          link.wire.send({ op: 'ack', seq: link.highest });
        }
        return;
      }
      default:
        return;
    }
  }

  #onAnswer(link: Link, frame: Frame): void {
    const eventId = String(frame['id']);
    const pending = this.#pending.get(eventId);
    // An answer to an attempt on an older connection, already counted as unknown.
    if (!pending || pending.sentOn !== link) return;
    const base = {
      op: 'publish',
      session: this.session,
      client: this.name,
      conn: link.name,
      eventId,
      attempt: pending.attempt,
    } as const;
    if (frame.op === 'puback') {
      this.#ctx.recorder.record({ ...base, outcome: 'ok', seq: Number(frame['seq']), epoch: link.epoch! });
      this.#pending.delete(eventId);
      this.stats.acked++;
      return;
    }
    const code = String(frame['code']);
    if (code === 'unavailable' || code === 'rate_limited') {
      // Retryable: the engine may or may not have stored it. Try again after a backoff.
      this.#ctx.recorder.record({ ...base, outcome: 'unknown', code });
      this.stats.unknown++;
      pending.sentOn = undefined;
      setTimeout(() => this.#send(pending), this.#rng.backoff(1, this.#ctx.behaviour.backoffBaseMs, 1000));
      return;
    }
    this.#ctx.recorder.record({ ...base, outcome: 'fail', code });
    this.#pending.delete(eventId);
    this.stats.nacked++;
  }

  #onClose(link: Link, code: number, reason: string): void {
    if (this.#link === link) this.#link = undefined;
    for (const pending of this.#pending.values()) {
      if (pending.sentOn !== link) continue;
      this.#ctx.recorder.record({
        op: 'publish',
        session: this.session,
        client: this.name,
        conn: link.name,
        eventId: pending.eventId,
        attempt: pending.attempt,
        outcome: 'unknown',
        code: `closed_${code}`,
      });
      this.stats.unknown++;
      pending.sentOn = undefined;
    }
    if (this.#stopped) return;
    if (code === 4001 || code === 4003 || code === 4004 || code === 4000) {
      this.#fatal = `closed ${code} ${reason}`;
      return;
    }
    const delay = this.#rng.backoff(
      ++this.#attempts,
      this.#ctx.behaviour.backoffBaseMs,
      this.#ctx.behaviour.backoffCapMs,
    );
    this.#reconnect = setTimeout(() => {
      this.#reconnect = undefined;
      this.#connect();
    }, delay);
  }
}
