/**
 * The benchmark's one publisher: a WebSocket connection with an `agent` token that sends
 * `transcript.partial` events at a fixed open-loop rate, each stamped with its send time,
 * and measures publish → puback. It is itself a subscriber of the session (every live
 * connection is), so it acks what it receives like any client.
 */
import WebSocket from 'ws';
import { jsonCodec, msgpackCodec } from '../../src/codec/index.ts';
import { Histogram } from './histogram.ts';
import type { CodecName } from './messages.ts';
import { jsonEvSeq, msgpackEvSeq, nowMicros, stampedText } from './wire.ts';

export interface PublisherOptions {
  wsUrl: string;
  sessionId: string;
  token: string;
  codec: CodecName;
  textBytes: number;
  ackEvery: number;
}

export class Publisher {
  readonly #opts: PublisherOptions;
  #ws: WebSocket | undefined;
  #n = 0;
  #timer: NodeJS.Timeout | undefined;
  /** eventId → send time (µs), until its puback or nack. */
  readonly #pending = new Map<string, number>();
  #pendingDone: (() => void) | undefined;
  // own subscription
  #lastSeq = 0;
  #ackedSeq = 0;
  #ackThreshold = 32;

  /** Highest seq any puback returned. */
  maxSeq = 0;
  /** Counters and histograms of events sent in the current measurement window (from `mark`). */
  windowPublished = 0;
  /** Of those, answered with a puback (stored, so every subscriber should get them). */
  windowAccepted = 0;
  #markUs = Number.POSITIVE_INFINITY;
  readonly puback = new Histogram();
  /** How far behind its schedule each send was, µs (open-loop health). */
  readonly scheduleLag = new Histogram();
  nacks: Record<string, number> = {};
  closedWith: number | undefined;

  constructor(opts: PublisherOptions) {
    this.#opts = opts;
  }

  get unanswered(): number {
    return this.#pending.size;
  }

  connect(): Promise<void> {
    const { wsUrl, codec, sessionId, token } = this.#opts;
    const ws = new WebSocket(wsUrl, codec === 'json' ? 'lifeos.v1.json' : 'lifeos.v1.msgpack', {
      perMessageDeflate: false,
      skipUTF8Validation: true,
    });
    this.#ws = ws;
    return new Promise((resolve, reject) => {
      let welcomed = false;
      ws.on('open', () => this.#send({ op: 'hello', sessionId, token, after: 'latest' }));
      ws.on('message', (data: Buffer) => {
        const frame = this.#onMessage(data);
        if (!welcomed && frame?.op === 'welcome') {
          welcomed = true;
          resolve();
        }
      });
      ws.on('close', (code) => {
        this.closedWith = code;
        if (!welcomed) reject(new Error(`publisher closed with ${code} before welcome`));
      });
      ws.on('error', (err) => {
        if (!welcomed) reject(err);
      });
    });
  }

  /** Starts sending at `rate` events/s, open loop: a late tick sends what it owes. */
  start(rate: number): void {
    this.stop();
    const t0 = nowMicros();
    const interval = 1e6 / rate;
    let sent = 0;
    this.#timer = setInterval(() => {
      const now = nowMicros();
      const owed = Math.floor((now - t0) / interval) + 1;
      while (sent < owed) {
        const lag = now - (t0 + sent * interval);
        this.scheduleLag.record(lag > 0 ? lag : 0);
        this.#publishOne();
        sent++;
      }
    }, 1);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Clears the window's counters (the next events are the ones measured). */
  mark(markUs: number): void {
    this.#markUs = markUs;
    this.windowPublished = 0;
    this.windowAccepted = 0;
    this.puback.reset();
    this.scheduleLag.reset();
    this.nacks = {};
  }

  /** Resolves once every publish so far is answered, or after `timeoutMs`. */
  async settle(timeoutMs: number): Promise<void> {
    if (this.#pending.size === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.#pendingDone = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#pendingDone = undefined;
  }

  close(): void {
    this.stop();
    this.#ws?.close(1000, 'bench done');
  }

  #publishOne(): void {
    const n = this.#n++;
    const id = `bench-${n}`;
    const sentUs = nowMicros();
    this.#pending.set(id, sentUs);
    if (sentUs >= this.#markUs) this.windowPublished++;
    this.#send({
      op: 'pub',
      id,
      type: 'transcript.partial',
      payload: {
        segmentId: `seg-${Math.floor(n / 50)}`,
        revision: n,
        text: stampedText(sentUs, this.#opts.textBytes),
      },
    });
  }

  #send(frame: object): void {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(this.#opts.codec === 'json' ? JSON.stringify(frame) : msgpackCodec.encode(frame));
  }

  #onMessage(data: Buffer): any {
    const json = this.#opts.codec === 'json';
    const evSeq = json ? jsonEvSeq(data) : msgpackEvSeq(data);
    if (evSeq >= 0) {
      this.#lastSeq = evSeq;
      if (this.#lastSeq - this.#ackedSeq >= this.#ackThreshold) this.#ack();
      return undefined;
    }
    const frame: any = json ? jsonCodec.decode(data) : msgpackCodec.decode(data);
    switch (frame.op) {
      case 'welcome':
        this.#lastSeq = frame.after;
        this.#ackedSeq = frame.after;
        this.#ackThreshold = Math.max(1, Math.min(this.#opts.ackEvery, Math.floor(frame.maxInFlight / 2)));
        break;
      case 'replayed':
        this.#ack();
        break;
      case 'ev':
        this.#lastSeq = frame.seq;
        if (this.#lastSeq - this.#ackedSeq >= this.#ackThreshold) this.#ack();
        break;
      case 'puback':
      case 'nack': {
        const sentUs = this.#pending.get(frame.id);
        if (sentUs === undefined) break;
        this.#pending.delete(frame.id);
        if (frame.op === 'puback' && frame.seq > this.maxSeq) this.maxSeq = frame.seq;
        if (sentUs < this.#markUs) break; // warm-up traffic
        if (frame.op === 'puback') {
          this.puback.record(nowMicros() - sentUs);
          this.windowAccepted++;
        } else {
          this.nacks[frame.code] = (this.nacks[frame.code] ?? 0) + 1;
        }
        if (this.#pending.size === 0) this.#pendingDone?.();
        break;
      }
      default:
        break;
    }
    return frame;
  }

  #ack(): void {
    if (this.#lastSeq <= this.#ackedSeq) return;
    this.#ackedSeq = this.#lastSeq;
    this.#send({ op: 'ack', seq: this.#lastSeq });
  }
}
