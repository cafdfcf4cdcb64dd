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
 * - Paced rounds (`maxRoundItems`): a round carries at most that many items, and the rest
 *   waits for the next round. The engine's queues share one connection, and Redis answers
 *   it in order: 10,000 clients acking together made twenty checkpoint scripts, sent in
 *   one round, and an append made just after them waited for all twenty (session 10).
 *   Paced, it waits for one. Building the chunks is paced too, so the gateway's own loop
 *   is not held for the whole burst either.
 * - `flush()` sends everything queued at once, paced or not (engine close: before QUIT).
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
  /** Most items one round sends (see above); every queued item when unset. */
  maxRoundItems?: number;
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
    setImmediate(() => this.#round(this.#options.maxRoundItems ?? Infinity));
  }

  /** Sends everything queued now, whether or not a round is in flight. */
  flush(): void {
    this.#round(Infinity);
  }

  /** Sends up to `budget` queued items, in chunks; the rest stays queued, in order. */
  #round(budget: number): void {
    this.#scheduled = false;
    if (this.#items.length === 0) return;
    const perSession = this.#options.perSession();
    const items = perSession ? bySession(this.#items) : this.#items;
    this.#items = [];
    const { maxItems, maxWeight } = this.#options;
    let chunk: T[] = [];
    let weight = 0;
    let i = 0;
    for (; i < items.length && i < budget; i++) {
      const item = items[i]!;
      const full = chunk.length >= maxItems || weight + item.weight > maxWeight;
      if (chunk.length > 0 && (full || (perSession && item.sessionId !== chunk[0]!.sessionId))) {
        this.#send(chunk);
        chunk = [];
        weight = 0;
      }
      chunk.push(item);
      weight += item.weight;
    }
    if (chunk.length > 0) this.#send(chunk);
    // what the budget left goes first, before anything pushed meanwhile
    if (i < items.length) this.#items = items.slice(i).concat(this.#items);
  }

  #send(chunk: T[]): void {
    this.#inFlight++;
    this.#options.send(chunk).then(this.#settled, this.#settled);
  }
}

/** The items grouped by session, sessions in order of first appearance, each in order. */
function bySession<T extends QueuedCall>(items: readonly T[]): T[] {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const list = groups.get(item.sessionId);
    if (list) list.push(item);
    else groups.set(item.sessionId, [item]);
  }
  return [...groups.values()].flat();
}
