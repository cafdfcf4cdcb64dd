import * as hdr from 'hdr-histogram-js';

/** Latency histogram for bench:compare: 1 µs .. 10 min at 3 significant digits. */
export function newHistogram(): hdr.Histogram {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 600e6,
    numberOfSignificantValueDigits: 3,
  });
}

/** p50/p99/p99.9/max of a µs histogram, in ms (NaN when empty). */
export function percentilesMs(h: hdr.Histogram): {
  p50: number;
  p99: number;
  p999: number;
  max: number;
  count: number;
} {
  if (h.totalCount === 0)
    return { p50: Number.NaN, p99: Number.NaN, p999: Number.NaN, max: Number.NaN, count: 0 };
  const ms = (us: number): number => Math.round(us) / 1000;
  return {
    p50: ms(h.getValueAtPercentile(50)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
    count: h.totalCount,
  };
}
