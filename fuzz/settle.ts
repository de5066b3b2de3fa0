/**
 * The end of a run: wait for the host to settle (the idle connections it should close closed,
 * its descriptor count stable) and take the end measurement.
 */
import { procStats, type ProcStats } from './oracle.ts';

export interface SettleResult {
  end: ProcStats | undefined;
  /** The highest figures seen while waiting. */
  peak: ProcStats | undefined;
  ms: number;
}

export async function settle(o: {
  pid: number;
  /** Parked fuzz connections still open (the host should close them). */
  idleOpen: () => number;
  baseline: ProcStats | undefined;
  maxMs: number;
  running: () => boolean;
  stop: () => boolean;
}): Promise<SettleResult> {
  const t0 = Date.now();
  let lastFds = -1;
  let stableSince = Date.now();
  let cur = procStats(o.pid);
  let peak = cur;
  while (Date.now() - t0 < o.maxMs && o.running() && !o.stop()) {
    await new Promise((r) => setTimeout(r, 250));
    cur = procStats(o.pid);
    if (!cur) break;
    peak = { rssKiB: Math.max(peak?.rssKiB ?? 0, cur.rssKiB), fds: Math.max(peak?.fds ?? 0, cur.fds) };
    if (cur.fds !== lastFds) {
      lastFds = cur.fds;
      stableSince = Date.now();
    }
    // Done when no idle connection is left open and the count has not moved for a second,
    // or when it is back at the baseline.
    const quiet = o.idleOpen() === 0 && Date.now() - stableSince >= 1000;
    const back = o.baseline !== undefined && cur.fds <= o.baseline.fds && Date.now() - t0 >= 1000;
    if (quiet || back) break;
  }
  return { end: cur, peak, ms: Date.now() - t0 };
}
