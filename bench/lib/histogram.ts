/**
 * A small mergeable latency histogram (HDR-style log-linear buckets) for the benchmark:
 * values are non-negative integers (microseconds here); values below 128 are exact, larger
 * ones fall into one of 64 buckets per power of two, so a reported percentile is within
 * ~1.6 % of the true value. Fixed memory (≈ 1,800 counters) whatever the sample count,
 * so a worker can record every delivery and ship the counts to the parent to merge.
 */
const LINEAR = 128;
const SUB = 64;
/** Enough buckets for values up to 2^40 µs (≈ 12 days). */
const BUCKETS = LINEAR + 34 * SUB;

function bucketOf(value: number): number {
  if (value < LINEAR) return value < 0 ? 0 : Math.floor(value);
  const v = Math.floor(value);
  const exp = Math.floor(Math.log2(v)); // ≥ 7
  const shift = exp - 6;
  let mantissa = Math.floor(v / 2 ** shift); // 64..127
  if (mantissa > 127) mantissa = 127; // floating-point edge at exact powers of two
  const index = LINEAR + (shift - 1) * SUB + (mantissa - SUB);
  return Math.min(index, BUCKETS - 1);
}

/** The middle of a bucket: the value reported for any sample that fell into it. */
function valueOf(index: number): number {
  if (index < LINEAR) return index;
  const shift = Math.floor((index - LINEAR) / SUB) + 1;
  const mantissa = ((index - LINEAR) % SUB) + SUB;
  return mantissa * 2 ** shift + 2 ** (shift - 1);
}

/** What goes over IPC: sparse [bucket, count] pairs plus the exact extremes. */
export interface HistogramSnapshot {
  buckets: [number, number][];
  count: number;
  min: number;
  max: number;
  sum: number;
}

export class Histogram {
  readonly #counts = new Float64Array(BUCKETS);
  count = 0;
  min = Number.POSITIVE_INFINITY;
  max = 0;
  sum = 0;

  record(value: number): void {
    this.#counts[bucketOf(value)]! += 1;
    this.count += 1;
    this.sum += value;
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
  }

  reset(): void {
    this.#counts.fill(0);
    this.count = 0;
    this.min = Number.POSITIVE_INFINITY;
    this.max = 0;
    this.sum = 0;
  }

  /** The value at quantile q (0..1); the exact max for q = 1; NaN when empty. */
  quantile(q: number): number {
    if (this.count === 0) return Number.NaN;
    if (q >= 1) return this.max;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.#counts[i]!;
      if (seen >= rank) return Math.min(Math.max(valueOf(i), this.min), this.max);
    }
    return this.max;
  }

  get mean(): number {
    return this.count === 0 ? Number.NaN : this.sum / this.count;
  }

  snapshot(): HistogramSnapshot {
    const buckets: [number, number][] = [];
    for (let i = 0; i < BUCKETS; i++) if (this.#counts[i]! > 0) buckets.push([i, this.#counts[i]!]);
    return { buckets, count: this.count, min: this.min, max: this.max, sum: this.sum };
  }

  merge(other: HistogramSnapshot): void {
    if (other.count === 0) return;
    for (const [i, n] of other.buckets) this.#counts[i]! += n;
    this.count += other.count;
    this.sum += other.sum;
    if (other.min < this.min) this.min = other.min;
    if (other.max > this.max) this.max = other.max;
  }
}
