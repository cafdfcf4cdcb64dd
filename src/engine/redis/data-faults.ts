import type { Clock } from '../../util/clock.ts';

/** How long a session's calls go alone after Redis last refused one for its data. */
export const DATA_FAULT_QUARANTINE_MS = 60_000;
/** Sessions remembered at once; past it the oldest is forgotten (it is batched again). */
const MAX_QUARANTINED = 1_024;

/**
 * Sessions whose keys made Redis refuse a script for their data (WRONGTYPE: a key left by
 * another program or an older layout; see errors.ts isDataFault), so their calls are sent
 * alone for a while instead of batched with other sessions' (TickQueue's `alone`).
 *
 * EngineCore#sendChunk already resends a refused batch call by call, so only the faulty
 * call fails. Without a memory of it, every later round the faulty session shared paid
 * that again: the refused batch, then one call per session, and every neighbour's append
 * stored by the refused run came back as a duplicate. Quarantined, a round costs its
 * batch plus one call for the faulty session, and the batch is not refused.
 *
 * A fault is remembered for DATA_FAULT_QUARANTINE_MS after the last one, so a session
 * whose keys were repaired is batched again within a minute; a healthy call alone costs
 * one extra script call per round meanwhile, nothing more. Bounded: MAX_QUARANTINED.
 */
export class DataFaults {
  readonly #clock: Clock;
  /** Session → until when its calls go alone; in the order of their latest fault. */
  readonly #until = new Map<string, number>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  get size(): number {
    return this.#until.size;
  }

  /** Remembers a refusal of one of the session's calls; true when it was not quarantined. */
  add(sessionId: string): boolean {
    const known = this.has(sessionId);
    this.#until.delete(sessionId); // to the end of the order
    if (this.#until.size >= MAX_QUARANTINED) {
      const oldest = this.#until.keys().next().value;
      if (oldest !== undefined) this.#until.delete(oldest);
    }
    this.#until.set(sessionId, this.#clock.now() + DATA_FAULT_QUARANTINE_MS);
    return !known;
  }

  /** Whether the session's calls go alone now. O(1); free while nothing is quarantined. */
  has(sessionId: string): boolean {
    if (this.#until.size === 0) return false;
    const until = this.#until.get(sessionId);
    if (until === undefined) return false;
    if (until > this.#clock.now()) return true;
    this.#until.delete(sessionId);
    return false;
  }
}
