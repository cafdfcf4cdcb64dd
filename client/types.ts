import type { BackoffOptions } from './backoff.ts';
import type { LifeosClientError } from './errors.ts';
import type { CodecName, Envelope, EventPayload, EventType } from './protocol.ts';
import type { CheckpointStorage } from './storage.ts';

/**
 * The WebSocket the SDK drives: the browser's, React Native's, or the `ws` package's (Node
 * 20 has no global WebSocket). Only the WHATWG surface is used: `on*` handler properties,
 * `send`, `close`, `protocol`, `binaryType` (set to "arraybuffer"); `terminate()` is used
 * when present (`ws`) to drop a dead connection at once.
 */
export type WebSocketConstructor = new (url: string, protocols: string[]) => object;

/** Listener targets for the browser integration; default `window` and `document`. */
export interface BrowserEventTargets {
  window: {
    addEventListener(type: string, listener: () => void): void;
    removeEventListener(type: string, listener: () => void): void;
  };
  document?: {
    readonly visibilityState?: string;
    addEventListener(type: string, listener: () => void): void;
    removeEventListener(type: string, listener: () => void): void;
  };
  navigator?: { readonly onLine?: boolean };
}

export interface ConnectOptions {
  /** `ws://host:port/v1/realtime` (or `wss://…`). */
  url: string;
  /**
   * The bearer JWT, or a function returning it. Called before the first fresh `hello`,
   * again when the cached JWT's `exp` is near (read without verification), and after a
   * 4001 close. Resumes need no JWT.
   */
  token: string | (() => string | Promise<string>);
  /** `json` (default) or `msgpack`: subprotocol `lifeos.v1.json` / `lifeos.v1.msgpack`. */
  codec?: CodecName;
  /** Where checkpoints live; default `memoryStorage()` (no resume across a reload). */
  storage?: CheckpointStorage;
  /** Reconnect delay: random(0, min(capMs, baseMs × 2^attempt)); default 250 / 10 000 ms. */
  backoff?: BackoffOptions;
  heartbeat?: {
    /**
     * A connection from which no frame arrived for `missed` × welcome.heartbeatMs is dead:
     * it is dropped and resumed. Default 2. The SDK pings every heartbeatMs / 2 when idle.
     */
    missed?: number;
  };
  /** Batched cumulative acks (never beyond what the application processed). */
  acks?: AckOptions;
  /** Publishes waiting for their `puback`, at most; default 1000. */
  outbox?: { max?: number };
  /** Default: globalThis.WebSocket. */
  WebSocket?: WebSocketConstructor;
  /**
   * React to `online` / `offline` and `visibilitychange` (default: true when `window`
   * exists). An object supplies the targets (tests, webviews).
   */
  browserEvents?: boolean | BrowserEventTargets;
  /** A socket that is not welcomed within this many ms is dropped and retried; default 10 000. */
  connectTimeoutMs?: number;
  /** After the page becomes visible, a live connection must answer a ping within this; default 5 000 ms. */
  probeTimeoutMs?: number;
  /** Random source for backoff jitter, [0, 1); default Math.random (tests inject one). */
  random?: () => number;
  /** Called on every state transition and reconnect decision; default: nothing. */
  log?: (msg: string, fields: Record<string, unknown>) => void;
}

export interface AckOptions {
  /** Acknowledge after this many processed events; default 32. */
  every?: number;
  /** …or this many ms after the first unacknowledged one; default 1000. */
  intervalMs?: number;
}

/** Connection state of one subscription. */
export const SubscriptionStates = ['connecting', 'live', 'resuming', 'offline', 'closed'] as const;
export type SubscriptionState = (typeof SubscriptionStates)[number];

export interface SubscribeOptions {
  /**
   * Where a new subscriber starts when storage holds no checkpoint for `key`: `"latest"`
   * (default; only events after the current head), `0` (everything retained) or a seq.
   * A stored checkpoint always wins, so a reload resumes.
   */
  after?: number | 'latest';
  /** Checkpoint key in storage; default the session id. */
  key?: string;
}

/** What an `event` listener receives. */
export interface DeliveredEvent {
  seq: number;
  event: Envelope;
}

export interface SubscriptionStats {
  /** Sockets opened after the first one. */
  reconnects: number;
  /** Welcomes that resumed an existing subscriber. */
  resumes: number;
  /** Welcomes of a new subscriber (the first subscribe included, unless it resumed from storage). */
  freshStarts: number;
  /** `ev` frames dropped because their seq was already delivered or queued. */
  duplicatesDropped: number;
  /** Events handed to the application. */
  delivered: number;
  /** headSeq − lastSeq, as far as this client knows the head. */
  lag: number;
  /** The last seq the application processed (its checkpoint); 0 before any. */
  lastSeq: number;
  /** `ack` frames sent. */
  acksSent: number;
}

export interface SubscriptionEvents {
  event: DeliveredEvent;
  state: SubscriptionState;
  /** The session ended; `seq` is its last event. The subscription is closed after it. */
  eos: { seq: number };
  /** The catch-up after a welcome is complete up to `seq`. */
  replayed: { seq: number };
  error: LifeosClientError;
}

export type SubscriptionListeners = {
  event: (ev: DeliveredEvent) => void | Promise<void>;
} & { [K in Exclude<keyof SubscriptionEvents, 'event'>]: (value: SubscriptionEvents[K]) => void };

export interface PublishOptions {
  /** The event's idempotency key; default a random 22-character id. */
  id?: string;
  /** The event's time (RFC 3339 UTC with ms); default: when the gateway accepts it. */
  ts?: string;
}

export interface PublishResult {
  id: string;
  seq: number;
}

export interface Subscription {
  readonly sessionId: string;
  readonly key: string;
  readonly state: SubscriptionState;
  readonly stats: SubscriptionStats;
  /**
   * Adds a listener; returns the function that removes it. `event` listeners run one
   * event at a time, in seq order; a returned promise is awaited before the checkpoint is
   * saved and the next event is delivered.
   */
  on<K extends keyof SubscriptionListeners>(name: K, listener: SubscriptionListeners[K]): () => void;
  publish<T extends EventType>(
    type: T,
    payload: EventPayload<T>,
    options?: PublishOptions,
  ): Promise<PublishResult>;
  /** `bye: true` ends the subscriber at the gateway and deletes its checkpoint. */
  close(options?: { bye?: boolean }): Promise<void>;
}

export interface Client {
  subscribe(sessionId: string, options?: SubscribeOptions): Subscription;
  /** Closes every subscription (without `bye`: their checkpoints stay). */
  close(): Promise<void>;
}
