import { PAGE_SIZE } from '../memory/layout.ts';
import { latencyPercentile } from '../vm/latency-histogram.ts';

/**
 * QEMU query-migrate status names (DESIGN §6), plus `outcome-unknown`: the source sent the
 * switch-over and lost the link before the destination's answer; its copy stays paused until it
 * learns whether the destination resumed the guest.
 */
export type MigrationStatus =
  | 'setup' | 'active' | 'device' | 'outcome-unknown' | 'postcopy-active' | 'postcopy-paused' | 'completed' | 'failed' | 'cancelled';

export const FINAL_STATUSES: readonly MigrationStatus[] = ['completed', 'failed', 'cancelled'];

/** What `migrate status` shows; field names follow QEMU's MigrationInfo / MigrationStats. */
export interface MigrationInfo {
  vm: string;
  direction: 'outgoing' | 'incoming';
  mode: string;
  peer: string;
  status: MigrationStatus;
  'error-desc'?: string;
  /** Ferry's error code for a failure (EEXIST, ENOMEM, EAUTH, ELINK, ...). */
  'error-code'?: string;
  'total-time-ms': number;
  'setup-time-ms': number;
  'downtime-ms'?: number;
  'expected-downtime-ms'?: number;
  /** Source: the link's round-trip time, the lowest measured (pings on the priority channel, round acknowledgements). */
  'rtt-ms'?: number;
  /** Source: the size of the state section (CPU, devices, console history) sent at the switch-over. */
  'state-bytes'?: number;
  'transferred-bytes': number;
  'remaining-bytes': number;
  'total-bytes': number;
  'pages-sent': number;
  'zero-pages': number;
  'dirty-sync-count': number;
  'dirty-pages-rate': number;
  mbps: number;
  'precopy-bytes': number;
  'downtime-bytes': number;
  'postcopy-bytes': number;
  /** Post-copy network faults: pages the destination asked the source for. */
  'postcopy-requests': number;
  /** Destination: every post-copy trap of the vCPU, including pages already here but not yet written. */
  'postcopy-faults'?: number;
  /** Destination: fault latency, from the vCPU's fault to the page being present. */
  'fault-latency-p50-us'?: number;
  'fault-latency-p99-us'?: number;
  /**
   * Destination: each blocked trap's wait, from the vCPU's trap to its page being present, as the
   * vCPU thread times it (what the guest waits; to within 1/16). fault-latency-* is the host's
   * view: from its hearing of the fault to its seeing the page written, for the faults it heard of
   * before the page came (so it misses the quickest, and adds its event loop's lag).
   */
  'fault-block-p50-us'?: number;
  'fault-block-p99-us'?: number;
  /** Destination: total time the vCPU spent blocked on missing pages (QEMU's postcopy-blocktime). */
  'postcopy-blocktime-ms'?: number;
  /** Pages ever written when the migration started sending (the RAM the guest has touched). */
  'touched-pages'?: number;
  /** Hybrid: why it switched to post-copy. */
  'postcopy-switch'?: string;
  /** Source: the convergence policy and the post-copy push order, when not the default ones (migration/policies.ts). */
  'convergence-policy'?: string;
  'push-order'?: string;
  /** Why the source stopped the guest for the switch-over (converged, requested, max rounds allowed, ...). */
  'switchover-reason'?: string;
  /**
   * Source, pre-copy: switch-overs given up at the pause because the guest had dirtied more since
   * the last round than fits the downtime limit (it ran on after a pause of about a millisecond).
   */
  'switchover-deferrals'?: number;
  /** Source, pre-copy: what the expected downtime is based on (the stop-and-copy rate measured to this destination, or the last round's rate). */
  'downtime-estimate'?: string;
  /** Source, pre-copy: the rate of this stop-and-copy, plain page-frame bytes from the last harvest to the acknowledgement (Mb/s). */
  'stop-and-copy-mbps'?: number;
  /** Source, pre-copy: set while it is plainly not converging by itself (why, and what happens next). */
  'convergence-warning'?: string;
  /** Post-copy: links lost and recovered (each loss is one postcopy-paused period). */
  'postcopy-recoveries'?: number;
  /** Post-copy, source: pages sent again after a recovery because the destination never got them. */
  'postcopy-resent-pages'?: number;
  /**
   * Source, pre-copy: how pages are encoded ('none', 'xbzrle', 'lz4', 'xbzrle+lz4') and why
   * (forced, or chosen from the measured link and pool rates: encoding-policy.ts).
   */
  encoding?: string;
  'encoding-reason'?: string;
  /** Source: pages sent as XBZRLE deltas, and pages sent whole that the cache did not hold. */
  'xbzrle-pages'?: number;
  'xbzrle-cache-miss'?: number;
  'xbzrle-cache-bytes'?: number;
  /** Source: what the encoded frames would have weighed as plain page frames, and what they did weigh. */
  'encoded-raw-bytes'?: number;
  'encoded-wire-bytes'?: number;
  /** Post-copy: time spent in postcopy-paused, in all. */
  'postcopy-paused-ms'?: number;
  'throttle-percent': number;
  /** Source, pre-copy and hybrid: the downtime limit it converges to (QEMU's downtime-limit parameter). */
  'downtime-limit-ms'?: number;
  rounds: RoundInfo[];
}

