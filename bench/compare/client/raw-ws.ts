/**
 * A minimal WebSocket client (RFC 6455) for the comparison load generator: one
 * `net.Socket`, an HTTP/1.1 upgrade, an incremental frame parser and masked text sends.
 * Nothing else — no events, no per-message objects, no extensions.
 *
 * Receive path: the socket reads with `onread` into one buffer shared by every socket of
 * the process (no stream machinery, no 'data' events, no allocation per read), and each
 * read is parsed in place. A message whose frame lies inside one read is delivered as a
 * `subarray` of that buffer (no copy; valid only during onMessage); only the tail of a frame
 * split across reads is copied out, and assembled with one `Buffer.concat` once all of its
 * bytes are there (never a quadratic re-concat). Fragmented messages (continuation
 * frames) are reassembled.
 * Server pings are answered with a pong carrying the same payload; a close frame is
 * answered with a close frame, then the TCP connection is ended. The owner hears the
 * close code once, when the TCP socket is gone (1006 if no close frame came: refused,
 * reset, timeout).
 *
 * Send path: one buffer per frame (header + mask + payload), masked with 4 fresh bytes
 * taken from a shared random pool (refilled 8 KiB at a time), as RFC 6455 §5.3 asks.
 */
import { createHash, randomFillSync } from 'node:crypto';
import net from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

const POOL_SIZE = 8192;
const pool = Buffer.allocUnsafe(POOL_SIZE);
let poolAt = POOL_SIZE;

/** `n` (≤ 16) random bytes copied into `into` at `at`. */
function randomInto(into: Buffer, at: number, n: number): void {
  if (poolAt + n > POOL_SIZE) {
    randomFillSync(pool);
    poolAt = 0;
  }
  pool.copy(into, at, poolAt, poolAt + n);
  poolAt += n;
}

export interface RawWsOptions {
  host: string;
  port: number;
  /** Path and query, e.g. `/v1/realtime` or `/socket.io/?EIO=4&transport=websocket`. */
  path: string;
  /** Offered `Sec-WebSocket-Protocol`; the server must select it. */
  protocol?: string | undefined;
  localAddress?: string | undefined;
  /** Handshake deadline (TCP connect + 101), ms. Default 15 000. */
  handshakeTimeoutMs?: number;
}

export interface RawWsHandlers {
  /** The upgrade succeeded; `send` may be used from now on. */
  onOpen(): void;
  /**
   * One complete text or binary message. `data` is only valid during the call (it may be
   * a view into the socket's receive chunk): copy what must outlive it.
   */
  onMessage(data: Buffer, binary: boolean): void;
  /** The TCP connection is gone: the peer's close code, or 1006 without a close frame. */
  onClose(code: number, reason: string): void;
}

const enum State {
  Connecting,
  Open,
  Closing,
  Closed,
}

const OP_CONT = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

const CRLFCRLF = Buffer.from('\r\n\r\n');

/** Server pings answered by this process's sockets (a burst of them costs the server a tick). */
export const pings = { received: 0 };

/**
 * Every socket reads into this one buffer (`onread`): libuv fills it and the callback
 * parses it before any other read, so a chunk is only valid during its callback — a frame
 * split across reads is copied out, nothing else is.
 */
const readBuffer = Buffer.allocUnsafe(256 * 1024);

export class RawWebSocket {
  readonly #handlers: RawWsHandlers;
  readonly #socket: net.Socket;
  readonly #key: string;
  readonly #protocol: string | undefined;
  #state = State.Connecting;
  #timer: NodeJS.Timeout | undefined;
  /** Handshake response bytes so far (until the blank line). */
  #head: Buffer | undefined;
  /** Bytes of an incomplete frame: chunks kept (as views) until `#need` bytes are there. */
  #parts: Buffer[] = [];
  #partsLen = 0;
  #need = 0;
  /** Fragmented message being reassembled (opcode of its first frame, its payloads). */
  #fragOpcode = -1;
  #fragments: Buffer[] = [];
  #closeCode = 1006;
  #closeReason = '';
  #closeSent = false;
  #reported = false;

