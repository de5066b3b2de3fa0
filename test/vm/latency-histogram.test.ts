// The vCPU's fault-wait histogram (src/vm/latency-histogram.ts): every value lands in a bucket
// whose midpoint is within 1/16 of it, and percentiles agree with a sorted array's.
import { describe, expect, it } from 'vitest';
import { bucketMidpoint, LATENCY_BUCKETS, latencyBucket, latencyPercentile } from '../../src/vm/latency-histogram.ts';

describe('latency histogram', () => {
  it('buckets are monotonic, exact below 8 us, and their midpoints within 1/16 of every value', () => {
    let last = -1;
    for (let us = 0; us < 2 ** 22; us = us < 64 ? us + 1 : Math.ceil(us * 1.003)) {
      const b = latencyBucket(us);
      expect(b).toBeGreaterThanOrEqual(last);
      last = b;
      if (us < 8) expect(bucketMidpoint(b)).toBe(us);
      else expect(Math.abs(bucketMidpoint(b) - us) / us).toBeLessThanOrEqual(1 / 16);
    }
    expect(latencyBucket(-5)).toBe(0);
    expect(latencyBucket(2 ** 40)).toBe(LATENCY_BUCKETS - 1);
    // The last bucket begins at 15 × 2^26 µs: the buckets reach 2^30 µs (18 min), each within 1/16.
    expect(latencyBucket(15 * 2 ** 26 - 1)).toBe(LATENCY_BUCKETS - 2);
    expect(latencyBucket(15 * 2 ** 26)).toBe(LATENCY_BUCKETS - 1);
    expect(Math.abs(bucketMidpoint(LATENCY_BUCKETS - 1) - (2 ** 30 - 1)) / (2 ** 30)).toBeLessThanOrEqual(1 / 16);
  });

  it('p50 and p99 match the sorted samples to within 1/16', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const samples = Array.from({ length: 5000 }, () => Math.round(200 + 5000 * rnd() ** 3));
    const counts = new Array<number>(LATENCY_BUCKETS).fill(0);
    for (const s of samples) counts[latencyBucket(s)]!++;
    const sorted = [...samples].sort((a, b) => a - b);
    for (const q of [0.5, 0.99]) {
      const exact = sorted[Math.floor(q * sorted.length)]!;
      expect(Math.abs(latencyPercentile(counts, q)! - exact) / exact).toBeLessThanOrEqual(1 / 16);
    }
    expect(latencyPercentile(new Array<number>(LATENCY_BUCKETS).fill(0), 0.5)).toBeUndefined();
  });
});
