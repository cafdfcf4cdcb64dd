/**
 * G: the gateway's realtime protocol v1 (/work/shared/PROTOCOL.md), JSON codec, over
 * client/raw-ws.ts — `GET /v1/realtime`, subprotocol `lifeos.v1.json`.
 *
 * Subscriber: a fresh `hello {sessionId, token, after:"latest"}`; on `welcome` it keeps the
 * resume token and epoch and calls onReady(welcome.resumed). An `ev` frame is recognised by
 * its fixed prefix `{"op":"ev","seq":` (the seq read in place, jsonEvSeq), its stamp found
 * with one indexOf (readStamp); everything else is JSON-decoded (rare control frames).
 * Acks are cumulative and follow the client SDK's policy (client/subscription.ts): at once
 * every `ackEvery` events (capped at maxInFlight/2 so flow control never stalls) and on
 * `replayed`, else `acks.intervalMs` (the SDK's default, or BENCH_G_ACK_MS for a diagnostic
 * run) after the first unacked event. The delayed acks come from one process-wide 10 ms
 * ticker and a FIFO ordered by due tick (no timer per connection, no clock read per
 * event). Each connection's ack is due that long after its own event, as independent
 * clients' timers are; an earlier shared sweep acked every quiet connection of the process
 * in one loop, a burst that doubled G's p99 on the one client core (BENCHMARKS.md).
 * WebSocket pings are answered by raw-ws.
 * `reconnect()` resumes: `hello {sessionId, resume:{token, lastSeq, epoch}}` without the JWT
 * (PROTOCOL.md §3: a valid resume token is enough; an expired or unknown one is refused with
 * 4010 whatever else the hello carries). On 4010 the adapter itself starts fresh on a new
 * connection with `hello {token, after: lastSeq}` — the owner sees one onReady(false), no close.
 *
 * Publisher: one connection (one subscriber session) per topic. `pub` of a
 * `transcript.partial` {segmentId, revision, text: <payload>}; puback/nack counted. At most
 * welcome.maxInFlight publishes are unanswered per connection (the gateway nacks more with
 * rate_limited); beyond that they wait in a local queue, sent as pubacks come back —
 * `pending` counts both. The publisher's connections are subscribers too (every live
 * connection is): they ack what they receive like any subscriber.
 */
import { jsonEvSeq, readStamp } from '../../lib/wire.ts';
import { GATEWAY_ACK_MS } from '../gateway-acks.ts';
import type {
  ArmClient,
  Publisher,
  PublisherOptions,
  SubscribeOptions,
  Subscriber,
  SubscriberHandlers,
} from '../types.ts';
import { parseWsUrl, RawWebSocket, type RawWsHandlers } from './raw-ws.ts';

export const PATH = '/v1/realtime';
export const SUBPROTOCOL = 'lifeos.v1.json';
const EV_PREFIX_LEN = '{"op":"ev","seq":'.length;

interface Welcome {
  op: 'welcome';
  resumeToken: string;
  epoch: string;
  after: number;
  resumed: boolean;
  maxInFlight: number;
}

// ——— delayed acks: one ticker for the process ———

const ACK_TICK_MS = 10;
/** The SDK's `acks.intervalMs` default, unless BENCH_G_ACK_MS overrides it, in ticks. */
const ACK_DELAY_TICKS = Math.max(1, Math.round(GATEWAY_ACK_MS / ACK_TICK_MS));

let ticks = 0;
let ticker: NodeJS.Timeout | undefined;
/** Connections waiting for a delayed ack, in due order from `dueHead` on. */
let dueQueue: GatewayConnection[] = [];
let dueHead = 0;

