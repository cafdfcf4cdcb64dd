/**
 * Engine calls made in one event-loop turn, sent to Redis together (issue 6): a session
 * actor makes one append per tick, one checkpoint write per connection, one takeover per
 * resume, and with thousands of sessions each of those was one script call of its own.
 * A TickQueue collects the calls of a turn and, from setImmediate (after every call of
 * the turn was made), hands them to `send` in chunks, each chunk one script call.
 *
 * - Lanes and group commit: each lane has one round of calls in flight at a time. Calls
 *   made while its round is out wait for it to come back and then go together in the
 *   lane's next round, so under load a round carries everything that arrived during one
 *   round trip (batches grow with the load), and at rest a call goes out at the next
 *   setImmediate. A call waits at most for the round before its own (each bounded by the
 *   command timeout).
 *   - On one Redis the whole queue is one lane: a round batches every session's calls.
 *   - On a Redis Cluster each session is a lane of its own (`perSession`), and a chunk
 *     holds one session's calls: a script may only touch keys of one slot, and a master
 *     that stalls holds up only the sessions it stores. With one lane for the whole
 *     node, a round that waited for a stopped master held every other session's calls
 *     until it timed out (test/multinode/cluster-slow-master.test.ts).
 * - Order: a lane's items reach `send` in the order they were pushed, so calls for one
 *   session (or one subscriber) are applied in the order they were made.
 * - Bounds: a chunk holds at most `maxItems` items and (unless it is a single item) at
 *   most `maxWeight` weight (events, for appends), so one script never blocks Redis long.
 * - Paced queues (`maxRoundItems`): at most that many items are in flight at once, over
 *   all lanes, and the rest waits for room. The engine's queues share a connection, and
 *   Redis answers it in order: 10,000 clients acking together made twenty checkpoint
 *   scripts, sent in one round, and an append made just after them waited for all twenty
 *   (session 10). Paced, it waits for one. Building the chunks is paced too, so the
 *   gateway's own loop is not held for the whole burst either. On a cluster the budget
 *   spans the masters. With one per master, 3,000 sessions' checkpoints in one tick (one
 *   script each) made an append behind them wait 53-57 ms, against 14-28 ms for the
 *   single round of before; with one budget, 12-36 ms against 20-42 ms in alternating
 *   runs (bench/tools/cluster-checkpoint-burst.ts).
 * - Stalls (`stallMs`, paced queues): a chunk unanswered for that long stops counting
 *   against the budget. Without it a stopped master's calls took the whole budget within
 *   a few rounds and held it until they timed out: with one of three masters stopped, the
 *   other masters' checkpoints of a 3,000-session burst waited 2.1 s, the command
 *   timeout (`cluster-checkpoint-burst.ts --stall`). A lane still has one round out at a
 *   time, so a stalled master gets no more than one chunk per session of its own.
 * - Alone: a call of a session in `alone` (DataFaults: its keys made Redis refuse a script)
 *   is a chunk of its own, so its refusal does not fail the calls it would have shared a
 *   script with.
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
  /** Paced queues: most items in flight at once (see above). Unset: every queued item goes. */
  maxRoundItems?: number;
  /** True on a Redis Cluster: a lane, and so a chunk, per session. */
  perSession: boolean;
  /** Sessions whose calls are sent one per chunk (see DataFaults). */
  alone?: { readonly size: number; has(sessionId: string): boolean };
  /** Paced queues: a chunk out this long no longer counts against the budget (see above). */
  stallMs?: number;
}

/** A chunk out, as the budget sees it. */
interface Flight {
  size: number;
  sentAt: number;
  /** In #inFlight still: neither answered nor taken for stalled. */
  counted: boolean;
}

interface Lane<T> {
  sessionId: string;
  /** Queued, in the order they were pushed. */
  items: T[];
  /** Chunks of the lane's round not answered yet. */
  out: number;
}

export class TickQueue<T extends QueuedCall> {
  readonly #options: TickQueueOptions<T>;
  readonly #budget: number;
  /** One Redis: the only lane, kept for good. */
  readonly #single: Lane<T> = { sessionId: '', items: [], out: 0 };
  /** A cluster: a lane per session with calls queued or out, dropped once it has neither. */
  readonly #lanes = new Map<string, Lane<T>>();
  /** Lanes with items and no round out, in the order they became so. */
  readonly #ready = new Set<Lane<T>>();
  /** Items sent and not answered yet (what a paced queue's budget counts). */
  #inFlight = 0;
  /**
   * A paced queue's chunks out, in the order they were sent (and so by age), from
   * `#oldest` on: the ones before it are answered or taken for stalled.
   */
  #flights: Flight[] = [];
  #oldest = 0;
  /** Set while the budget is full: runs the round again once the oldest chunk out stalls. */
  #stallTimer: NodeJS.Timeout | undefined;
  #scheduled = false;

  constructor(options: TickQueueOptions<T>) {
    this.#options = options;
    this.#budget = options.maxRoundItems ?? Infinity;
  }

