/**
 * Engine calls made in one event-loop turn, sent to Redis together (issue 6): a session
 * actor makes one append per tick, one checkpoint write per connection, one takeover per
 * resume, and with thousands of sessions each of those was one script call of its own.
 * A TickQueue collects the calls of a turn and, from setImmediate (after every call of
 * the turn was made), hands them to `send` in chunks, each chunk one script call.
 *
 * - Group commit: one round of calls is in flight at a time. Calls made while a round is
 *   out wait for it to come back and then go together in the next round, so under load
 *   a round carries everything that arrived during one round trip (batches grow with the
 *   load), and at rest a call goes out at the next setImmediate as before. A call waits
 *   at most for the round before its own (each bounded by the command timeout).
 *
 * - Order: items reach `send` in the order they were pushed, so calls for one session
 *   (or one subscriber) are applied in the order they were made.
 * - Redis Cluster: a script may only touch keys of one slot. With `perSession` set, a
 *   chunk holds the items of one session only (its keys share the session's hash tag).
 * - Bounds: a chunk holds at most `maxItems` items and (unless it is a single item) at
 *   most `maxWeight` weight (events, for appends), so one script never blocks Redis long.
 * - `flush()` sends what is queued at once (engine close: before QUIT).
 */
export interface QueuedCall {
  sessionId: string;
  /** What the item costs the script (events, for an append); 1 otherwise. */
  weight: number;
}

export interface TickQueueOptions<T extends QueuedCall> {
  /** Sends one chunk; settles (never rejects) once its call is answered or failed. */
  send: (chunk: T[]) => Promise<void>;
  maxItems: number;
  maxWeight: number;
  /** True on a Redis Cluster: one session per chunk. */
  perSession: () => boolean;
}

export class TickQueue<T extends QueuedCall> {
  readonly #options: TickQueueOptions<T>;
  #items: T[] = [];
  #scheduled = false;
  /** Chunks of the current round not answered yet. */
  #inFlight = 0;
  readonly #settled = (): void => {
    this.#inFlight--;
    if (this.#inFlight === 0 && this.#items.length > 0) this.#schedule();
  };

  constructor(options: TickQueueOptions<T>) {
    this.#options = options;
  }

  push(item: T): void {
    this.#items.push(item);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight > 0) return;
    this.#scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Sends everything queued now, whether or not a round is in flight. */
  flush(): void {
    this.#scheduled = false;
    const items = this.#items;
    if (items.length === 0) return;
    this.#items = [];
    if (!this.#options.perSession()) return this.#chunked(items);
    const bySession = new Map<string, T[]>();
    for (const item of items) {
      const list = bySession.get(item.sessionId);
      if (list) list.push(item);
      else bySession.set(item.sessionId, [item]);
    }
    for (const list of bySession.values()) this.#chunked(list);
  }

  #chunked(items: readonly T[]): void {
    const { maxItems, maxWeight } = this.#options;
    let chunk: T[] = [];
    let weight = 0;
    for (const item of items) {
      if (chunk.length > 0 && (chunk.length >= maxItems || weight + item.weight > maxWeight)) {
        this.#send(chunk);
        chunk = [];
        weight = 0;
      }
      chunk.push(item);
      weight += item.weight;
    }
    if (chunk.length > 0) this.#send(chunk);
  }

  #send(chunk: T[]): void {
    this.#inFlight++;
    this.#options.send(chunk).then(this.#settled, this.#settled);
  }
}
