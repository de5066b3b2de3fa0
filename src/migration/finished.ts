/**
 * What a destination host tells a source about a migration that is no longer (or still) running
 * here, from what it kept of it (FinishedIncoming): the answer to a `query` link after a lost
 * switch-over, and to a post-copy recovery that finds the migration over. One place, so the host
 * and the model test's fake host answer alike.
 */
import { peerText } from '../wire/peer-text.ts';
import type { FinishedIncoming } from './incoming.ts';
import type { MigrationMsg } from './protocol.ts';

/**
 * A source asks how the switch-over went: the live migration answers for itself; a finished one
 * that resumed the guest here says completed (and the source has then learned it), any other
 * never resumed it.
 */
export function queryAnswer(live: { answerQuery(): MigrationMsg } | undefined, f: FinishedIncoming | undefined): MigrationMsg {
  if (live) return live.answerQuery();
  if (!f) return { t: 'outcome', outcome: 'discarded', message: 'this host knows no such migration: it never resumed that guest' };
  if (f.stats?.info.status === 'completed' || f.postcopy) {
    f.acknowledged = true;
    return { t: 'outcome', outcome: 'completed', message: `${f.vm ?? 'the VM'} resumed here` };
  }
  return { t: 'outcome', outcome: 'discarded', message: `the migration of ${f.vm ?? 'this VM'} ended here without resuming it: ${peerText(f.stats?.info['error-desc'] ?? 'discarded', 500)}` };
}

/**
 * A source reconnects a post-copy that is over here. A post-copy that ended without completing
 * had resumed the guest here: it is lost (ELOST), and the source must not take ENOMIGRATION
 * (never resumed here) as leave to run its older copy.
 */
export function recoveryAnswer(f: FinishedIncoming | undefined): MigrationMsg {
  if (f?.postcopy && f.stats?.info.status === 'completed') return { t: 'completed', resumedAt: Date.now() };
  if (f?.postcopy) return { t: 'failed', code: 'ELOST', message: `${f.vm ?? 'the VM'} resumed here in post-copy and was lost: ${peerText(f.stats?.info['error-desc'] ?? 'given up', 500)}` };
  if (f) return { t: 'failed', code: 'ENOMIGRATION', message: `the migration of ${f.vm ?? 'this VM'} ended here: ${peerText(f.stats?.info['error-desc'] ?? 'discarded', 500)}` };
  return { t: 'failed', code: 'ENOMIGRATION', message: 'this host knows no such migration (was its host process restarted?): the VM it was receiving is gone' };
}
