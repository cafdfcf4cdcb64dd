import { DEFAULT_BACKOFF } from './backoff.ts';
import { codecFor } from './codec.ts';
import { LifeosClientError } from './errors.ts';
import { Subprotocols } from './protocol.ts';
import { memoryStorage } from './storage.ts';
import { SubscriptionImpl, type Runtime } from './subscription.ts';
import type {
  BrowserEventTargets,
  Client,
  ConnectOptions,
  SubscribeOptions,
  Subscription,
  WebSocketConstructor,
} from './types.ts';
import { jwtExpiryMs } from './util.ts';

/** Defaults of every option, units in the names. */
export const DEFAULTS = {
  codec: 'json',
  heartbeatMissed: 2,
  ackEvery: 32,
  /**
   * An ack costs the gateway about as much as delivering an event (a receive and a
   * checkpoint write), and this client resumes from its own saved seq, not the gateway's
   * checkpoint: a second is cheap for both. BENCHMARKS.md measured 250 ms against 1000.
   */
  ackIntervalMs: 1000,
  outboxMax: 1000,
  connectTimeoutMs: 10_000,
  probeTimeoutMs: 5_000,
  /** A cached JWT is renewed when it expires within this many ms. */
  tokenRenewBeforeMs: 30_000,
} as const;

function positive(name: string, value: number | undefined, fallback: number, errors: string[]): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)
    errors.push(`${name} must be a positive number`);
  return value;
}

function browserTargets(option: ConnectOptions['browserEvents']): BrowserEventTargets | undefined {
  if (option === false) return undefined;
  if (typeof option === 'object') return option;
  const g = globalThis as Partial<BrowserEventTargets>;
  if (typeof g.window?.addEventListener !== 'function') return undefined;
  const targets: BrowserEventTargets = { window: g.window };
  if (typeof g.document?.addEventListener === 'function') targets.document = g.document;
  if (g.navigator) targets.navigator = g.navigator;
  return targets;
}

/**
 * Opens a client: nothing connects until `subscribe()`. Each subscription has its own
 * WebSocket, reconnects and resumes on its own, and stops only on `close()`, `eos` or a
 * close code that means "stop" (PROTOCOL.md §5).
 *
 * Throws a TypeError listing every invalid option at once.
 */
export function connect(options: ConnectOptions): Client {
  const errors: string[] = [];
  if (typeof options.url !== 'string' || !/^wss?:\/\//.test(options.url))
    errors.push('url must be a ws:// or wss:// URL');
  if (typeof options.token !== 'string' && typeof options.token !== 'function')
    errors.push('token must be a string or a function');
  const codecName = options.codec ?? DEFAULTS.codec;
  if (!Object.hasOwn(Subprotocols, codecName)) errors.push('codec must be "json" or "msgpack"');
  const WebSocketCtor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (typeof WebSocketCtor !== 'function')
    errors.push('no WebSocket in this environment: pass options.WebSocket (e.g. the `ws` package)');
  const baseMs = positive('backoff.baseMs', options.backoff?.baseMs, DEFAULT_BACKOFF.baseMs, errors);
  const capMs = positive('backoff.capMs', options.backoff?.capMs, DEFAULT_BACKOFF.capMs, errors);
  const heartbeatMissed = positive(
    'heartbeat.missed',
    options.heartbeat?.missed,
    DEFAULTS.heartbeatMissed,
    errors,
  );
  const ackEvery = positive('acks.every', options.acks?.every, DEFAULTS.ackEvery, errors);
  const ackIntervalMs = positive('acks.intervalMs', options.acks?.intervalMs, DEFAULTS.ackIntervalMs, errors);
  const outboxMax = positive('outbox.max', options.outbox?.max, DEFAULTS.outboxMax, errors);
  const connectTimeoutMs = positive(
    'connectTimeoutMs',
    options.connectTimeoutMs,
    DEFAULTS.connectTimeoutMs,
    errors,
  );
  const probeTimeoutMs = positive('probeTimeoutMs', options.probeTimeoutMs, DEFAULTS.probeTimeoutMs, errors);
  if (errors.length > 0) throw new TypeError(`lifeos client: ${errors.join('; ')}`);

  const log = options.log ?? (() => {});
  const subscriptions = new Set<SubscriptionImpl>();

  // One JWT cache for every subscription of this client; concurrent requests share one call.
  let jwt: string | undefined;
  let jwtExpiry: number | undefined;
  let pending: Promise<string> | undefined;
  const token = (force: boolean): Promise<string> => {
    const provider = options.token;
    if (typeof provider === 'string') return Promise.resolve(provider);
    const fresh =
      jwt !== undefined && (jwtExpiry === undefined || jwtExpiry - DEFAULTS.tokenRenewBeforeMs > Date.now());
    if (!force && fresh) return Promise.resolve(jwt!);
    pending ??= (async () => {
      try {
        const t = await provider();
        if (typeof t !== 'string' || t === '')
          throw new LifeosClientError('token_failed', 'the token provider returned no token');
        jwt = t;
        jwtExpiry = jwtExpiryMs(t);
        return t;
      } finally {
        pending = undefined;
      }
    })();
    return pending;
  };

  const targets = browserTargets(options.browserEvents);
  const onOffline = () => subscriptions.forEach((s) => s.goOffline());
  const onOnline = () => subscriptions.forEach((s) => s.goOnline());
  const onVisibility = () => {
    if (targets?.document?.visibilityState === 'visible') subscriptions.forEach((s) => s.checkLiveness());
  };
  if (targets) {
    targets.window.addEventListener('offline', onOffline);
    targets.window.addEventListener('online', onOnline);
    targets.document?.addEventListener('visibilitychange', onVisibility);
  }

  const runtime: Runtime = {
    url: options.url,
    codec: codecFor(codecName),
    storage: options.storage ?? memoryStorage(),
    backoff: { baseMs, capMs },
    heartbeatMissed,
    ackEvery,
    ackIntervalMs,
    outboxMax,
    WebSocket: WebSocketCtor!,
    connectTimeoutMs,
    probeTimeoutMs,
    random: options.random ?? Math.random,
    log,
    token,
    isOffline: () => targets?.navigator?.onLine === false,
    onClosed: (sub) => subscriptions.delete(sub),
  };

  let closed = false;
  return {
    subscribe(sessionId: string, subscribeOptions?: SubscribeOptions): Subscription {
      if (closed) throw new LifeosClientError('closed', 'client is closed');
      if (typeof sessionId !== 'string' || sessionId === '')
        throw new TypeError('subscribe: sessionId must be a non-empty string');
      const sub = new SubscriptionImpl(runtime, sessionId, subscribeOptions);
      subscriptions.add(sub);
      return sub;
    },
    async close(): Promise<void> {
      closed = true;
      if (targets) {
        targets.window.removeEventListener('offline', onOffline);
        targets.window.removeEventListener('online', onOnline);
        targets.document?.removeEventListener('visibilitychange', onVisibility);
      }
      await Promise.all([...subscriptions].map((s) => s.close()));
    },
  };
}
