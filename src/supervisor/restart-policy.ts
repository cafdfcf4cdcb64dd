/**
 * When to restart a worker that died, and when to stop trying. Pure: the clock is passed
 * in, so the policy is testable without processes.
 *
 * - Backoff per worker slot: `baseDelayMs × 2^k`, capped at `maxDelayMs`, where k is how
 *   often that slot was restarted within the window (a worker that crashed once long ago
 *   comes back at once; one that keeps crashing waits longer each time).
 * - Crash-loop guard: more than `maxRestarts` restarts (all slots together) within
 *   `windowMs` means something is wrong beyond one bad request (Redis gone, a bad
 *   deploy): the primary gives up instead of spinning.
 */
export interface RestartPolicyOptions {
  maxRestarts: number;
  windowMs: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const defaultRestartPolicy: RestartPolicyOptions = {
  maxRestarts: 5,
  windowMs: 30_000,
  baseDelayMs: 100,
  maxDelayMs: 5_000,
};

export class RestartPolicy {
  readonly #options: RestartPolicyOptions;
  readonly #now: () => number;
  /** Restart times (ms) within the window, with the slot each was for. */
  #restarts: { at: number; slot: number }[] = [];

  constructor(options: RestartPolicyOptions = defaultRestartPolicy, now: () => number = Date.now) {
    this.#options = options;
    this.#now = now;
  }

  /**
   * Records that `slot` needs a restart. Returns the delay before restarting it, or
   * undefined when this restart would exceed the crash-loop limit (give up).
   */
  next(slot: number): number | undefined {
    const now = this.#now();
    const { maxRestarts, windowMs, baseDelayMs, maxDelayMs } = this.#options;
    this.#restarts = this.#restarts.filter((r) => now - r.at < windowMs);
    if (this.#restarts.length >= maxRestarts) return undefined;
    const ofSlot = this.#restarts.filter((r) => r.slot === slot).length;
    this.#restarts.push({ at: now, slot });
    return Math.min(maxDelayMs, baseDelayMs * 2 ** ofSlot);
  }
}
