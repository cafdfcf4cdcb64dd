/** Reconnect delays: exponential with full jitter. */
export interface BackoffOptions {
  /** Delay scale of the first retry, in ms; default 250. */
  baseMs?: number;
  /** Upper bound of any delay, in ms; default 10 000. */
  capMs?: number;
}

export const DEFAULT_BACKOFF = { baseMs: 250, capMs: 10_000 } as const;

/**
 * "Full jitter": a uniformly random delay in [0, min(cap, base × 2^attempt)), so a fleet
 * of clients dropped at once does not come back at once. `attempt` counts from 0 and
 * resets once a connection is welcomed. `random` returns [0, 1) like Math.random.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const base = options.baseMs ?? DEFAULT_BACKOFF.baseMs;
  const cap = options.capMs ?? DEFAULT_BACKOFF.capMs;
  // 2^attempt overflows to Infinity long after it passed any cap; min() keeps it finite.
  const ceiling = Math.min(cap, base * 2 ** Math.max(0, attempt));
  return Math.floor(random() * ceiling);
}
