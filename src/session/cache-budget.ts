/** Something that holds cached events and can let go of one (EventCache, RecentReads). */
export interface CacheOwner {
  /** Drops the cached event `seq` if it still holds it; anything else is a no-op. */
  evictCached(seq: number): void;
}

/**
 * The node-wide bound on cached events, across every session actor (NODE_CACHE_EVENTS).
 *
 * Each actor caches up to ACTOR_CACHE_EVENTS of its recent events, so live fan-out and
 * short catch-ups need no Redis read. That bounds one session, not the node: 5,000 busy
 * calls would hold 5 million events (several GB), and every cached event survives the
 * young generation and is copied into the old one, which is what the GC spent its time
 * on in the many-sessions benchmark (BENCHMARKS.md, session 11).
 *
 * The budget is a ring of the node's last `capacity` cache entries, in the order they
 * were cached. Recording one more entry once the ring is full evicts the oldest: the
 * least recently cached event on the node, which is also the oldest one its owner holds
 * (each owner caches its events in seq order). O(1), and no allocation per event.
 *
 * An entry whose owner already dropped the event (its own per-session bound, a cleared
 * cache) stays in the ring until it comes round, and evicting it is a no-op, so the node
 * may hold fewer than `capacity` events, never more. An evicted event is only a cache
 * miss: the actor reads it from the engine, as for any event older than its cache.
 */
export class CacheBudget {
  readonly #owners: (CacheOwner | undefined)[];
  readonly #seqs: Float64Array;
  #next = 0;

  constructor(capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new RangeError(`cache budget must be a positive integer, got ${capacity}`);
    }
    this.#owners = new Array<CacheOwner | undefined>(capacity).fill(undefined);
    this.#seqs = new Float64Array(capacity);
  }

  get capacity(): number {
    return this.#owners.length;
  }

  /** Records that `owner` now caches `seq`; evicts the node's oldest entry if the ring is full. */
  cached(owner: CacheOwner, seq: number): void {
    const at = this.#next;
    const oldest = this.#owners[at];
    if (oldest !== undefined) oldest.evictCached(this.#seqs[at]!);
    this.#owners[at] = owner;
    this.#seqs[at] = seq;
    this.#next = at + 1 === this.#owners.length ? 0 : at + 1;
  }
}

/** No node-wide bound: each owner's own capacity is the only one. */
export const UNBOUNDED_CACHE: Pick<CacheBudget, 'cached'> = { cached: () => {} };
