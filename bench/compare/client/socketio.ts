/**
 * S: Socket.IO 4.8 (arms/socketio.ts) spoken by hand — Engine.IO v4 + Socket.IO v5 over
 * client/raw-ws.ts, no socket.io-client on the hot path.
 *
 *   GET /socket.io/?EIO=4&transport=websocket
 *   ← `0{"sid":…,"pingInterval":…,"pingTimeout":…}`   (Engine.IO open)
 *   → `40`  or, to recover, `40{"pid":"<pid>","offset":"<last offset>"}`
 *   ← (recovery only) the missed events, each `42["ev",…]`, BEFORE the connect reply
 *   ← `40{"sid":…,"pid":…}`   recovered ⇔ pid equals the pid we sent (socket.io-client's rule)
 *   → `42["sub","<topic>"]` ← `42["subok","<topic>","<offset>"]`   (fresh or not recovered)
 *   ← `42["ev","<payload, JSON-escaped>","<offset>"]`   (offset: the adapter's stream id)
 *   ← `2` → `3`   (Engine.IO heartbeat: the server pings, the client answers)
 *
 * Like socket.io-client, events that arrive before the connect reply are held and handed
 * over right after it (onReady first), and the offset only advances over events handed
 * over, so a connection lost mid-recovery resumes from the last event really delivered.
 * Per delivery: a prefix test, one indexOf for `\"seq\":`, one for the stamp, a backwards
 * scan for the offset, copied into a per-connection 64-byte buffer (no string).
 */
import { readStamp } from '../../lib/wire.ts';
import { readUint } from '../payload.ts';
import type {
  ArmClient,
  Publisher,
  PublisherOptions,
  SubscribeOptions,
  Subscriber,
  SubscriberHandlers,
} from '../types.ts';
import { parseWsUrl, RawWebSocket, type RawWsHandlers } from './raw-ws.ts';

const PATH = '/socket.io/?EIO=4&transport=websocket';
const EV_PREFIX = Buffer.from('42["ev","');
const SEQ = Buffer.from('\\"seq\\":');
const QUOTE = 0x22;
const COMMA = 0x2c;
const C0 = 0x30;
const C2 = 0x32;
const C4 = 0x34;
const OFFSET_MAX = 64;

function isEv(data: Buffer): boolean {
  return (
    data.length > EV_PREFIX.length && data.compare(EV_PREFIX, 0, EV_PREFIX.length, 0, EV_PREFIX.length) === 0
  );
}

/**
 * The start of the trailing offset argument of `42[…,"<offset>"]`, or -1 if the last
 * argument is not a plain string after another string (no recovery offset).
 */
function offsetStart(data: Buffer): number {
  const end = data.length - 2; // data[end] is the closing quote, data[end + 1] is `]`
  if (end < 4 || data[end] !== QUOTE || data[end + 1] !== 0x5d) return -1;
  for (let i = end - 1; i > 0 && end - i <= OFFSET_MAX; i--) {
    const c = data[i]!;
    if (c === QUOTE) return data[i - 1] === COMMA ? i + 1 : -1;
    if ((c < C0 || c > 0x39) && c !== 0x2d) return -1; // offsets are digits and '-'
  }
  return -1;
}

class SioSubscriber implements Subscriber, RawWsHandlers {
  readonly #host: string;
  readonly #port: number;
  readonly #topic: string;
  readonly #localAddress: string | undefined;
  readonly #handlers: SubscriberHandlers;
  #ws: RawWebSocket;
  /** Socket.IO private session id (connection-state recovery), from the connect reply. */
  #pid: string | undefined;
  /** The offset of the last event handed to the owner. */
  readonly #offset = Buffer.allocUnsafe(OFFSET_MAX);
  #offsetLen = 0;
  /** Connect reply seen on this connection (events flow straight to the owner). */
  #connected = false;
  // events received before the connect reply (recovery): held, with the offset they reach
  #heldSeq: number[] = [];
  #heldSent: number[] = [];
  readonly #heldOffset = Buffer.allocUnsafe(OFFSET_MAX);
  #heldOffsetLen = 0;

  constructor(options: SubscribeOptions) {
    const { host, port } = parseWsUrl(options.url);
    this.#host = host;
    this.#port = port;
    this.#topic = options.topic;
    this.#localAddress = options.localAddress;
    this.#handlers = options.handlers;
    this.#ws = this.#open();
  }

  #open(): RawWebSocket {
    this.#connected = false;
    this.#heldSeq = [];
    this.#heldSent = [];
    this.#heldOffsetLen = 0;
    return new RawWebSocket(
      { host: this.#host, port: this.#port, path: PATH, localAddress: this.#localAddress },
      this,
    );
  }

  onOpen(): void {
    /* wait for the Engine.IO open packet */
  }

  onMessage(data: Buffer): void {
    if (isEv(data)) return this.#onEv(data);
    const engineType = data[0];
    if (engineType === C2) {
      // Engine.IO ping → pong (with the same probe text if any)
      this.#ws.send(data.length === 1 ? '3' : '3' + data.toString('utf8', 1));
      return;
    }
    if (engineType === C0) {
      // Engine.IO open: connect to the main namespace, asking for recovery when we can
      const offset = this.#offsetLen > 0 ? this.#offset.toString('latin1', 0, this.#offsetLen) : undefined;
      this.#ws.send(
        this.#pid !== undefined && offset !== undefined
          ? `40${JSON.stringify({ pid: this.#pid, offset })}`
          : '40',
      );
      return;
    }
    if (engineType === 0x31) {
      // Engine.IO close
      this.#ws.close(1000);
      return;
    }
    if (engineType !== C4) return;
    const sioType = data[1];
    if (sioType === C0) return this.#onConnect(data);
    if (sioType === C2) {
      // another event: only `subok` is expected
      if (data.includes('"subok"')) {
        // its offset only matters before the first event (events may overtake it: it goes
        // out after its own XADD round trip, they come from the stream poller)
        if (this.#offsetLen === 0) this.#advanceOffset(data);
        this.#handlers.onReady(false);
      }
      return;
    }
    if (sioType === C4 || sioType === 0x31) {
      // CONNECT_ERROR or DISCONNECT from the server
      this.#ws.close(1000);
    }
  }

