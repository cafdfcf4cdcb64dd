/**
 * The contract between the comparison benchmark's parts (bench/compare/):
 *
 *   run.ts (orchestrator) ──fork──► loadgen/worker.ts ──uses──► client/<arm>.ts (protocol adapters)
 *        │                                                          │ raw WebSocket (client/raw-ws.ts)
 *        └──spawn──► arm servers: src/main.ts (G), arms/uws.ts (U), arms/ws.ts (W), arms/socketio.ts (S)
 *
 * Every arm carries the same application payload: a JSON text of a fixed size holding the
 * topic, a per-topic seq and the send time (see payload.ts). Subscribers never decode more
 * than they must: they find `"seq":` and `"ts":` with indexOf over the frame bytes.
 */

/** G: the gateway; U: raw uWS pub/sub; S: Socket.IO + redis-streams adapter; W: plain `ws`. */
export type ArmKind = 'gateway' | 'uws' | 'socketio' | 'ws';

/** Everything a subscriber connection tells its owner. Called synchronously from frame parsing. */
export interface SubscriberHandlers {
  /**
   * Subscribed and ready for events: G after `welcome`, S after the namespace connect,
   * U/W after `subok`. `recovered` is true when a reconnect resumed the earlier stream
   * (G: `welcome.resumed`; S: `socket.recovered`).
   */
  onReady(recovered: boolean): void;
  /** One delivered application event: its per-topic seq and send time (µs wall clock). */
  onEvent(seq: number, sentUs: number): void;
  /** The connection is gone (close frame code, or 1006 for a TCP error / refusal). */
  onClose(code: number): void;
  /** G, the echo shape: the gateway refused a publish this connection made (`nack` code). */
  onNack?(code: string): void;
}

export interface SubscribeOptions {
  /** ws://127.0.0.1:PORT (the adapter appends its own path). */
  url: string;
  /** Topic / session id. */
  topic: string;
  /** Source address (127.0.0.x) to spread the 4-tuple space; undefined: the default. */
  localAddress?: string;
  /** G only: JWT for the fresh hello. */
  token?: string;
  /** G only: cumulative ack every N events (and on `replayed`). */
  ackEvery?: number;
  handlers: SubscriberHandlers;
}

export interface Subscriber {
  /**
   * Opens a new connection that resumes this subscriber's stream where it left off (G:
   * resume token + lastSeq; S: Socket.IO connection-state recovery pid + offset; U/W: a
   * fresh subscribe, they have no recovery). Only call after onClose.
   */
  reconnect(): void;
  /** Graceful close (close frame). */
  close(): void;
  /** Bytes read and written on the current TCP socket so far (for idle wire cost). */
  bytes(): { read: number; written: number };
  /**
   * Publishes `payload` to this subscriber's own topic on its own connection (the
   * many-sessions shape: each session's one client publishes and receives its events, so
   * G needs no second socket per session). Dropped while not connected.
   */
  publish(payload: string): void;
}

export interface PublisherOptions {
  url: string;
  localAddress?: string;
  /** G only: an `agent` JWT. */
  token?: string;
  /** G only: sessions are per-connection in the protocol, so the publisher opens one connection per topic. */
  topics: readonly string[];
}

export interface Publisher {
  /** Sends one event: `payload` is the exact text every subscriber must receive. Never blocks. */
  publish(topic: string, payload: string): void;
  /** Publishes sent and not yet acknowledged (G: puback; others: 0). */
  readonly pending: number;
  /** Resolves once every publish so far is acknowledged (G), at once for the others. */
  drain(): Promise<void>;
  close(): void;
}

/** One protocol adapter per arm kind (client/<kind>.ts default-exports this). */
export interface ArmClient {
  readonly kind: ArmKind;
  subscribe(options: SubscribeOptions): Subscriber;
  publisher(options: PublisherOptions): Promise<Publisher>;
}
