/**
 * QEMU-style migration events (MIGRATION, MIGRATION_PASS) from the statistics a host publishes:
 * a pass for every pre-copy round (none is missed: each snapshot carries every round so far), the
 * switch-over once (also when the snapshots skipped its status, as a fast idle switch-over can),
 * post-copy paused and recovered, and the outcome.
 */
import type { MigrationInfo, RoundInfo } from '../migration/stats.ts';

export type MigrationEvent =
  | { type: 'setup'; info: MigrationInfo }
  /** A pre-copy round ended (QEMU's MIGRATION_PASS): `pass` counts from 1. */
  | { type: 'pass'; pass: number; round: RoundInfo; info: MigrationInfo }
  /** The guest stopped at the source for the last time; it resumes at the destination. */
  | { type: 'switchover'; info: MigrationInfo }
  | { type: 'postcopy-active'; info: MigrationInfo }
  | { type: 'postcopy-paused'; info: MigrationInfo }
  | { type: 'postcopy-recovered'; info: MigrationInfo }
  /** The switch-over was sent and the link lost before its answer: the source's copy stays paused (see `resolve`). */
  | { type: 'outcome-unknown'; info: MigrationInfo }
  | { type: 'completed' | 'failed' | 'cancelled'; info: MigrationInfo };

export type MigrationEventType = MigrationEvent['type'];

export class MigrationEventStream {
  private status: MigrationInfo['status'] | undefined;
  private passes = 0;
  private switchedOver = false;

  /** The events `info` adds to what was seen before (in the order they happened). */
  next(info: MigrationInfo): MigrationEvent[] {
    const out: MigrationEvent[] = [];
    if (this.status === undefined) out.push({ type: 'setup', info });
    for (; this.passes < info.rounds.length; this.passes++) {
      out.push({ type: 'pass', pass: this.passes + 1, round: info.rounds[this.passes]!, info });
    }
    const prev = this.status;
    if (info.status !== prev) {
      const switchover = () => {
        if (!this.switchedOver) out.push({ type: 'switchover', info });
        this.switchedOver = true;
      };
      switch (info.status) {
        case 'device':
          switchover();
          break;
        case 'postcopy-active':
          switchover();
          out.push({ type: prev === 'postcopy-paused' ? 'postcopy-recovered' : 'postcopy-active', info });
          break;
        case 'postcopy-paused':
          switchover();
          out.push({ type: 'postcopy-paused', info });
          break;
        case 'outcome-unknown':
          out.push({ type: 'outcome-unknown', info });
          break;
        case 'completed':
          switchover();
          out.push({ type: 'completed', info });
          break;
        case 'failed':
        case 'cancelled':
          out.push({ type: info.status, info });
          break;
        default:
          break;
      }
      this.status = info.status;
    }
    return out;
  }
}
