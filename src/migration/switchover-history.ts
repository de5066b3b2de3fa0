/**
 * What a stop-and-copy moves per millisecond, learned from the switch-overs this host made.
 *
 * A pre-copy round understates it: the round shares the CPU and the memory bus with a running
 * guest, and the stop-and-copy does not (on loopback with two cores the stop-and-copy moved
 * 2-3x the last round's rate). The expected downtime that decides the switch-over predicts a
 * stop-and-copy, so it should use a stop-and-copy's rate. Each pre-copy switch-over that ends
 * with the destination's answer leaves a sample, kept per destination and bandwidth cap (plain
 * page frames only: how fast encoded pages move depends on how well they encode, the workload's):
 *   - how long the pause and the last harvest took (the fixed part of a downtime),
 *   - the rate the stopped guest's pages moved at (from the harvest to the acknowledgement),
 *   - and that rate as a multiple of the migration's last round's rate.
 * The samples' sending times are fitted to a line (a fixed part, then a rate: a pipeline that
 * starts, then streams). The next migration there expects its stop-and-copy at its own last
 * round's rate times the lowest multiple seen (the link may have changed since: the multiple
 * follows it), never faster than the fastest stop-and-copy measured nor than the fitted rate where
 * samples of several sizes gave one, after
 * the median pause and the fixed part; all of it slowed by a margin for the stop-and-copy's own
 * spread, widened when the samples' own measured estimates were beaten by more.
 * With no sample yet, for a size beyond EXTRAPOLATE_UP_TO of the largest measured, and for encoded
 * pages, the round's own rate stands (convergence.ts), as QEMU's estimate does.
 */

/** Samples kept per key (destination and bandwidth cap). */
export const SAMPLES_KEPT = 5;
/** A stop-and-copy that moved less says little about a rate (it is mostly fixed cost); it still times the pause. */
export const MIN_RATE_SAMPLE_BYTES = 1024 * 1024;
/**
 * A stop-and-copy of one size varies by itself: p99 ÷ p50 of 1.2-1.34 for 16 and 64 MiB in
 * `bench/migration.ts` here (10 runs). An estimate the downtime limit relies on allows for that, and
 * for more where the samples' own estimates were beaten by more (up to MAX_MARGIN).
 */
export const MIN_MARGIN = 1.25;
export const MAX_MARGIN = 4;
/**
 * Sizes beyond what was measured are not extrapolated to: a 256 MiB stop-and-copy ran at 0.85 of
 * the rate a line through 16 and 64 MiB samples gave, and went 2 ms over its limit (bench, 1 in 10).
 */
export const EXTRAPOLATE_UP_TO = 1.5;
/** Destinations remembered, the least recently used forgotten first. */
export const MAX_DESTINATIONS = 64;

export interface SwitchoverSample {
  /** Page-frame bytes the stop-and-copy sent (plain frames: encoded stop-and-copies are not sampled). */
  bytes: number;
  /** From the guest's pause to the last harvest of its dirty pages. */
  pauseMs: number;
  /** From the harvest to the destination's acknowledgement: the pages, the state section, one round trip. */
  sendMs: number;
  /** The last pre-copy round's rate, plain bytes per ms. */
  roundRate: number;
  /** The downtime a measured estimate expected of this switch-over, if one decided it. */
  expectedMs?: number;
}

/** What the next stop-and-copy to a destination is expected to cost. */
export interface SwitchoverEstimate {
  /** Plain page-frame bytes per ms, margin included. */
  rate: number;
  /** The pause and the last harvest, then the sending pipeline's start (the fitted line's fixed part), margin included, ms. */
  fixedMs: number;
  /** Samples the rate came from. */
  samples: number;
  /** How much slower than a plain estimate it is taken to be (MIN_MARGIN, or the worst miss of the samples). */
  margin: number;
}

export class SwitchoverHistory {
  private readonly byKey = new Map<string, SwitchoverSample[]>();