  #onConnect(data: Buffer): void {
    let pid: string | undefined;
    try {
      const reply = JSON.parse(data.toString('utf8', 2)) as { sid?: unknown; pid?: unknown };
      if (typeof reply.pid === 'string') pid = reply.pid;
    } catch {
      /* a bare `40` (recovery off) */
    }
    const recovered = pid !== undefined && pid === this.#pid;
    this.#pid = pid;
    this.#connected = true;
    if (recovered) {
      this.#handlers.onReady(true);
      this.#flushHeld();
    } else {
      // a new Socket.IO session: the old offset means nothing to it
      this.#offsetLen = 0;
      this.#heldSeq = [];
      this.#heldSent = [];
      this.#ws.send(`42${JSON.stringify(['sub', this.#topic])}`);
    }
  }

  #onEv(data: Buffer): void {
    const at = data.indexOf(SEQ, EV_PREFIX.length);
    if (at < 0) return;
    const from = at + SEQ.length;
    const seq = readUint(data, from);
    const sentUs = readStamp(data, from);
    const off = offsetStart(data);
    if (this.#connected) {
      if (off > 0) this.#offsetLen = data.copy(this.#offset, 0, off, data.length - 2);
      this.#handlers.onEvent(seq, sentUs);
      return;
    }
    this.#heldSeq.push(seq);
    this.#heldSent.push(sentUs);
    if (off > 0) this.#heldOffsetLen = data.copy(this.#heldOffset, 0, off, data.length - 2);
  }

  #advanceOffset(data: Buffer): void {
    const off = offsetStart(data);
    if (off > 0) this.#offsetLen = data.copy(this.#offset, 0, off, data.length - 2);
  }

  #flushHeld(): void {
    const seqs = this.#heldSeq;
    const sent = this.#heldSent;
    this.#heldSeq = [];
    this.#heldSent = [];
    if (this.#heldOffsetLen > 0) {
      this.#offsetLen = this.#heldOffset.copy(this.#offset, 0, 0, this.#heldOffsetLen);
      this.#heldOffsetLen = 0;
    }
    for (let i = 0; i < seqs.length; i++) this.#handlers.onEvent(seqs[i]!, sent[i]!);
  }

  onClose(code: number): void {
    this.#heldSeq = [];
    this.#heldSent = [];
    this.#heldOffsetLen = 0;
    this.#handlers.onClose(code);
  }

  publish(payload: string): void {
    if (!this.#connected) return;
    this.#ws.send(`42["pub",${JSON.stringify(this.#topic)},${JSON.stringify(payload)}]`);
  }

  reconnect(): void {
    if (this.#ws.isOpen) return;
    this.#ws = this.#open();
  }

  close(): void {
    // Socket.IO DISCONNECT then the WebSocket close (a client-side disconnect is not recoverable)
    this.#ws.send('41');
    this.#ws.close(1000);
  }

  bytes(): { read: number; written: number } {
    return { read: this.#ws.bytesRead, written: this.#ws.bytesWritten };
  }

  /** Diagnostics: the Socket.IO pid and last offset. */
  state(): { pid: string | undefined; offset: string | undefined } {
    return {
      pid: this.#pid,
      offset: this.#offsetLen > 0 ? this.#offset.toString('latin1', 0, this.#offsetLen) : undefined,
    };
  }
}

class SioPublisher implements Publisher, RawWsHandlers {
  readonly #ws: RawWebSocket;
  readonly #connected: Promise<void>;
  #resolve!: () => void;
  #reject!: (err: Error) => void;
  dropped = 0;

  constructor(options: PublisherOptions) {
    const { host, port } = parseWsUrl(options.url);
    this.#connected = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#ws = new RawWebSocket({ host, port, path: PATH, localAddress: options.localAddress }, this);
  }

  connected(): Promise<void> {
    return this.#connected;
  }

  onOpen(): void {
    /* wait for the Engine.IO open packet */
  }

  onMessage(data: Buffer): void {
    const engineType = data[0];
    if (engineType === C2) this.#ws.send(data.length === 1 ? '3' : '3' + data.toString('utf8', 1));
    else if (engineType === C0) this.#ws.send('40');
    else if (engineType === C4 && data[1] === C0) this.#resolve();
    else if (engineType === C4 && data[1] === C4) this.#ws.close(1000);
  }

  onClose(code: number, reason: string): void {
    this.#reject(new Error(`publisher connection closed (${code} ${reason})`));
  }

  publish(topic: string, payload: string): void {
    if (!this.#ws.isOpen) {
      this.dropped++;
      return;
    }
    this.#ws.send(`42["pub",${JSON.stringify(topic)},${JSON.stringify(payload)}]`);
  }

  get pending(): number {
    return 0;
  }

  drain(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {
    this.#ws.send('41');
    this.#ws.close(1000);
  }
}

const socketioClient: ArmClient = {
  kind: 'socketio',
  subscribe(options: SubscribeOptions): Subscriber {
    return new SioSubscriber(options);
  },
  async publisher(options: PublisherOptions): Promise<Publisher> {
    const publisher = new SioPublisher(options);
    await publisher.connected();
    return publisher;
  },
};

export default socketioClient;