  push(item: T): void {
    const lane = this.#laneOf(item.sessionId);
    lane.items.push(item);
    if (lane.out === 0) {
      this.#ready.add(lane);
      this.#schedule();
    }
  }

  /** Sends everything queued now, whether or not a round is in flight. */
  flush(): void {
    this.#scheduled = false;
    this.#ready.clear();
    const lanes = this.#options.perSession ? [...this.#lanes.values()] : [this.#single];
    for (const lane of lanes) if (lane.items.length > 0) this.#sendRound(lane, Infinity);
  }

  #laneOf(sessionId: string): Lane<T> {
    if (!this.#options.perSession) return this.#single;
    let lane = this.#lanes.get(sessionId);
    if (lane === undefined) {
      lane = { sessionId, items: [], out: 0 };
      this.#lanes.set(sessionId, lane);
    }
    return lane;
  }

  #schedule(): void {
    if (this.#scheduled || this.#ready.size === 0) return;
    this.#scheduled = true;
    setImmediate(this.#round);
  }

  /** The waiting lanes' rounds, in the order they became ready, as far as the budget allows. */
  readonly #round = (): void => {
    this.#scheduled = false;
    for (const lane of this.#ready) {
      let room = this.#budget - this.#inFlight;
      if (room <= 0) room = this.#writeOffStalls();
      if (room <= 0) break;
      this.#ready.delete(lane);
      this.#sendRound(lane, room);
    }
  };

  /** Sends up to `budget` of the lane's items, in chunks; the rest stays queued, in order. */
  #sendRound(lane: Lane<T>, budget: number): void {
    const items = lane.items;
    lane.items = [];
    const { maxItems, maxWeight, alone } = this.#options;
    const isolating = alone !== undefined && alone.size > 0;
    let chunk: T[] = [];
    let weight = 0;
    let i = 0;
    for (; i < items.length && i < budget; i++) {
      const item = items[i]!;
      // its session's other calls go alone too, so they still reach Redis in order
      if (isolating && alone.has(item.sessionId)) {
        this.#send(lane, [item]);
        continue;
      }
      if (chunk.length > 0 && (chunk.length >= maxItems || weight + item.weight > maxWeight)) {
        this.#send(lane, chunk);
        chunk = [];
        weight = 0;
      }
      chunk.push(item);
      weight += item.weight;
    }
    if (chunk.length > 0) this.#send(lane, chunk);
    // what the budget left goes first, before anything pushed meanwhile
    if (i < items.length) lane.items = items.slice(i).concat(lane.items);
  }

  #send(lane: Lane<T>, chunk: T[]): void {
    lane.out++;
    this.#inFlight += chunk.length;
    if (this.#budget === Infinity || this.#options.stallMs === undefined) {
      const settled = (): void => {
        this.#inFlight -= chunk.length;
        this.#settled(lane);
      };
      this.#options.send(chunk).then(settled, settled);
      return;
    }
    const flight: Flight = { size: chunk.length, sentAt: performance.now(), counted: true };
    this.#flights.push(flight);
    const settled = (): void => {
      if (flight.counted) {
        flight.counted = false;
        this.#inFlight -= flight.size;
      }
      this.#dropAnswered();
      this.#settled(lane);
    };
    this.#options.send(chunk).then(settled, settled);
  }

  /**
   * The budget is full: chunks out for stallMs or more stop counting against it. Returns
   * the room that makes; with none, the round runs again when the oldest chunk out stalls.
   */
  #writeOffStalls(): number {
    const stallMs = this.#options.stallMs;
    if (stallMs === undefined || this.#budget === Infinity) return 0;
    const stalledBefore = performance.now() - stallMs;
    const flights = this.#flights;
    let i = this.#oldest;
    for (; i < flights.length; i++) {
      const flight = flights[i]!;
      if (!flight.counted) continue;
      if (flight.sentAt > stalledBefore) break;
      flight.counted = false;
      this.#inFlight -= flight.size;
    }
    this.#oldest = i;
    const room = this.#budget - this.#inFlight;
    if (room <= 0 && this.#stallTimer === undefined && i < flights.length) {
      this.#stallTimer = setTimeout(this.#stalled, Math.max(1, flights[i]!.sentAt - stalledBefore));
      this.#stallTimer.unref();
    }
    this.#dropAnswered();
    return room;
  }

  readonly #stalled = (): void => {
    this.#stallTimer = undefined;
    this.#schedule();
  };

  /** Forgets the flights that no longer count at the front of the list. */
  #dropAnswered(): void {
    const flights = this.#flights;
    let i = this.#oldest;
    while (i < flights.length && !flights[i]!.counted) i++;
    if (i === flights.length) {
      flights.length = 0;
      i = 0;
    } else if (i >= 1024) {
      flights.splice(0, i);
      i = 0;
    }
    this.#oldest = i;
  }

  #settled(lane: Lane<T>): void {
    if (--lane.out === 0) {
      if (lane.items.length > 0) this.#ready.add(lane);
      else if (lane !== this.#single) this.#lanes.delete(lane.sessionId);
    }
    // this lane's next round, or room in the budget for others waiting on it
    this.#schedule();
  }
}
