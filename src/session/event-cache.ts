import { jsonCodec, msgpackCodec, type Codec } from '../codec/index.ts';
import type { StoredEvent } from '../engine/engine.ts';
import type { Envelope } from '../protocol/envelope.ts';
import { UNBOUNDED_CACHE, type CacheBudget, type CacheOwner } from './cache-budget.ts';

type NodeCacheBudget = Pick<CacheBudget, 'cached'>;

/**
 * What a cached event costs beside its frames: the EncodedEvent and a Buffer object per
 * frame on the heap, and the share of the 8 KiB pool slab its frame bytes sit in
 * (`bench/tools/cached-event-heap.ts` measures it).
 */
const EVENT_OVERHEAD_BYTES = 300;

/**
 * One stored event as its encoded `ev` frames, made at most once per codec and then
 * shared by every subscriber on the node (ARCHITECTURE-NOTES decision 3).
 *
 * It keeps the frames and not the envelope. A cached event outlives the young generation
 * (a session's cache holds its recent events for seconds), and the garbage collector
 * copies everything that survives: an envelope is about ten objects (itself, its payload,
 * their strings, its JSON text), a frame is one small Buffer object whose bytes live
 * outside the JS heap. The JSON frame is the one always made: it carries the envelope's
 * own text (the stored form), so the envelope can be read back from it, exactly, if a
 * MessagePack subscriber needs a cached event whose MessagePack frame was not made.
 */
export class EncodedEvent {
  readonly seq: number;
  readonly heapBytes: number;
  readonly #json: Uint8Array;
  #msgpack: Uint8Array | undefined;

  /** `msgpack`: make that frame now too (the session has MessagePack subscribers). */
  constructor(stored: StoredEvent, msgpack = false) {
    this.seq = stored.seq;
    this.#json = jsonCodec.ev(stored.seq, stored.event);
    if (msgpack) this.#msgpack = msgpackCodec.ev(stored.seq, stored.event);
    // A MessagePack frame made later (see bytes) is not counted: at most one frame more
    // per event, and only in sessions whose MessagePack subscribers came after it.
    this.heapBytes = this.#json.byteLength + (this.#msgpack?.byteLength ?? 0) + EVENT_OVERHEAD_BYTES;
  }

  bytes(codec: Codec): Uint8Array {
    if (codec.name === 'json') return this.#json;
    return (this.#msgpack ??= codec.ev(this.seq, this.#envelope()));
  }

  /** The envelope, read back from the JSON frame: its text is the envelope's own. */
  #envelope(): Envelope {
    return (jsonCodec.decode(this.#json) as { event: Envelope }).event;
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
