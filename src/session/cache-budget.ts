/** Something that holds cached events and can let go of one (EventCache, RecentReads). */
export interface CacheOwner {
  /** Drops the cached event `seq` if it still holds it; anything else is a no-op. */
  evictCached(seq: number): void;
}

/** The least an entry is counted as, which also sizes the ring: no event costs less. */
export const MIN_ENTRY_BYTES = 512;

/**
 * The node-wide bound on the memory of cached events, across every session actor
 * (NODE_CACHE_BYTES).
 *
 * Each actor caches up to ACTOR_CACHE_EVENTS of its recent events, so live fan-out and
 * short catch-ups need no Redis read. That bounds one session, not the node: 5,000 busy
 * calls would hold 5 million events, several GB. And every cached event outlives the
 * young generation and is copied into the old one, which is where the GC spent its time
 * in the many-sessions benchmark (BENCHMARKS.md, session 11).
 *
 * The budget keeps the node's cache entries in a ring, in the order they were cached,
 * with what each costs. Recording one more evicts the oldest entries until it fits: the
 * least recently cached events on the node, each also the oldest its owner holds (an
 * owner caches its events in seq order). O(1) per event, and no allocation.
 *
 * An entry whose owner already dropped the event (its own per-session bound, a cleared
 * cache) still counts until it comes round, so the node may hold less than the budget,
 * never more (but for one event larger than the whole budget, held alone). Evicting such
 * an entry is a no-op, or, if the owner has since cached the same seq again (a restarted
 * cache), drops that copy early. Either way an evicted event is only a cache miss: the
 * actor reads it from the engine, as for any event older than its cache.
 */
export class CacheBudget {
  readonly #maxBytes: number;
  readonly #owners: (CacheOwner | undefined)[];
  readonly #seqs: Float64Array;
  readonly #costs: Float64Array;
  /** Ring index of the oldest entry. */
  #oldest = 0;
  #entries = 0;
  #bytes = 0;

  constructor(maxBytes: number) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < MIN_ENTRY_BYTES) {
      throw new RangeError(
        `cache budget must be an integer of at least ${MIN_ENTRY_BYTES} bytes, got ${maxBytes}`,
      );
    }
    this.#maxBytes = maxBytes;
    const capacity = Math.floor(maxBytes / MIN_ENTRY_BYTES);
    this.#owners = new Array<CacheOwner | undefined>(capacity).fill(undefined);
    this.#seqs = new Float64Array(capacity);
    this.#costs = new Float64Array(capacity);
  }

  /** Bytes counted now (entries already dropped by their owners included). */
  get bytes(): number {
    return this.#bytes;
  }

  get entries(): number {
    return this.#entries;
  }

  /** Records that `owner` now caches `seq`, costing about `bytes`; evicts the oldest entries until it fits. */
  cached(owner: CacheOwner, seq: number, bytes: number): void {
    const cost = Math.max(bytes, MIN_ENTRY_BYTES);
    const capacity = this.#owners.length;
    while (this.#entries > 0 && (this.#entries === capacity || this.#bytes + cost > this.#maxBytes)) {
      this.#evictOldest();
    }
    const at = (this.#oldest + this.#entries) % capacity;
    this.#owners[at] = owner;
    this.#seqs[at] = seq;
    this.#costs[at] = cost;
    this.#entries++;
    this.#bytes += cost;
  }

  #evictOldest(): void {
    const at = this.#oldest;
    const owner = this.#owners[at]!;
    this.#owners[at] = undefined;
    this.#bytes -= this.#costs[at]!;
    this.#entries--;
    this.#oldest = at + 1 === this.#owners.length ? 0 : at + 1;
    owner.evictCached(this.#seqs[at]!);
  }
}

/** No node-wide bound: each owner's own capacity is the only one. */
export const UNBOUNDED_CACHE: Pick<CacheBudget, 'cached'> = { cached: () => {} };
