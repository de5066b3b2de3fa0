/**
 * A latency histogram in microseconds with log-linear buckets: exact below 8 µs, then eight
 * buckets per power of two (HdrHistogram with three significant bits), so a percentile read back
 * as its bucket's midpoint is within 1/16 of the true value. 224 buckets reach 2^30 µs (18 min);
 * longer waits count in the last.
 */
export const LATENCY_BUCKETS = 224;

/** The bucket of `us` (rounded; negatives count as 0). */
export function latencyBucket(us: number): number {
  const v = Math.min(2 ** 31 - 1, Math.max(0, Math.round(us)));
  if (v < 8) return v;
  const e = 31 - Math.clz32(v);
  return Math.min(LATENCY_BUCKETS - 1, (e - 2) * 8 + ((v >>> (e - 3)) & 7));
}

/** The midpoint of bucket `b`, µs. */
export function bucketMidpoint(b: number): number {
  if (b < 8) return b;
  const e = (b >>> 3) + 2;
  const width = 2 ** (e - 3);
  return (8 + (b & 7)) * width + width / 2;
}

/** The `q`-quantile (0..1) of the counted samples as a bucket midpoint, µs; undefined when there are none. */
export function latencyPercentile(counts: ArrayLike<number>, q: number): number | undefined {
  let total = 0;
  for (let b = 0; b < counts.length; b++) total += counts[b]!;
  if (total === 0) return undefined;
  // The sample of rank floor(q * total) (0-based), as the host's sorted-array percentiles take it.
  const rank = Math.min(total - 1, Math.floor(q * total));
  let seen = 0;
  for (let b = 0; b < counts.length; b++) {
    seen += counts[b]!;
    if (seen > rank) return bucketMidpoint(b);
  }
  return bucketMidpoint(counts.length - 1);
}
