import { Packr, Unpackr } from 'msgpackr';
import WebSocket from 'ws';

/**
 * One protocol v1 WebSocket connection of the swarm, in either subprotocol. It is a thin
 * shell: every outcome — a refused connect, a reset, a close frame — arrives as exactly
 * one `onClose`, so the clients above it have one place to decide what to do next.
 *
 * The swarm encodes with its own msgpackr instances (stock options, no records), not the
 * gateway's codec module: a symmetric bug in one codec would otherwise cancel out.
 */
export type Codec = 'json' | 'msgpack';
export type Frame = Record<string, unknown> & { op: string };

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

const SUBPROTOCOL: Record<Codec, string> = { json: 'lifeos.v1.json', msgpack: 'lifeos.v1.msgpack' };

export interface WireHandlers {
  onOpen(): void;
  onFrame(frame: Frame): void;
  onClose(code: number, reason: string): void;
}

export class WireConn {
  readonly codec: Codec;
  readonly #ws: WebSocket;
  #closed = false;
  #paused = false;
  #lastFrameAt = Date.now();
  #lastPingAt = Date.now();
  #pings = 0;

  constructor(url: string, codec: Codec, handlers: WireHandlers, connectTimeoutMs = 5000) {
    this.codec = codec;
    this.#ws = new WebSocket(url, [SUBPROTOCOL[codec]], {
      handshakeTimeout: connectTimeoutMs,
      perMessageDeflate: false,
    });
    this.#ws.on('open', () => {
      this.#lastFrameAt = Date.now();
      handlers.onOpen();
    });
    this.#ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.#lastFrameAt = Date.now();
      let frame: Frame;
      try {
        frame = (isBinary ? unpackr.unpack(data) : JSON.parse(data.toString('utf8'))) as Frame;
      } catch {
        frame = { op: '__undecodable__' };
      }
      handlers.onFrame(frame);
    });
    // 'error' is always followed by 'close'; the close is the one outcome reported.
    this.#ws.on('error', () => {});
    this.#ws.on('close', (code: number, reason: Buffer) => {
      this.#closed = true;
      handlers.onClose(code, reason.toString('utf8'));
    });
  }

  get isOpen(): boolean {
    return !this.#closed && this.#ws.readyState === WebSocket.OPEN;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends one frame; false when the socket is not open (the frame is dropped). */
  send(frame: Frame): boolean {
    if (!this.isOpen) return false;
    if (this.codec === 'json') this.#ws.send(JSON.stringify(frame));
    else this.#ws.send(packr.pack(frame), { binary: true });
    return true;
  }

  /**
   * Dead-connection detection, called periodically: pings when the line has been quiet
   * for a third of `deadAfterMs`, and drops the socket (no close frame) when nothing at
   * all arrived for `deadAfterMs` — a half-open connection never closes by itself.
   * Returns false when it dropped the socket.
   */
  heartbeat(deadAfterMs: number, now = Date.now()): boolean {
    if (!this.isOpen || this.#paused) return true;
    if (now - this.#lastFrameAt > deadAfterMs) {
      this.terminate();
      return false;
    }
    if (now - this.#lastFrameAt > deadAfterMs / 3 && now - this.#lastPingAt > deadAfterMs / 3) {
      this.#lastPingAt = now;
      this.send({ op: 'ping', n: ++this.#pings });
    }
    return true;
  }

  /** Stops reading from the socket (a slow or stuck consumer): the gateway's buffer fills. */
  pause(): void {
    if (!this.#paused && !this.#closed) this.#ws.pause();
    this.#paused = true;
  }

  resume(): void {
    if (this.#paused && !this.#closed) this.#ws.resume();
    this.#paused = false;
    this.#lastFrameAt = Date.now();
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Milliseconds since the last frame (or the open), for reports. */
  quietMs(now = Date.now()): number {
    return now - this.#lastFrameAt;
  }

  /** The socket's state by name, for reports. */
  get state(): string {
    return ['connecting', 'open', 'closing', 'closed'][this.#ws.readyState] ?? String(this.#ws.readyState);
  }

  /** A clean close with a close frame. */
  close(code = 1000): void {
    if (this.#closed) return;
    this.#ws.close(code);
  }

  /** Drops the TCP connection without a close frame, like a lost network. */
  terminate(): void {
    if (this.#closed) return;
    this.#ws.terminate();
  }
}
