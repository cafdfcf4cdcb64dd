/**
 * What the session layer needs from a socket. The transport adapts a uWS WebSocket to
 * this, so session code never imports uWS and can be driven by tests directly.
 */
export interface Sink {
  /** Queues bytes; returns false when the socket is now over its backpressure limit. */
  send(bytes: Uint8Array, binary: boolean): boolean;
  /** Bytes queued in the socket and not yet written to the kernel. */
  bufferedAmount(): number;
  /** Runs `fn` with writes coalesced into one syscall. */
  cork(fn: () => void): void;
  /** Closes with a code and a short reason (≤ 123 bytes). Idempotent. */
  close(code: number, reason: string): void;
}
