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
 * follows it), never faster than the fitted rate, after the median pause and the fixed part.
 * With no sample yet, the round's own rate stands (convergence.ts), as QEMU's estimate does.
 */

/** Samples kept per key (destination and bandwidth cap). */
export const SAMPLES_KEPT = 5;
/** A stop-and-copy that moved less says little about a rate (it is mostly fixed cost); it still times the pause. */
export const MIN_RATE_SAMPLE_BYTES = 1024 * 1024;
/** Destinations remembered, the least recently used forgotten first. */
export const MAX_DESTINATIONS = 64;

export interface SwitchoverSample {
  /** Plain page-frame bytes the stop-and-copy sent (what encoded frames stood for). */
  bytes: number;
  /** From the guest's pause to the last harvest of its dirty pages. */
  pauseMs: number;
  /** From the harvest to the destination's acknowledgement: the pages, the state section, one round trip. */
  sendMs: number;
  /** The last pre-copy round's rate, plain bytes per ms. */
  roundRate: number;
}

/** What the next stop-and-copy to a destination is expected to cost. */
export interface SwitchoverEstimate {
  /** Plain page-frame bytes per ms. */
  rate: number;
  /** The pause and the last harvest, ms. */
  fixedMs: number;
  /** Samples the rate came from. */
  samples: number;
}

export class SwitchoverHistory {
  private readonly byKey = new Map<string, SwitchoverSample[]>();

  record(key: string, s: SwitchoverSample): void {
    if (![s.bytes, s.pauseMs, s.sendMs, s.roundRate].every(Number.isFinite) || !(s.bytes >= 0 && s.pauseMs >= 0 && s.sendMs > 0 && s.roundRate > 0)) return;
    const list = this.byKey.get(key) ?? [];
    this.byKey.delete(key); // re-inserted last: the map's order is least recently used first
    list.push(s);
    if (list.length > SAMPLES_KEPT) list.shift();
    this.byKey.set(key, list);
    while (this.byKey.size > MAX_DESTINATIONS) this.byKey.delete(this.byKey.keys().next().value!);
  }

  /** The expected stop-and-copy to `key` for a migration whose last round moved `roundRate` bytes per ms; undefined with no rate sample. */
  estimate(key: string, roundRate: number): SwitchoverEstimate | undefined {
    const list = this.byKey.get(key);
    const timed = list?.filter((s) => s.bytes >= MIN_RATE_SAMPLE_BYTES) ?? [];
    if (list === undefined || timed.length === 0 || !(roundRate > 0)) return undefined;
    const { msPerByte, fixedMs } = fitLine(timed.map((s) => [s.bytes, s.sendMs]));
    // Each sample's rate with the sending's own fixed part taken out, as a multiple of its round's;
    // the lowest of them, as the downtime limit is a promise and a median is beaten half the time.
    const multiple = Math.min(...timed.map((s) => s.bytes / Math.max(s.sendMs - fixedMs, s.sendMs / 10) / s.roundRate));
    return {
      rate: Math.min(roundRate * multiple, 1 / msPerByte),
      fixedMs: median(list.map((s) => s.pauseMs)) + fixedMs,
      samples: timed.length,
    };
  }
}

/**
 * ms = fixedMs + msPerByte × bytes through the samples: Theil-Sen (the median of the pairwise
 * slopes, then the median intercept), robust to an odd sample; samples all of one size give no
 * slope, and then the line goes through the origin (all of it counted as rate).
 */
export function fitLine(points: [bytes: number, ms: number][]): { msPerByte: number; fixedMs: number } {
  const slopes: number[] = [];
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) {
      const [bi, mi] = points[i]!;
      const [bj, mj] = points[j]!;
      if (Math.max(bi, bj) >= 1.5 * Math.min(bi, bj)) slopes.push((mj - mi) / (bj - bi));
    }
  }
  const through0 = median(points.map(([b, ms]) => ms / b));
  const slope = slopes.length > 0 ? median(slopes) : through0;
  if (!(slope > 0)) return { msPerByte: through0, fixedMs: 0 };
  const fixedMs = Math.max(0, median(points.map(([b, ms]) => ms - slope * b)));
  return { msPerByte: slope, fixedMs };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
