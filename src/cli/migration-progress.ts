/**
 * What `ferry migrate` shows while it waits, phase by phase, and the table it ends with on a
 * terminal. Only what the statistics say: a share is shown only where there is a known whole
 * (the pages of this pre-copy round; in post-copy, the pages that were still at the source at
 * the switch-over), and an ETA only from the rate this display has watched the bytes move.
 */
import Table from 'cli-table3';
import type { MigrationInfo } from '../migration/stats.ts';
import { fmtBytes } from './output.ts';

const PAGE = 4096;
/** The window the observed rate is taken over. */
const RATE_WINDOW_MS = 2000;

function fmtRate(bytesPerSecond: number): string {
  return `${fmtBytes(Math.round(bytesPerSecond))}/s`;
}

export function fmtDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function bar(done: number, width = 20): string {
  const n = Math.max(0, Math.min(width, Math.round(done * width)));
  return `[${'#'.repeat(n)}${'-'.repeat(width - n)}] ${Math.floor(done * 100)}%`;
}

/** Follows successive statistics of one migration and renders each as one line. */
export class MigrationProgress {
  private samples: { t: number; bytes: number }[] = [];
  private round = -1;
  private roundBytes = 0;

  /** Bytes per second moved over the last RATE_WINDOW_MS, as watched here (undefined until two samples). */
  private rate(s: MigrationInfo, now: number): number | undefined {
    this.samples.push({ t: now, bytes: s['transferred-bytes'] });
    while (this.samples.length > 2 && now - this.samples[0]!.t > RATE_WINDOW_MS) this.samples.shift();
    const first = this.samples[0]!;
    if (now - first.t < 200) return undefined;
    return ((s['transferred-bytes'] - first.bytes) / (now - first.t)) * 1000;
  }

  line(s: MigrationInfo, now = performance.now()): string {
    const rate = this.rate(s, now);
    const left = s['remaining-bytes'];
    const eta = (bytes: number) => (rate !== undefined && rate > 0 && bytes > 0 ? `, ~${fmtDuration((bytes / rate) * 1000)} left` : '');
    const head = `${s.vm} ${s.status}`;
    switch (s.status) {
      case 'setup':
        return `${head}: connecting to ${s.peer}`;
      case 'active': {
        // A new round starts with its whole list still to send: that is the round's size.
        if (s['dirty-sync-count'] !== this.round || left > this.roundBytes) {
          this.round = s['dirty-sync-count'];
          this.roundBytes = left;
        }
        if (this.roundBytes === 0 && s['transferred-bytes'] === 0) return `${head}: round ${s['dirty-sync-count']} starting`;
        const share = this.roundBytes > 0 ? `${bar(1 - left / this.roundBytes)} ` : '';
        const dirtying = s['dirty-sync-count'] > 0
          ? `; guest dirties ${fmtRate(s['dirty-pages-rate'] * PAGE)}, link ${fmtRate((s.mbps * 1e6) / 8)}` : '';
        const expected = s['expected-downtime-ms'] !== undefined ? `; expected downtime ${s['expected-downtime-ms']} ms` : '';
        const warning = s['convergence-warning'] !== undefined ? `; ${s['convergence-warning']}` : '';
        return `${head}: round ${s['dirty-sync-count']} ${share}${fmtBytes(left)} left in it${eta(left)}, `
          + `${fmtBytes(s['transferred-bytes'])} sent${dirtying}${expected}${warning}`;
      }
      case 'device':
        return `${head}: switching over (the guest is paused), ${fmtBytes(left)} left to send`;
      case 'postcopy-active':
      case 'postcopy-paused': {
        const whole = (s['touched-pages'] ?? 0) * PAGE;
        const share = whole > 0 ? `${bar(1 - left / whole)} ` : '';
        const faults = `${s['postcopy-requests']} ${s['postcopy-requests'] === 1 ? 'page' : 'pages'} asked for by the destination`;
        const why = s.status === 'postcopy-paused' ? ` (link lost: ${s['error-desc'] ?? 'reconnecting'})` : '';
        return `${head}${why}: the guest runs on ${s.peer}; ${share}${fmtBytes(left)} still here${s.status === 'postcopy-active' ? eta(left) : ''}, ${faults}`;
      }
      case 'outcome-unknown':
        return `${head}: ${s['error-desc'] ?? 'the switch-over was sent and the link lost'}; the VM stays paused here until the destination answers`;
      default:
        return `${head}`;
    }
  }
}

/** The final statistics, as a two-column table for a terminal. */
export function statisticsTable(s: MigrationInfo): string {
  const t = new Table({ chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' }, style: { head: [], border: [] } });
  const row = (k: string, v: string | undefined) => { if (v !== undefined) t.push({ [k]: v }); };
  row('status', s.status + (s['error-desc'] ? `: ${s['error-desc']}` : ''));
  row('mode', s.mode);
  row(s.direction === 'outgoing' ? 'to' : 'from', s.peer);
  row('total time', fmtDuration(s['total-time-ms']));
  row('setup', fmtDuration(s['setup-time-ms']));
  row('downtime', s['downtime-ms'] !== undefined ? `${s['downtime-ms']} ms` : undefined);
  row('expected downtime', s['expected-downtime-ms'] !== undefined ? `${s['expected-downtime-ms']} ms` : undefined);
  row('switch-over', s['switchover-reason']);
  row('rounds', String(s['dirty-sync-count']));
  row('sent', `${fmtBytes(s['transferred-bytes'])} (pre-copy ${fmtBytes(s['precopy-bytes'])}, downtime ${fmtBytes(s['downtime-bytes'])}, post-copy ${fmtBytes(s['postcopy-bytes'])})`);
  row('pages', `${s['pages-sent']} (${s['zero-pages']} zero)`);
  row('throughput', s['total-time-ms'] > 0 ? fmtRate((s['transferred-bytes'] / s['total-time-ms']) * 1000) : undefined);
  row('encoding', s.encoding !== undefined ? `${s.encoding}${s['encoding-reason'] ? ` (${s['encoding-reason']})` : ''}` : undefined);
  row('throttle', s['throttle-percent'] ? `${s['throttle-percent']} %` : undefined);
  row('post-copy requests', s.mode === 'postcopy' || s.mode === 'hybrid' ? String(s['postcopy-requests']) : undefined);
  row('post-copy recoveries', s['postcopy-recoveries'] !== undefined ? String(s['postcopy-recoveries']) : undefined);
  return t.toString();
}