function scheduleAck(conn: GatewayConnection): void {
  conn.ackDueTick = ticks + ACK_DELAY_TICKS;
  dueQueue.push(conn);
  if (ticker !== undefined) return;
  ticker = setInterval(() => {
    ticks++;
    while (dueHead < dueQueue.length && dueQueue[dueHead]!.ackDueTick <= ticks) {
      const conn = dueQueue[dueHead++]!;
      conn.ackDueTick = -1;
      conn.ack();
    }
    if (dueHead === dueQueue.length) {
      dueQueue = [];
      dueHead = 0;
      clearInterval(ticker);
      ticker = undefined;
    } else if (dueHead > 4096) {
      dueQueue = dueQueue.slice(dueHead);
      dueHead = 0;
    }
  }, ACK_TICK_MS);
  ticker.unref();
}

/** What a subscriber and a publisher connection share: hello, welcome, acks. */
abstract class GatewayConnection implements RawWsHandlers {
  protected readonly host: string;
  protected readonly port: number;
  protected readonly localAddress: string | undefined;
  protected readonly sessionId: string;
  protected readonly token: string | undefined;
  protected readonly ackEvery: number;
  protected ws: RawWebSocket | undefined;
  /** Highest seq received (the position a resume starts after); -1 before the first welcome. */
  lastSeq = -1;
  #ackedSeq = 0;
  #ackThreshold: number;
  /** The ticker tick its delayed ack is due at; -1 when none is queued. */
  ackDueTick = -1;
  resumeToken: string | undefined;
  epoch: string | undefined;
  maxInFlight = 256;
  welcomed = false;
  /** The hello to send on the next open. */
  protected nextHello = '';

  constructor(
    url: string,
    sessionId: string,
    token: string | undefined,
    ackEvery: number,
    localAddress?: string,
  ) {
    const { host, port } = parseWsUrl(url);
    this.host = host;
    this.port = port;
    this.localAddress = localAddress;
    this.sessionId = sessionId;
    this.token = token;
    this.ackEvery = Math.max(1, ackEvery);
    this.#ackThreshold = this.ackEvery;
  }

  protected open(hello: string): void {
    this.nextHello = hello;
    this.welcomed = false;
    this.ws = new RawWebSocket(
      {
        host: this.host,
        port: this.port,
        path: PATH,
        protocol: SUBPROTOCOL,
        localAddress: this.localAddress,
      },
      this,
    );
  }

  protected freshHello(after: number | 'latest'): string {
    return JSON.stringify({ op: 'hello', sessionId: this.sessionId, token: this.token, after });
  }

  protected resumeHello(): string {
    return JSON.stringify({
      op: 'hello',
      sessionId: this.sessionId,
      resume: {
        token: this.resumeToken,
        lastSeq: this.lastSeq,
        ...(this.epoch !== undefined ? { epoch: this.epoch } : {}),
      },
    });
  }

  onOpen(): void {
    this.ws!.send(this.nextHello);
  }

