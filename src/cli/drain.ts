/**
 * `ferry host drain --to URL`: moves every VM off a host (maintenance), one at a time, reporting
 * each. Running VMs go live (--mode, default pre-copy); stopped ones (paused, created, halted)
 * go cold. A VM already arriving or leaving is skipped and said so. Ctrl-C cancels the migration
 * in progress (before its switch-over, as `ferry migrate`) and stops the drain.
 */
import { Command } from 'commander';
import { FerryError, ReportedError, UsageError } from '../errors.ts';
import type { VmSummary } from '../host/registry.ts';
import type { MigrationInfo } from '../migration/stats.ts';
import { addMigrationOptions, follow, migrationParams, migrationSummary, type MigrateOpts } from './migrate-command.ts';
import { printJson } from './output.ts';
import { connect, type GlobalOptions } from './vm-commands.ts';

interface DrainResult {
  vm: string;
  outcome: 'moved' | 'failed' | 'skipped' | 'not-started';
  why?: string;
  stats?: MigrationInfo;
}

export function drainCommand(): Command {
  return addMigrationOptions(new Command('drain')
    .description('Move every VM off the host (--host) to another, one at a time: running ones live (--mode), stopped ones cold')
    .option('--to <url>', 'the host to move them to, ws://HOST:PORT (wss:// for a TLS host)'))
    .option('--json', 'print each VM\'s outcome and statistics as one JSON document')
    .action(async (o: MigrateOpts & { json?: boolean }, self: Command) => {
      if (o.to === undefined) throw new UsageError('--to ws://HOST:PORT is required');
      const to = o.to;
      const json = o.json === true;
      const c = await connect(self.optsWithGlobals<GlobalOptions>(), 'ferry-drain');
      const results: DrainResult[] = [];
      try {
        const vms = await c.request<VmSummary[]>('vm.list');
        let stop = false;
        for (const [i, v] of vms.entries()) {
          const say = (line: string) => { if (!json) process.stdout.write(`${line}\n`); };
          if (stop) {
            results.push({ vm: v.name, outcome: 'not-started', why: 'the drain was interrupted' });
            continue;
          }
          if (v.state === 'incoming' || v.migrating === true) {
            const why = v.state === 'incoming' ? 'it is arriving here from another host' : 'it is already being migrated';
            results.push({ vm: v.name, outcome: 'skipped', why });
            say(`${v.name}: skipped: ${why}`);
            continue;
          }
          const mode = v.state === 'running' ? o.mode : 'cold';
          if (!json) process.stderr.write(`[${i + 1}/${vms.length}] ${v.name} (${v.state}): ${mode} migration to ${to}\n`);
          try {
            await c.request('migrate.start', { ...migrationParams(v.name, to, o), mode });
            const followed = await follow(c, v.name, { json, detach: false });
            const final = followed!.final;
            const ok = final.status === 'completed';
            results.push({ vm: v.name, outcome: ok ? 'moved' : 'failed', stats: final, ...(ok ? {} : { why: final['error-desc'] ?? final.status }) });
            say(migrationSummary(final));
            if (followed!.cancelledHere) stop = true;
          } catch (e) {
            if (e instanceof FerryError && e.code === 'EINTERRUPTED') throw e; // stopped watching: the migration goes on
            const why = e instanceof Error ? e.message : String(e);
            results.push({ vm: v.name, outcome: 'failed', why });
            say(`${v.name}: not migrated: ${why}`);
          }
        }
      } finally {
        await c.close();
      }
      const moved = results.filter((r) => r.outcome === 'moved').length;
      const left = results.filter((r) => r.outcome !== 'moved');
      const summary = `drained ${moved} of ${results.length} VMs to ${to}${left.length > 0 ? `; still here: ${left.map((r) => `${r.vm} (${r.outcome}${r.why ? `: ${r.why}` : ''})`).join(', ')}` : ''}`;
      if (json) printJson({ to, moved, results });
      else if (left.length === 0) process.stdout.write(`${summary}\n`);
      if (left.length > 0) throw json ? new ReportedError('EDRAIN', summary) : new FerryError('EDRAIN', summary);
    });
}
