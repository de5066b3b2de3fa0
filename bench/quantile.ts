/** Quantiles of bench samples, the sorted-array way (the sample at rank floor(p * n)). */

/** The p-quantile (0..1) of the finite numbers among `v`; undefined when there are none. */
export function quantile(v: readonly unknown[], p: number): number | undefined {
  const n = v.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)).sort((x, y) => x - y);
  return n.length ? n[Math.min(n.length - 1, Math.floor(p * n.length))] : undefined;
}

/** The median of `v` (NaN for none). */
export function median(v: readonly number[]): number {
  return quantile(v, 0.5) ?? NaN;
}
