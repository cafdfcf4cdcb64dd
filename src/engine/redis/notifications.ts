import type { Redis } from 'ioredis';
import type { SessionListener, SessionNotice, Watch } from '../engine.ts';

/**
 * Cross-node notices over Redis pub/sub (ARCHITECTURE-NOTES decision 6): the fast path.
 * Scripts publish on a session's channel — `"<head> <epoch>"` after an append,
 * `"t <generation> <subscriberId>"` after a takeover — and this class fans them out to
 * the session's watchers on this node. The node subscribes to a session's channel only
 * while something here watches it.
 *
 * Pub/sub loses messages across a reconnect, so after every reconnect each watcher gets
 * `resync` and re-reads the head from the stream, which stays the truth.
 */
export class Notifications {
  readonly #sub: Redis;
  readonly #channels = new Map<string, { listeners: Set<SessionListener>; ready: Promise<void> }>();
  #connectedOnce = false;

  constructor(subscriber: Redis, onError: (err: Error) => void) {
    this.#sub = subscriber;
    subscriber.on('message', (channel: string, message: string) => this.#dispatch(channel, message));
    subscriber.on('error', onError);
    subscriber.on('ready', () => {
      if (this.#connectedOnce) this.#broadcast({ kind: 'resync' });
      this.#connectedOnce = true;
    });
  }

  watch(channel: string, listener: SessionListener): Watch {
    let entry = this.#channels.get(channel);
    if (!entry) {
      // ioredis queues this while disconnected and re-subscribes after reconnects. If it
      // fails, `ready` rejects and the watcher reads the stream instead.
      const ready = this.#sub.subscribe(channel).then(() => undefined);
      ready.catch(() => {});
      entry = { listeners: new Set(), ready };
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
        this.#sub.unsubscribe(channel).catch(() => {});
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