  constructor(options: RawWsOptions, handlers: RawWsHandlers) {
    this.#handlers = handlers;
    this.#protocol = options.protocol;
    const keyBytes = Buffer.allocUnsafe(16);
    randomInto(keyBytes, 0, 16);
    this.#key = keyBytes.toString('base64');
    const socket = net.connect({
      host: options.host,
      port: options.port,
      ...(options.localAddress !== undefined ? { localAddress: options.localAddress } : {}),
      // reads land in one shared buffer and bypass the stream machinery ('data' events)
      onread: { buffer: readBuffer, callback: (n: number, buf: Uint8Array) => this.#onRead(n, buf) },
    });
    this.#socket = socket;
    socket.setNoDelay(true);
    this.#timer = setTimeout(() => {
      this.#closeReason = 'handshake timeout';
      socket.destroy();
    }, options.handshakeTimeoutMs ?? 15_000);
    socket.on('connect', () => {
      let request =
        `GET ${options.path} HTTP/1.1\r\nHost: ${options.host}:${options.port}\r\n` +
        `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${this.#key}\r\n` +
        'Sec-WebSocket-Version: 13\r\n';
      if (options.protocol !== undefined) request += `Sec-WebSocket-Protocol: ${options.protocol}\r\n`;
      socket.write(request + '\r\n');
    });
    socket.on('error', (err) => {
      if (this.#closeReason === '') this.#closeReason = err.message;
    });
    socket.on('close', () => this.#finish());
  }

  get isOpen(): boolean {
    return this.#state === State.Open;
  }

  /** Bytes read and written on this TCP socket, handshake included. */
  get bytesRead(): number {
    return this.#socket.bytesRead;
  }

  get bytesWritten(): number {
    return this.#socket.bytesWritten;
  }

  /** Bytes queued in the socket and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.#socket.writableLength;
  }

  /** Sends one text message (dropped unless open). */
  send(text: string): void {
    if (this.#state !== State.Open) return;
    this.#socket.write(this.#frame(OP_TEXT, text));
  }

  /** Starts the closing handshake (close frame with `code`); the TCP side ends after the reply or 2 s. */
  close(code = 1000): void {
    if (this.#state === State.Connecting) {
      this.#closeCode = 1006;
      this.#socket.destroy();
      return;
    }
    if (this.#state !== State.Open) return;
    this.#state = State.Closing;
    this.#sendClose(code);
    this.#timer = setTimeout(() => this.#socket.destroy(), 2000);
  }

  /** Drops the TCP connection without a close frame (the owner hears 1006). */
  terminate(): void {
    this.#socket.destroy();
  }

  #onRead(n: number, buf: Uint8Array): boolean {
    const chunk = (buf as Buffer).subarray(0, n);
    if (this.#state === State.Connecting) this.#onHandshakeData(chunk);
    else if (this.#state !== State.Closed) this.#onData(chunk);
    return true;
  }

  #finish(): void {
    clearTimeout(this.#timer);
    this.#state = State.Closed;
    this.#parts = [];
    this.#fragments = [];
    if (this.#reported) return;
    this.#reported = true;
    this.#handlers.onClose(this.#closeCode, this.#closeReason);
  }

  #onHandshakeData(chunk: Buffer): void {
    const head = this.#head === undefined ? chunk : Buffer.concat([this.#head, chunk]);
    const end = head.indexOf(CRLFCRLF);
    if (end < 0) {
      if (head.length > 16_384) this.#fail('handshake response too large');
      else this.#head = Buffer.from(head);
      return;
    }
    this.#head = undefined;
    const text = head.toString('latin1', 0, end);
    const lines = text.split('\r\n');
    const status = /^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '');
    if (!status || status[1] !== '101') return this.#fail(`upgrade refused: ${lines[0] ?? ''}`);
    let accept: string | undefined;
    let protocol: string | undefined;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      if (colon < 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'sec-websocket-accept') accept = value;
      else if (name === 'sec-websocket-protocol') protocol = value;
    }
    const expected = createHash('sha1')
      .update(this.#key + GUID)
      .digest('base64');
    if (accept !== expected) return this.#fail('bad Sec-WebSocket-Accept');
    if (protocol !== this.#protocol) return this.#fail(`subprotocol mismatch: ${protocol ?? '(none)'}`);
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#state = State.Open;
    this.#handlers.onOpen();
    const rest = end + 4;
    if (rest < head.length && this.#state === State.Open) this.#onData(head.subarray(rest));
  }

  #fail(reason: string): void {
    this.#closeReason = reason;
    this.#closeCode = 1006;
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    if (this.#partsLen > 0) {
      this.#parts.push(this.#partsLen + chunk.length < this.#need ? Buffer.from(chunk) : chunk);
      this.#partsLen += chunk.length;
      if (this.#partsLen < this.#need) return;
      chunk = Buffer.concat(this.#parts, this.#partsLen);
      this.#parts = [];
      this.#partsLen = 0;
    }
    const len = chunk.length;
    let at = 0;
    /** Bytes the incomplete frame at `at` needs before it can be parsed further. */
    let need = 2;
    while (at < len) {
      // header: 2 bytes, then 0/2/8 bytes of extended length, then (server frames) no mask
      need = 2;
      if (len - at < 2) break;
      const b0 = chunk[at]!;
      const b1 = chunk[at + 1]!;
      let size = b1 & 0x7f;
      let header = 2;
      if (size === 126) {
        need = 4;
        if (len - at < 4) break;
        size = chunk.readUInt16BE(at + 2);
        header = 4;
      } else if (size === 127) {
        need = 10;
        if (len - at < 10) break;
        const high = chunk.readUInt32BE(at + 2);
        if (high > 0x1fffff) {
          this.#protocolError(1009, 'frame too large');
          return;
        }
        size = high * 0x100000000 + chunk.readUInt32BE(at + 6);
        header = 10;
      }
      const masked = (b1 & 0x80) !== 0;
      if (masked) header += 4;
      if (len - at < header + size) {
        // incomplete: keep the rest (a view) and wait for exactly the bytes still missing
        need = header + size;
        break;
      }
      const start = at + header;
      const payload = chunk.subarray(start, start + size);
      at = start + size;
      if (masked) {
        // servers must not mask (RFC 6455 §5.1); tolerate it by unmasking in place
        for (let i = 0; i < size; i++) payload[i]! ^= chunk[start - 4 + (i & 3)]!;
      }
      if ((b0 & 0x70) !== 0) {
        this.#protocolError(1002, 'reserved bits set');
        return;
      }
      const fin = (b0 & 0x80) !== 0;
      const opcode = b0 & 0x0f;
      if (!this.#onFrame(fin, opcode, payload)) return;
    }
    if (at < len && this.#state !== State.Closed) {
      this.#need = need;
      // a copy: `chunk` may be the shared read buffer, overwritten by the next read
      this.#parts.push(Buffer.from(chunk.subarray(at)));
      this.#partsLen = len - at;
    }
  }

  /** Returns false when parsing must stop (closed). */
  #onFrame(fin: boolean, opcode: number, payload: Buffer): boolean {
    switch (opcode) {
      case OP_TEXT:
      case OP_BINARY:
        if (this.#fragOpcode >= 0) return this.#protocolError(1002, 'new message inside a fragmented one');
        if (fin) {
          if (this.#state === State.Open) this.#handlers.onMessage(payload, opcode === OP_BINARY);
        } else {
          this.#fragOpcode = opcode;
          this.#fragments = [Buffer.from(payload)];
        }
        return this.#state !== State.Closed;
      case OP_CONT: {
        if (this.#fragOpcode < 0) return this.#protocolError(1002, 'continuation without a start');
        this.#fragments.push(Buffer.from(payload));
        if (!fin) return true;
        const whole = Buffer.concat(this.#fragments);
        const binary = this.#fragOpcode === OP_BINARY;
        this.#fragOpcode = -1;
        this.#fragments = [];
        if (this.#state === State.Open) this.#handlers.onMessage(whole, binary);
        return this.#state !== State.Closed;
      }
      case OP_PING:
        pings.received++;
        if (this.#state === State.Open) this.#socket.write(this.#frame(OP_PONG, payload));
        return true;
      case OP_PONG:
        return true;
      case OP_CLOSE: {
        this.#closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        this.#closeReason = payload.length > 2 ? payload.toString('utf8', 2) : '';
        if (!this.#closeSent) this.#sendClose(this.#closeCode === 1005 ? 1000 : this.#closeCode);
        this.#state = State.Closing;
        this.#socket.end();
        clearTimeout(this.#timer);
        this.#timer = setTimeout(() => this.#socket.destroy(), 2000);
        return false;
      }
      default:
        return this.#protocolError(1002, `unknown opcode ${opcode}`);
    }
  }

  #protocolError(code: number, reason: string): false {
    this.#closeReason = reason;
    if (this.#state === State.Open) this.#sendClose(code);
    this.#closeCode = code;
    this.#socket.destroy();
    return false;
  }

  #sendClose(code: number): void {
    if (this.#closeSent) return;
    this.#closeSent = true;
    const body = Buffer.allocUnsafe(2);
    body.writeUInt16BE(code, 0);
    this.#socket.write(this.#frame(OP_CLOSE, body));
  }

  /** One complete masked frame (FIN set). */
  #frame(opcode: number, data: string | Buffer): Buffer {
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    const header = size < 126 ? 2 : size < 65_536 ? 4 : 10;
    const frame = Buffer.allocUnsafe(header + 4 + size);
    frame[0] = 0x80 | opcode;
    if (header === 2) {
      frame[1] = 0x80 | size;
    } else if (header === 4) {
      frame[1] = 0x80 | 126;
      frame.writeUInt16BE(size, 2);
    } else {
      frame[1] = 0x80 | 127;
      frame.writeUInt32BE(Math.floor(size / 0x100000000), 2);
      frame.writeUInt32BE(size >>> 0, 6);
    }
    randomInto(frame, header, 4);
    const start = header + 4;
    if (typeof data === 'string') frame.write(data, start, 'utf8');
    else data.copy(frame, start);
    const m0 = frame[header]!;
    const m1 = frame[header + 1]!;
    const m2 = frame[header + 2]!;
    const m3 = frame[header + 3]!;
    const end = start + size;
    let i = start;
    for (; i + 3 < end; i += 4) {
      frame[i] = frame[i]! ^ m0;
      frame[i + 1] = frame[i + 1]! ^ m1;
      frame[i + 2] = frame[i + 2]! ^ m2;
      frame[i + 3] = frame[i + 3]! ^ m3;
    }
    for (let k = 0; i < end; i++, k++) frame[i] = frame[i]! ^ frame[header + k]!;
    return frame;
  }
}

/** `ws://host:port` → host and port (the adapters add their own path). */
export function parseWsUrl(url: string): { host: string; port: number; path: string } {
  const u = new URL(url);
  const port = u.port === '' ? (u.protocol === 'wss:' ? 443 : 80) : Number(u.port);
  return { host: u.hostname, port, path: u.pathname + u.search };
}
