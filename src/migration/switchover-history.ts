/**
 * What a host's stop-and-copies to each destination have measured, for the expected downtime of
 * the next (convergence.ts). A pre-copy round runs beside the guest and waits for its
 * acknowledgement, so its rate is not the stop-and-copy's: on loopback here rounds of a 64 MiB
 * working set moved 0.3 GB/s where its stop-and-copy moved 0.7, and under a 99 % throttle rounds
 * moved 1.5 GB/s where the stop-and-copy moved 1.1 (bench/migration.ts). So once a destination
 * has been switched over to, its own figures predict the downtime:
 *
 *   expected = fixed + bytes left / rate
 *
 * `fixed` is what a switch-over costs besides moving pages (the pause, the last dirty-log harvest,
 * the state section's round trip), `rate` how fast the pages left at the pause moved. Both are
 * taken conservatively (the slowest rate and the median fixed cost of the last few), so a noisy
 * fast sample does not promise a downtime the next switch-over misses.
 */

/** One stop-and-copy, as the source measured it. */
export interface SwitchoverSample {
  /** Page and state bytes sent while the guest was paused. */
  bytes: number;
  /** Time spent moving them: the downtime less `fixedMs`. */
  sendMs: number;
  /** The rest of the downtime: pause, last harvest, and the acknowledgement's round trip. */
  fixedMs: number;
}

/** What the next switch-over to a destination is expected to cost. */
export interface SwitchoverEstimate {
  /** Bytes per millisecond the stop-and-copy moves. */
  bytesPerMs: number;
  fixedMs: number;
  /** Samples behind the rate. */
  samples: number;
}

/** Samples kept per destination. */
const KEEP = 5;
/** The rate is the slowest of this many latest samples. */
const RATE_OF = 3;
/**
 * A stop-and-copy this small says little of the rate (its time is mostly fixed cost and noise):
 * it counts toward the fixed cost only.
 */
export const MIN_RATE_SAMPLE_BYTES = 4 * 1024 * 1024;

export class SwitchoverHistory {
  private readonly byPeer = new Map<string, SwitchoverSample[]>();

  record(peer: string, s: SwitchoverSample): void {
    if (!(s.bytes >= 0 && s.sendMs >= 0 && s.fixedMs >= 0)) return;
    const list = this.byPeer.get(peer) ?? [];
    list.push(s);
    if (list.length > KEEP) list.shift();
    this.byPeer.set(peer, list);
  }

  /** The estimate for `peer`, once a stop-and-copy of at least MIN_RATE_SAMPLE_BYTES went there. */
  estimate(peer: string): SwitchoverEstimate | undefined {
    const list = this.byPeer.get(peer);
    if (!list) return undefined;
    const rates = list.filter((s) => s.bytes >= MIN_RATE_SAMPLE_BYTES && s.sendMs > 0).slice(-RATE_OF).map((s) => s.bytes / s.sendMs);
    if (rates.length === 0) return undefined;
    const fixed = list.map((s) => s.fixedMs).sort((a, b) => a - b);
    return { bytesPerMs: Math.min(...rates), fixedMs: fixed[Math.floor(fixed.length / 2)]!, samples: rates.length };
  }
}