  onMessage(data: Buffer): void {
    const seq = jsonEvSeq(data);
    if (seq >= 0) {
      this.lastSeq = seq;
      this.onEv(seq, data);
      if (seq - this.#ackedSeq >= this.#ackThreshold) this.ack();
      else if (this.ackDueTick < 0) scheduleAck(this);
      return;
    }
    let frame: any;
    try {
      frame = JSON.parse(data.toString('utf8'));
    } catch {
      return;
    }
    switch (frame?.op) {
      case 'welcome': {
        const w = frame as Welcome;
        this.resumeToken = w.resumeToken;
        this.epoch = w.epoch;
        this.maxInFlight = w.maxInFlight;
        this.#ackThreshold = Math.max(1, Math.min(this.ackEvery, Math.floor(w.maxInFlight / 2)));
        this.lastSeq = w.after;
        this.#ackedSeq = w.after;
        this.welcomed = true;
        this.onWelcome(w);
        return;
      }
      case 'replayed':
        this.ack();
        return;
      case 'ev':
        // not in the canonical prefix form (never expected): still an event
        if (typeof frame.seq === 'number') {
          this.lastSeq = frame.seq;
          this.onEv(frame.seq, data);
        }
        return;
      default:
        this.onControl(frame);
        return;
    }
  }

  onClose(code: number, reason: string): void {
    this.welcomed = false;
    this.onClosed(code, reason);
  }

  ack(): void {
    if (this.lastSeq <= this.#ackedSeq || !this.welcomed) return;
    this.#ackedSeq = this.lastSeq;
    this.ws!.send(`{"op":"ack","seq":${this.lastSeq}}`);
  }

  protected abstract onWelcome(welcome: Welcome): void;
  protected abstract onEv(seq: number, data: Buffer): void;
  protected abstract onControl(frame: any): void;
  protected abstract onClosed(code: number, reason: string): void;
}

class GatewaySubscriber extends GatewayConnection implements Subscriber {
  readonly #handlers: SubscriberHandlers;
  /** The current connection sent a resume hello (a 4010 on it falls back to a fresh start). */
  #resuming = false;
  /** Fresh starts after 4010 (diagnostics). */
  fallbacks = 0;
  /** `error` frames by code (diagnostics: ack_ahead, …). */
  readonly errors: Record<string, number> = {};

  constructor(options: SubscribeOptions) {
    super(options.url, options.topic, options.token, options.ackEvery ?? 32, options.localAddress);
    this.#handlers = options.handlers;
    this.open(this.freshHello('latest'));
  }

  protected onWelcome(welcome: Welcome): void {
    this.#handlers.onReady(welcome.resumed);
  }

  protected onEv(seq: number, data: Buffer): void {
    this.#handlers.onEvent(seq, readStamp(data, EV_PREFIX_LEN));
  }

  protected onControl(frame: any): void {
    if (frame?.op === 'error' && typeof frame.code === 'string') {
      this.errors[frame.code] = (this.errors[frame.code] ?? 0) + 1;
    } else if (frame?.op === 'nack') {
      this.#handlers.onNack?.(String(frame.code));
    }
  }

  protected onClosed(code: number): void {
    if (code === 4010 && this.#resuming && this.token !== undefined) {
      // resume_expired: start fresh from where we were (PROTOCOL.md §3)
      this.#resuming = false;
      this.fallbacks++;
      this.open(this.freshHello(Math.max(0, this.lastSeq)));
      return;
    }
    this.#handlers.onClose(code);
  }

  reconnect(): void {
    if (this.ws?.isOpen) return;
    if (this.resumeToken !== undefined && this.lastSeq >= 0) {
      this.#resuming = true;
      this.open(this.resumeHello());
    } else {
      this.#resuming = false;
      this.open(this.freshHello(this.lastSeq >= 0 ? this.lastSeq : 'latest'));
    }
  }

  close(): void {
    this.ws?.close(1000);
  }

  #published = 0;

  /** `pub` on this subscriber's own connection; its puback is ignored, a nack reported (onControl). */
  publish(payload: string): void {
    if (!this.welcomed) return;
    const n = this.#published++;
    this.ws!.send(
      `{"op":"pub","id":"e${n}","type":"transcript.partial","payload":{"segmentId":"seg-${n >>> 6}",` +
        `"revision":${n},"text":${JSON.stringify(payload)}}}`,
    );
  }

  bytes(): { read: number; written: number } {
    return { read: this.ws?.bytesRead ?? 0, written: this.ws?.bytesWritten ?? 0 };
  }
}

/** One publisher connection: the session `topic`, its unanswered publishes and queue. */
class PublishConnection extends GatewayConnection {
  readonly #owner: GatewayPublisher;
  readonly #ready: Promise<void>;
  #resolve!: () => void;
  #reject!: (err: Error) => void;
  /** Sent and not yet answered. */
  inFlight = 0;
  /** Waiting for room under maxInFlight: `queue[queueHead…]`. */
  queue: string[] = [];
  queueHead = 0;
  closed = false;

  constructor(owner: GatewayPublisher, url: string, topic: string, token: string, localAddress?: string) {
    super(url, topic, token, 32, localAddress);
    this.#owner = owner;
    this.#ready = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.open(this.freshHello('latest'));
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  get queued(): number {
    return this.queue.length - this.queueHead;
  }

  send(frame: string): void {
    if (this.inFlight < this.maxInFlight && this.welcomed) {
      this.inFlight++;
      this.ws!.send(frame);
    } else {
      this.queue.push(frame);
    }
  }

  protected onWelcome(): void {
    this.#resolve();
    this.#flush();
  }

  #flush(): void {
    while (this.queueHead < this.queue.length && this.inFlight < this.maxInFlight) {
      this.inFlight++;
      this.ws!.send(this.queue[this.queueHead++]!);
    }
    if (this.queueHead === this.queue.length && this.queueHead > 0) {
      this.queue = [];
      this.queueHead = 0;
    }
  }

  protected onEv(): void {
    /* the publisher's own subscription: only acked */
  }

  protected onControl(frame: any): void {
    if (frame?.op === 'puback') {
      this.#owner.acked++;
    } else if (frame?.op === 'nack') {
      this.#owner.nacked++;
      const code = String(frame.code);
      this.#owner.nackCodes[code] = (this.#owner.nackCodes[code] ?? 0) + 1;
    } else {
      return;
    }
    this.inFlight--;
    this.#flush();
    this.#owner.settled();
  }

  protected onClosed(code: number, reason: string): void {
    this.closed = true;
    const lost = this.inFlight + this.queued;
    if (lost > 0) {
      this.#owner.lost += lost;
      this.inFlight = 0;
      this.queue = [];
      this.queueHead = 0;
    }
    this.#owner.closes[String(code)] = (this.#owner.closes[String(code)] ?? 0) + 1;
    this.#reject(new Error(`publisher connection for ${this.sessionId} closed (${code} ${reason})`));
    this.#owner.settled();
  }

  closeNow(): void {
    this.ws?.close(1000);
  }
}

class GatewayPublisher implements Publisher {
  readonly #connections = new Map<string, PublishConnection>();
  #n = 0;
  #drains: (() => void)[] = [];
  /** Answered with puback / nack; nacks by code; lost when a connection closed; closes by code. */
  acked = 0;
  nacked = 0;
  readonly nackCodes: Record<string, number> = {};
  lost = 0;
  readonly closes: Record<string, number> = {};

  constructor(options: PublisherOptions) {
    if (options.token === undefined) throw new Error('the gateway publisher needs an agent token');
    for (const topic of options.topics) {
      this.#connections.set(
        topic,
        new PublishConnection(this, options.url, topic, options.token, options.localAddress),
      );
    }
  }

  async ready(): Promise<void> {
    await Promise.all([...this.#connections.values()].map((c) => c.ready()));
  }

  publish(topic: string, payload: string): void {
    const conn = this.#connections.get(topic);
    if (!conn || conn.closed) {
      this.lost++;
      return;
    }
    const n = this.#n++;
    conn.send(
      `{"op":"pub","id":"b${n}","type":"transcript.partial","payload":{"segmentId":"seg-${n >>> 6}",` +
        `"revision":${n},"text":${JSON.stringify(payload)}}}`,
    );
  }

  get pending(): number {
    let pending = 0;
    for (const conn of this.#connections.values()) pending += conn.inFlight + conn.queued;
    return pending;
  }

  drain(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drains.push(resolve));
  }

  /** A publish was answered (or lost): wake drain() waiters once nothing is pending. */
  settled(): void {
    if (this.#drains.length === 0 || this.pending > 0) return;
    const drains = this.#drains;
    this.#drains = [];
    for (const resolve of drains) resolve();
  }

  close(): void {
    for (const conn of this.#connections.values()) conn.closeNow();
  }
}

const gatewayClient: ArmClient = {
  kind: 'gateway',
  subscribe(options: SubscribeOptions): Subscriber {
    return new GatewaySubscriber(options);
  },
  async publisher(options: PublisherOptions): Promise<Publisher> {
    const publisher = new GatewayPublisher(options);
    try {
      await publisher.ready();
    } catch (err) {
      publisher.close();
      throw err;
    }
    return publisher;
  },
};

export default gatewayClient;
