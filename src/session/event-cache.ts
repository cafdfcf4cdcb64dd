import type { Codec } from '../codec/index.ts';
import type { StoredEvent } from '../engine/engine.ts';
import { envelopeText } from '../protocol/envelope-text.ts';
import { UNBOUNDED_CACHE, type CacheBudget, type CacheOwner } from './cache-budget.ts';

type NodeCacheBudget = Pick<CacheBudget, 'cached'>;

/** A cached event's objects beside its payload text (see EncodedEvent#heapBytes). */
const EVENT_OVERHEAD_BYTES = 700;

/**
 * One stored event and its encoded `ev` frame, made at most once per codec and then
 * shared by every subscriber on the node (ARCHITECTURE-NOTES decision 3).
 */
export class EncodedEvent {
  readonly seq: number;
  readonly stored: StoredEvent;
  #json: Uint8Array | undefined;
  #msgpack: Uint8Array | undefined;

  constructor(stored: StoredEvent) {
    this.seq = stored.seq;
    this.stored = stored;
  }

  /**
   * About what holding it costs the heap, for the node's CacheBudget: the payload is held
   * three times (in the envelope, in its JSON text, in the encoded frame), plus about
   * 0.7 KB of objects (`bench/tools/cached-event-heap.ts` measures it).
   */
  get heapBytes(): number {
    return 3 * envelopeText(this.stored.event).length + EVENT_OVERHEAD_BYTES;
  }

  bytes(codec: Codec): Uint8Array {
    const { seq, event } = this.stored;
    if (codec.name === 'json') return (this.#json ??= codec.ev(seq, event));
    return (this.#msgpack ??= codec.ev(seq, event));
  }
}

/** A new cache's ring: most sessions never need the full capacity, so it grows on demand. */
const INITIAL_RING = 16;

/**
 * The most recent events of a session, contiguous by seq, in a ring of at most
 * `capacity` (ACTOR_CACHE_EVENTS). Live fan-out and short catch-ups read from here;
 * anything older comes from the engine. Every cached event is also recorded in the
 * node's CacheBudget, which may evict this cache's oldest event to keep the node's total
 * bounded.
 */
export class EventCache implements CacheOwner {
  readonly #capacity: number;
  readonly #budget: NodeCacheBudget;
  #ring: (EncodedEvent | undefined)[];
  /** Seq of the oldest cached event; the cache holds [#first, #first + #size). */
  #first = 1;
  #size = 0;

  constructor(capacity: number, budget: NodeCacheBudget = UNBOUNDED_CACHE) {
    this.#capacity = Math.max(0, capacity);
    this.#budget = budget;
    this.#ring = newRing(Math.min(this.#capacity, INITIAL_RING));
  }

  get capacity(): number {
    return this.#capacity;
  }

  /**
   * Adds the next event. A seq already cached is ignored (an append's reply and the
   * gap fill its own notice started can both bring it); a seq that does not follow the
   * cached ones restarts the cache.
   */
  push(event: EncodedEvent): void {
    if (this.#capacity === 0) return;
    const seq = event.seq;
    if (this.#size > 0 && seq >= this.#first && seq < this.#first + this.#size) return;
    if (this.#size === 0 || seq !== this.#first + this.#size) {
      this.clear();
      this.#first = seq;
    }
    if (this.#size === this.#ring.length && this.#ring.length < this.#capacity) this.#grow();
    const ring = this.#ring;
    ring[seq % ring.length] = event;
    if (this.#size === ring.length) this.#first += 1;
    else this.#size += 1;
    this.#budget.cached(this, seq, event.heapBytes);
  }

  /** The node's budget is full: drop this cache's oldest event, if `seq` is still it. */
  evictCached(seq: number): void {
    if (this.#size === 0 || seq !== this.#first) return;
    this.#ring[seq % this.#ring.length] = undefined;
    this.#first += 1;
    this.#size -= 1;
  }

  /** The highest cached seq, or undefined when the cache is empty. */
  get lastSeq(): number | undefined {
    return this.#size === 0 ? undefined : this.#first + this.#size - 1;
  }

  /** How many events it holds. */
  get size(): number {
    return this.#size;
  }

  clear(): void {
    this.#ring.fill(undefined);
    this.#size = 0;
  }

  get(seq: number): EncodedEvent | undefined {
    if (seq < this.#first || seq >= this.#first + this.#size) return undefined;
    return this.#ring[seq % this.#ring.length];
  }

  #grow(): void {
    const old = this.#ring;
    const ring = newRing(Math.min(this.#capacity, old.length * 2));
    for (let seq = this.#first; seq < this.#first + this.#size; seq++)
      ring[seq % ring.length] = old[seq % old.length];
    this.#ring = ring;
  }
}

const newRing = (length: number): (EncodedEvent | undefined)[] =>
  new Array<EncodedEvent | undefined>(length).fill(undefined);

/**
 * Older events that catch-up reads brought back from the engine, shared by every
 * connection of the session: when many subscribers are behind at similar positions, one
 * engine read and one encoding serve them all. Bounded by `capacity` and by the node's
 * CacheBudget; the oldest entry goes first.
 */
export class RecentReads implements CacheOwner {
  readonly #capacity: number;
  readonly #budget: NodeCacheBudget;
  readonly #events = new Map<number, EncodedEvent>();

  constructor(capacity: number, budget: NodeCacheBudget = UNBOUNDED_CACHE) {
    this.#capacity = Math.max(0, capacity);
    this.#budget = budget;
  }

  get(seq: number): EncodedEvent | undefined {
    return this.#events.get(seq);
  }

  /** Returns the shared instance for this seq, keeping the first one seen. */
  share(event: EncodedEvent): EncodedEvent {
    const known = this.#events.get(event.seq);
    if (known) return known;
    if (this.#capacity === 0) return event;
    this.#events.set(event.seq, event);
    if (this.#events.size > this.#capacity) this.#events.delete(this.#events.keys().next().value!);
    this.#budget.cached(this, event.seq, event.heapBytes);
    return event;
  }

  evictCached(seq: number): void {
    this.#events.delete(seq);
  }

  clear(): void {
    this.#events.clear();
  }
}
