import type { Codec } from '../codec/index.ts';
import type { StoredEvent } from '../engine/engine.ts';

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

  bytes(codec: Codec): Uint8Array {
    const { seq, event } = this.stored;
    if (codec.name === 'json') return (this.#json ??= codec.ev(seq, event));
    return (this.#msgpack ??= codec.ev(seq, event));
  }
}

/**
 * The most recent events of a session, contiguous by seq, in a fixed-size ring. Live
 * fan-out and short catch-ups read from here; anything older comes from the engine.
 */
export class EventCache {
  readonly #ring: (EncodedEvent | undefined)[];
  /** Seq of the oldest cached event; the cache holds [#first, #first + #size). */
  #first = 1;
  #size = 0;

  constructor(capacity: number) {
    this.#ring = new Array<EncodedEvent | undefined>(Math.max(0, capacity));
  }

  get capacity(): number {
    return this.#ring.length;
  }

  /**
   * Adds the next event. A seq already cached is ignored (an append's reply and the
   * gap fill its own notice started can both bring it); a seq that does not follow the
   * cached ones restarts the cache.
   */
  push(event: EncodedEvent): void {
    const cap = this.#ring.length;
    if (cap === 0) return;
    if (this.#size > 0 && event.seq >= this.#first && event.seq < this.#first + this.#size) return;
    if (this.#size === 0 || event.seq !== this.#first + this.#size) {
      this.#ring.fill(undefined);
      this.#first = event.seq;
      this.#size = 0;
    }
    this.#ring[event.seq % cap] = event;
    if (this.#size === cap) this.#first += 1;
    else this.#size += 1;
  }

  /** The highest cached seq, or undefined when the cache is empty. */
  get lastSeq(): number | undefined {
    return this.#size === 0 ? undefined : this.#first + this.#size - 1;
  }

  clear(): void {
    this.#ring.fill(undefined);
    this.#size = 0;
  }

  get(seq: number): EncodedEvent | undefined {
    if (seq < this.#first || seq >= this.#first + this.#size) return undefined;
    return this.#ring[seq % this.#ring.length];
  }
}

/**
 * Older events that catch-up reads brought back from the engine, shared by every
 * connection of the session: when many subscribers are behind at similar positions, one
 * engine read and one encoding serve them all. Bounded; the oldest entry goes first.
 */
export class RecentReads {
  readonly #capacity: number;
  readonly #events = new Map<number, EncodedEvent>();

  constructor(capacity: number) {
    this.#capacity = Math.max(0, capacity);
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
    return event;
  }

  clear(): void {
    this.#events.clear();
  }
}
