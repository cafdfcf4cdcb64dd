import type { WelcomeFrame } from './protocol.ts';

/** The slice of a WebSocket the SDK uses (browser, React Native, `ws`). */
export interface SocketLike {
  readonly protocol: string;
  binaryType: string;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  terminate?: () => void;
}

export type Timer = ReturnType<typeof setTimeout>;

/** One WebSocket and what the SDK knows about it. */
export class Conn {
  readonly ws: SocketLike;
  readonly mode: 'fresh' | 'resume';
  welcome: WelcomeFrame | undefined;
  /** Highest seq the gateway delivered on this connection (starts at welcome.after). */
  maxReceived = 0;
  /** Highest seq acknowledged on this connection (starts at welcome.after). */
  acked = 0;
  pubsInFlight = 0;
  lastFrameAt = Date.now();
  lastSentAt = Date.now();
  lastPingAt = 0;
  pings = 0;
  connectTimer: Timer | undefined;
  heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  ackTimer: Timer | undefined;
  probeTimer: Timer | undefined;
  /** Resolves when the socket closed or was abandoned. */
  readonly closed: Promise<void>;
  markClosed!: () => void;
  constructor(ws: SocketLike, mode: 'fresh' | 'resume') {
    this.ws = ws;
    this.mode = mode;
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
  }
  clearTimers(): void {
    clearTimeout(this.connectTimer);
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.ackTimer);
    clearTimeout(this.probeTimer);
    this.connectTimer = this.heartbeatTimer = this.ackTimer = this.probeTimer = undefined;
  }
}