export interface RoundInfo {
  round: number;
  pages: number;
  bytes: number;
  ms: number;
  mbps: number;
  'dirty-pages': number;
  'expected-downtime-ms': number;
}

/** Live statistics of one migration; only moves forward (a final status is never left). */
export class MigrationStats {
  readonly info: MigrationInfo;
  private readonly t0 = performance.now();
  private setupDone = 0;

  constructor(vm: string, direction: 'outgoing' | 'incoming', mode: string, peer: string, totalBytes: number) {
    this.info = {
      vm, direction, mode, peer, status: 'setup',
      'total-time-ms': 0, 'setup-time-ms': 0, 'transferred-bytes': 0, 'remaining-bytes': 0, 'total-bytes': totalBytes,
      'pages-sent': 0, 'zero-pages': 0, 'dirty-sync-count': 0, 'dirty-pages-rate': 0, mbps: 0,
      'precopy-bytes': 0, 'downtime-bytes': 0, 'postcopy-bytes': 0, 'postcopy-requests': 0, 'throttle-percent': 0, rounds: [],
    };
  }

  get final(): boolean {
    return FINAL_STATUSES.includes(this.info.status);
  }

  setStatus(s: MigrationStatus, error?: string): void {
    if (this.final) return;
    if (s !== 'setup' && this.setupDone === 0) {
      this.setupDone = performance.now();
      this.info['setup-time-ms'] = round2(this.setupDone - this.t0);
    }
    this.tick();
    this.info.status = s;
    if (s !== 'active') delete this.info['convergence-warning']; // it speaks of pre-copy rounds
    if (error !== undefined) this.info['error-desc'] = error;
    // A migration that completes after a fault it recovered from (a lost link, an outcome learned
    // late) has no error left to report.
    else if (s === 'completed') delete this.info['error-desc'];
  }

  /** A send of `pages` starts: what is left to send (QEMU's remaining) counts down from it as frames leave. */
  toSend(pages: number): void {
    this.info['remaining-bytes'] = pages * PAGE_SIZE;
  }

  /** Counts bytes sent; `phase` says whether the VM was still running (precopy) or stopped (downtime). */
  sent(bytes: number, pages: number, zero: number, phase: 'precopy' | 'downtime' | 'postcopy'): void {
    this.info['remaining-bytes'] = Math.max(0, this.info['remaining-bytes'] - pages * PAGE_SIZE);
    this.info['transferred-bytes'] += bytes;
    this.info['pages-sent'] += pages;
    this.info['zero-pages'] += zero;
    this.info[`${phase}-bytes`] += bytes;
  }

  /** Counts an encoded frame (after `sent` counted its wire bytes). */
  encoded(rawBytes: number, wireBytes: number, deltas: number, misses: number, xbzrle: boolean): void {
    this.info['encoded-raw-bytes'] = (this.info['encoded-raw-bytes'] ?? 0) + rawBytes;
    this.info['encoded-wire-bytes'] = (this.info['encoded-wire-bytes'] ?? 0) + wireBytes;
    if (xbzrle) {
      this.info['xbzrle-pages'] = (this.info['xbzrle-pages'] ?? 0) + deltas;
      this.info['xbzrle-cache-miss'] = (this.info['xbzrle-cache-miss'] ?? 0) + misses;
    }
  }

  /** Fault latencies in microseconds, summarised as p50/p99. */
  faultLatencies(us: number[]): void {
    if (us.length === 0) return;
    const s = [...us].sort((a, b) => a - b);
    this.info['fault-latency-p50-us'] = Math.round(s[Math.floor(s.length * 0.5)]!);
    this.info['fault-latency-p99-us'] = Math.round(s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]!);
  }

  /** The blocked traps' waits, from the vCPU's histogram (vm/latency-histogram.ts). */
  faultBlocks(histogram: ArrayLike<number>): void {
    const p50 = latencyPercentile(histogram, 0.5);
    if (p50 === undefined) return;
    this.info['fault-block-p50-us'] = Math.round(p50);
    this.info['fault-block-p99-us'] = Math.round(latencyPercentile(histogram, 0.99)!);
  }

  round(r: RoundInfo, remainingPages: number): void {
    this.info.rounds.push(r);
    this.info['dirty-sync-count'] = r.round + 1;
    this.info.mbps = r.mbps;
    this.info['dirty-pages-rate'] = r.ms > 0 ? Math.round((r['dirty-pages'] / r.ms) * 1000) : 0;
    this.info['expected-downtime-ms'] = r['expected-downtime-ms'];
    this.info['remaining-bytes'] = remainingPages * PAGE_SIZE;
    this.tick();
  }

  tick(): void {
    if (!this.final) this.info['total-time-ms'] = round2(performance.now() - this.t0);
  }

  elapsedMs(): number {
    return performance.now() - this.t0;
  }

  snapshot(): MigrationInfo {
    this.tick();
    return { ...this.info, rounds: [...this.info.rounds] };
  }
}

export function round2(v: number): number {
  return Math.round(v * 100) / 100;
}

/** Bytes as MiB with one decimal, for messages. */
export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
