import type { Cluster, Redis } from 'ioredis';
import type { SessionListener, SessionNotice, Watch } from '../engine.ts';
import { mapRedisError } from './errors.ts';

interface Entry {
  listeners: Set<SessionListener>;
  ready: Promise<void>;
}

/**
 * Cross-node notices over Redis pub/sub (ARCHITECTURE-NOTES decision 6): the fast path.
 * Scripts publish on a session's channel — `"<head> <epoch>"` after an append,
 * `"t <generation> <subscriberId>"` after a takeover — and this class fans them out to
 * the session's watchers on this node. The node subscribes to a session's channel only
 * while something here watches it.
 *
 * Two transports: plain pub/sub on one Redis (SUBSCRIBE, `message`), and sharded pub/sub
 * on a Redis Cluster (SSUBSCRIBE, `smessage`; see clusterSubscriberClient): a channel
 * lives on the master that owns its slot, the one the session's scripts run on.
 *
 * Pub/sub loses messages across a reconnect, so after every reconnect each watcher gets
 * `resync` and re-reads the head from the stream, which stays the truth. On one Redis
 * that is the subscriber's `ready` after the first; on a cluster, ioredis's
 * `subscribersReady` (its sharded subscribers were re-created and re-subscribed after a
 * lost node or a topology change) once the cluster was ready.
 */
export class Notifications {
  readonly #sub: Redis | Cluster;
  readonly #sharded: boolean;
  readonly #channels = new Map<string, Entry>();
  #connectedOnce = false;

  constructor(subscriber: Redis, onError: (err: Error) => void);
  constructor(subscriber: Cluster, onError: (err: Error) => void, mode: 'sharded');
  constructor(
    subscriber: Redis | Cluster,
    onError: (err: Error) => void,
    mode: 'plain' | 'sharded' = 'plain',
  ) {
    this.#sub = subscriber;
    this.#sharded = mode === 'sharded';
    const dispatch = (channel: string, message: string): void => this.#dispatch(channel, message);
    subscriber.on('error', onError);
    if (this.#sharded) {
      subscriber.on('smessage', dispatch);
      subscriber.on('ready', () => (this.#connectedOnce = true));
      subscriber.on('subscribersReady', () => {
        if (this.#connectedOnce) this.#broadcast({ kind: 'resync' });
      });
    } else {
      subscriber.on('message', dispatch);
      subscriber.on('ready', () => {
        if (this.#connectedOnce) this.#broadcast({ kind: 'resync' });
        this.#connectedOnce = true;
      });
    }
  }

  watch(channel: string, listener: SessionListener): Watch {
    let entry = this.#channels.get(channel);
    if (!entry) {
      // ioredis queues this while disconnected and re-subscribes after reconnects. If it
      // fails, `ready` rejects and the watcher reads the stream instead; the subscription
      // is retried in the background (see #subscribe).
      const created: Entry = { listeners: new Set(), ready: Promise.resolve() };
      created.ready = this.#subscribe(channel, created, 0);
      created.ready.catch(() => {});
      entry = created;
      this.#channels.set(channel, entry);
    }
    const current = entry;
    current.listeners.add(listener);
    return {
      ready: current.ready,
      stop: () => {
        current.listeners.delete(listener);
        if (current.listeners.size > 0 || this.#channels.get(channel) !== current) return;
        this.#channels.delete(channel);
        (this.#sharded ? this.#sub.sunsubscribe(channel) : this.#sub.unsubscribe(channel)).catch(() => {});
      },
    };
  }

  get watchedChannels(): number {
    return this.#channels.size;
  }

  close(): void {
    this.#channels.clear();
    this.#sub.disconnect();
  }

  #dispatch(channel: string, message: string): void {
    const entry = this.#channels.get(channel);
    if (!entry) return;
    const notice = parseNotice(message);
    if (!notice) return;
    for (const listener of entry.listeners) listener(notice);
  }

  /**
   * (S)SUBSCRIBE. A failed attempt (a node lost while subscribing, a timeout) is retried
   * with a capped backoff for as long as the channel is watched, one attempt at a time so
   * nothing piles up while Redis is away; when a retry succeeds the channel's watchers get
   * `resync`, since they may have missed notices meanwhile.
   */
  #subscribe(channel: string, entry: Entry, attempt: number): Promise<void> {
    let subscribed: Promise<void>;
    try {
      subscribed = (this.#sharded ? this.#sub.ssubscribe(channel) : this.#sub.subscribe(channel)).then(
        () => undefined,
        (err: unknown) => Promise.reject(mapRedisError(err, 'subscribe')),
      );
    } catch (err) {
      // ioredis's cluster routing can throw before it has a slot map
      subscribed = Promise.reject(mapRedisError(err, 'subscribe'));
    }
    subscribed.catch(() => {
      const timer = setTimeout(
        () => {
          if (this.#channels.get(channel) !== entry) return;
          this.#subscribe(channel, entry, attempt + 1).then(
            () => {
              for (const listener of entry.listeners) listener({ kind: 'resync' });
            },
            () => {},
          );
        },
        // Capped at 1 s: while a channel is not subscribed, takeovers on other nodes are
        // only noticed when an ack is fenced.
        Math.min(100 * 2 ** Math.min(attempt, 4), 1000),
      );
      timer.unref();
    });
    return subscribed;
  }

  #broadcast(notice: SessionNotice): void {
    for (const { listeners } of this.#channels.values()) for (const listener of listeners) listener(notice);
  }
}

export function parseNotice(message: string): SessionNotice | undefined {
  const parts = message.split(' ');
  if (parts[0] === 't' && parts.length === 3) {
    const generation = Number(parts[1]);
    return Number.isSafeInteger(generation)
      ? { kind: 'takeover', generation, subscriberId: parts[2]! }
      : undefined;
  }
  if (parts.length === 2) {
    const headSeq = Number(parts[0]);
    return Number.isSafeInteger(headSeq) ? { kind: 'head', headSeq, epoch: parts[1]! } : undefined;
  }
  return undefined;
}
