/**
 * A seeded pseudo-random generator (mulberry32) so that a chaos run's choices — which
 * client races, which ack is stale, which node dies when — replay from one seed.
 *
 * Timing still varies between runs (the OS schedules processes), so a seed reproduces
 * the plan of a run, not every interleaving; the history file records what happened.
 * Every component takes its own `fork`, so adding a random draw in one place does not
 * shift the choices everywhere else.
 */
export class Rng {
  #state: number;
  readonly seed: number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.#state = this.seed;
  }

  /** A uniform float in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [lo, hi], both inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** Full-jitter backoff: uniform in [0, min(cap, base·2^attempt)]. */
  backoff(attempt: number, baseMs: number, capMs: number): number {
    return Math.floor(this.next() * Math.min(capMs, baseMs * 2 ** Math.min(attempt, 20)));
  }

  /** An independent generator derived from this seed and a label. */
  fork(label: string): Rng {
    let h = this.seed ^ 0x9e3779b9;
    for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193);
    return new Rng(h >>> 0);
  }
}

/** A fresh seed for a run that was not given one (printed, so it can be replayed). */
export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 32);
}