  record(key: string, s: SwitchoverSample): void {
    if (![s.bytes, s.pauseMs, s.sendMs, s.roundRate].every(Number.isFinite) || !(s.bytes >= 0 && s.pauseMs >= 0 && s.sendMs > 0 && s.roundRate > 0)) return;
    if (s.expectedMs !== undefined && !(Number.isFinite(s.expectedMs) && s.expectedMs > 0)) return;
    const list = this.byKey.get(key) ?? [];
    this.byKey.delete(key); // re-inserted last: the map's order is least recently used first
    list.push(s);
    if (list.length > SAMPLES_KEPT) list.shift();
    this.byKey.set(key, list);
    while (this.byKey.size > MAX_DESTINATIONS) this.byKey.delete(this.byKey.keys().next().value!);
  }

  /** The largest stop-and-copy measured to `key` that times a rate, bytes (0: none). */
  measuredUpTo(key: string): number {
    return Math.max(0, ...(this.byKey.get(key) ?? []).filter((s) => s.bytes >= MIN_RATE_SAMPLE_BYTES).map((s) => s.bytes));
  }

  /**
   * The expected stop-and-copy of `bytes` to `key` for a migration whose last round moved
   * `roundRate` bytes per ms; undefined with no rate sample, or none within EXTRAPOLATE_UP_TO of `bytes`.
   */
  estimate(key: string, roundRate: number, bytes: number): SwitchoverEstimate | undefined {
    const list = this.byKey.get(key);
    const timed = list?.filter((s) => s.bytes >= MIN_RATE_SAMPLE_BYTES) ?? [];
    if (list === undefined || timed.length === 0 || !(roundRate > 0) || bytes > EXTRAPOLATE_UP_TO * this.measuredUpTo(key)) return undefined;
    const { msPerByte, fixedMs, sloped } = fitLine(timed.map((s) => [s.bytes, s.sendMs]));
    // Each sample's rate with the sending's own fixed part taken out, as a multiple of its round's;
    // the lowest of them, as the downtime limit is a promise and a median is beaten half the time.
    const streamRate = (s: SwitchoverSample) => s.bytes / Math.max(s.sendMs - fixedMs, s.sendMs / 10);
    const multiple = Math.min(...timed.map((s) => streamRate(s) / s.roundRate));
    const misses = list.filter((s) => s.expectedMs !== undefined).map((s) => (s.pauseMs + s.sendMs) / s.expectedMs!);
    const margin = Math.min(MAX_MARGIN, Math.max(MIN_MARGIN, ...misses));
    // Samples of one size give no rate apart from their fixed part: the multiple alone, which
    // compares a stop-and-copy with the round before it (both about the working set's size).
    // And never faster than a stop-and-copy measured there: a round faster than the samples'
    // rounds (a guest that dirties less, a quieter machine) would otherwise scale the multiple past
    // anything seen (CI: 4312 Mb/s expected after one stop-and-copy of 4061).
    const fastest = Math.max(...timed.map(streamRate));
    const rate = Math.min(sloped ? Math.min(roundRate * multiple, 1 / msPerByte) : roundRate * multiple, fastest);
    return { rate: rate / margin, fixedMs: (median(list.map((s) => s.pauseMs)) + fixedMs) * margin, samples: timed.length, margin };
  }
}

/**
 * ms = fixedMs + msPerByte × bytes through the samples: Theil-Sen (the median of the pairwise
 * slopes, then the median intercept), robust to an odd sample; samples all of one size give no
 * slope, and then the line goes through the origin (all of it counted as rate).
 */
export function fitLine(points: [bytes: number, ms: number][]): { msPerByte: number; fixedMs: number; sloped: boolean } {
  const slopes: number[] = [];
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) {
      const [bi, mi] = points[i]!;
      const [bj, mj] = points[j]!;
      if (Math.max(bi, bj) >= 1.5 * Math.min(bi, bj)) slopes.push((mj - mi) / (bj - bi));
    }
  }
  const through0 = median(points.map(([b, ms]) => ms / b));
  const slope = median(slopes);
  if (slopes.length === 0 || !(slope > 0)) return { msPerByte: through0, fixedMs: 0, sloped: false };
  const fixedMs = Math.max(0, median(points.map(([b, ms]) => ms - slope * b)));
  return { msPerByte: slope, fixedMs, sloped: true };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
