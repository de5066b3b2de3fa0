/**
 * What a host's stop-and-copies to each destination have measured, for the expected downtime of
 * the next (convergence.ts). A pre-copy round runs beside the guest and waits for its
 * acknowledgement, so its rate is not the stop-and-copy's: on loopback here a round of a 64 MiB
 * working set moved 0.27-0.37 GB/s where its stop-and-copy moved 0.67-0.73 (bench/migration.ts).
 *
 * Nor is one rate right for every size: the pipeline has to fill and drain (frames queued at the
 * destination are written before it resumes the guest), so a big stop-and-copy moves more bytes
 * per millisecond than a small one (16 MiB at ~0.38 GB/s, 256 MiB at ~1.1 here). The model is a
 * line fitted to the stop-and-copies of at least MIN_RATE_SAMPLE_BYTES, once two of them differ
 * in size by half again:
 *
 *   expected downtime = fixed + bytes left / rate       (least squares over the last KEEP)
 *
 * Until then (or when the fit makes no sense: a rate that does not rise with size), there is no
 * estimate and the rounds' own rate is used.
 */

/** One pre-copy stop-and-copy, as the source measured it. */
export interface SwitchoverSample {
  /** Page and state bytes sent while the guest was paused. */
  bytes: number;
  /** From the pause to the destination's acknowledgement. */
  downtimeMs: number;
}

/** What the next switch-over to a destination is expected to cost. */
export interface SwitchoverEstimate {
  /** Bytes per millisecond the stop-and-copy moves (the fitted line's slope, inverted). */
  bytesPerMs: number;
  /** The fitted line's intercept: the downtime of a switch-over with nothing left to send. */
  fixedMs: number;
  /** Samples behind the fit. */
  samples: number;
}

/** Samples kept per destination. */
const KEEP = 5;
/** A stop-and-copy this small says little of the rate: its time is mostly fixed cost and noise. */
export const MIN_RATE_SAMPLE_BYTES = 4 * 1024 * 1024;
/** The fit needs samples this far apart in size (largest ÷ smallest). */
const SPREAD = 1.5;
/** No fit is believed that says the stop-and-copy moves more than this (bytes per ms: 20 GB/s). */
const MAX_BYTES_PER_MS = 20_000_000;

export class SwitchoverHistory {
  private readonly byPeer = new Map<string, SwitchoverSample[]>();

  record(peer: string, s: SwitchoverSample): void {
    if (!(s.bytes >= MIN_RATE_SAMPLE_BYTES && s.downtimeMs > 0 && Number.isFinite(s.downtimeMs))) return;
    const list = this.byPeer.get(peer) ?? [];
    list.push(s);
    if (list.length > KEEP) list.shift();
    this.byPeer.set(peer, list);
  }

  /** The fitted estimate for `peer`, or undefined while the samples cannot give one. */
  estimate(peer: string): SwitchoverEstimate | undefined {
    const list = this.byPeer.get(peer) ?? [];
    const sizes = list.map((s) => s.bytes);
    if (list.length < 2 || Math.max(...sizes) < SPREAD * Math.min(...sizes)) return undefined;
    const mx = sizes.reduce((a, b) => a + b, 0) / list.length;
    const my = list.reduce((a, s) => a + s.downtimeMs, 0) / list.length;
    let sxy = 0;
    let sxx = 0;
    for (const s of list) {
      sxy += (s.bytes - mx) * (s.downtimeMs - my);
      sxx += (s.bytes - mx) ** 2;
    }
    const msPerByte = sxy / sxx;
    if (!(msPerByte >= 1 / MAX_BYTES_PER_MS)) return undefined;
    return { bytesPerMs: 1 / msPerByte, fixedMs: Math.max(0, my - msPerByte * mx), samples: list.length };
  }
}
