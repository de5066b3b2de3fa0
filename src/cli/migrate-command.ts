import { Presets, SingleBar } from 'cli-progress';
import { Command, Option } from 'commander';
import type { ControlClient } from '../wire/control-client.ts';
import type { MigrationInfo } from '../migration/stats.ts';
import { FINAL_STATUSES } from '../migration/stats.ts';
import { FerryError, UsageError } from '../errors.ts';
import { fmtBytes, printJson } from './output.ts';
import { parseCount, parseSize } from './parse.ts';
import { connect, type GlobalOptions } from './vm-commands.ts';

interface MigrateOpts {
  to?: string;
  mode: string;
  downtimeLimit?: string;
  maxBandwidth?: string;
  xbzrle?: string;
  compress?: string;
  xbzrleCache?: string;
  maxRounds?: string;
  autoConverge?: boolean;
  postcopyAfterRounds?: string;
  switchoverAtMaxRounds?: boolean;
  giveUpAfter?: string;
  autoRecover: boolean;
  wait: boolean;
  json?: boolean;
}

/** One line a human can read at the end (or in the monitor). */
export function migrationSummary(s: MigrationInfo): string {
  const base = `${s.vm}: migration ${s.status}`;
  if (s.status === 'failed' || s.status === 'cancelled') return `${base}: ${s['error-desc'] ?? ''}`;
  const recoveries = s['postcopy-recoveries'];
  const parts = [
    `total ${s['total-time-ms']} ms`,
    s['downtime-ms'] !== undefined ? `downtime ${s['downtime-ms']} ms` : undefined,
    `${s['dirty-sync-count']} rounds`,
    `${fmtBytes(s['transferred-bytes'])} sent`,
    `${s['pages-sent']} pages (${s['zero-pages']} zero)`,
    s['throttle-percent'] ? `throttle ${s['throttle-percent']} %` : undefined,
    recoveries !== undefined ? `${recoveries} ${recoveries === 1 ? 'recovery' : 'recoveries'}` : undefined,
    s['postcopy-paused-ms'] !== undefined ? `paused ${s['postcopy-paused-ms']} ms` : undefined,
    s['postcopy-resent-pages'] !== undefined ? `${s['postcopy-resent-pages']} pages resent` : undefined,
  ].filter(Boolean);
  // A paused post-copy says why first (link lost, a failed recovery attempt).
  const why = s.status === 'postcopy-paused' && s['error-desc'] ? `${s['error-desc']}; ` : '';
  return `${base} (${s.direction === 'outgoing' ? 'to' : 'from'} ${s.peer}): ${why}${parts.join(', ')}`;
}

/** A progress bar on a TTY: sent out of sent + still dirty (it can move back), round, rate, expected downtime. */
function progressBar(): { update(s: MigrationInfo): void; stop(): void } {
  const bar = new SingleBar({
    format: '{vm} {status} [{bar}] {percentage}% | round {round} | {sent} sent, {dirty} dirty | {rate} Mbit/s | expected downtime {expected} ms',
    stream: process.stderr,
    hideCursor: true,
    clearOnComplete: true,
  }, Presets.shades_classic);
  let started = false;
  return {
    update(s) {
      const total = Math.max(1, s['transferred-bytes'] + s['remaining-bytes']);
      const payload = {
        vm: s.vm, status: s.status, round: s['dirty-sync-count'], sent: fmtBytes(s['transferred-bytes']),
        dirty: fmtBytes(s['remaining-bytes']), rate: s.mbps.toFixed(0), expected: s['expected-downtime-ms'] ?? '-',
      };
      if (!started) {
        bar.start(total, s['transferred-bytes'], payload);
        started = true;
      } else {
        bar.setTotal(total);
        bar.update(s['transferred-bytes'], payload);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

/** One line of live status (migrate status, the monitor): status, round, remaining, rate, expected downtime. */
function progressLine(s: MigrationInfo): string {
  const exp = s['expected-downtime-ms'] !== undefined ? `, expected downtime ${s['expected-downtime-ms']} ms` : '';
  const warning = s['convergence-warning'] !== undefined ? `; ${s['convergence-warning']}` : '';
  return `${s.vm} ${s.status}: round ${s['dirty-sync-count']}, ${fmtBytes(s['transferred-bytes'])} sent, `
    + `${fmtBytes(s['remaining-bytes'])} dirty, ${s.mbps.toFixed(0)} Mbit/s${exp}${warning}`;
}

/**
 * Waits for the migration of `name` to end (or for `until` to hold), following 'migration' events
 * (and polling as a fallback).
 */
export function waitForMigration(
  c: ControlClient, name: string, onProgress?: (s: MigrationInfo) => void, until?: (s: MigrationInfo) => boolean,
): Promise<MigrationInfo> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (s: MigrationInfo) => {
      if (settled) return;
      settled = true;
      clearInterval(poll);
      c.off('event', onEvent);
      c.off('close', onClose);
      resolve(s);
    };
    const check = (s: MigrationInfo) => {
      if (settled || s.direction !== 'outgoing') return;
      onProgress?.(s);
      if (FINAL_STATUSES.includes(s.status) || until?.(s) === true) finish(s);
    };
    const onEvent = (event: string, vm: string | undefined, data: unknown) => {
      if (event === 'migration' && vm === name) check(data as MigrationInfo);
    };
    const onClose = (e: Error) => {
      if (!settled) {
        settled = true;
        clearInterval(poll);
        c.off('event', onEvent);
        reject(e);
      }
    };
    c.on('event', onEvent);
    c.on('close', onClose);
    const poll = setInterval(() => {
      c.request<MigrationInfo>('migrate.status', { name }).then(check, () => undefined);
    }, 500);
  });
}

/**
 * A line on stderr when a migration being waited for enters postcopy-paused or outcome-unknown,
 * or when pre-copy starts not converging.
 */
function pausedNotice(name: string): (s: MigrationInfo) => void {
  let last: string | undefined;
  /** A convergence warning was printed and still holds. */
  let warned = false;
  return (s) => {
    if (s.status === 'postcopy-paused' && last !== 'postcopy-paused') {
      process.stderr.write(`${name}: postcopy-paused: ${s['error-desc'] ?? 'link lost'} ("ferry migrate recover ${name}" reconnects now)\n`);
    }
    const warning = s['convergence-warning'];
    if (warning !== undefined && !warned) process.stderr.write(`${name}: ${warning}\n`);
    warned = warning !== undefined;
    if (s.status === 'outcome-unknown' && last !== 'outcome-unknown') {
      process.stderr.write(`${name}: outcome-unknown: ${s['error-desc'] ?? 'the link was lost at the switch-over'}; the VM stays paused here until the destination answers ("ferry migrate resolve ${name} --release|--resume" decides)\n`);
    }
    last = s.status;
  };
}

/**
 * Options of a subcommand that the parent `migrate` also defines: commander gives `--json` and
 * `--no-wait` written after the subcommand to the parent, so both are read.
 */
function subOpts(self: Command): GlobalOptions & { json: boolean; wait: boolean } {
  const own = self.opts<{ json?: boolean; wait?: boolean }>();
  const parent = self.parent?.opts<{ json?: boolean; wait?: boolean }>() ?? {};
  return {
    ...self.optsWithGlobals<GlobalOptions>(),
    json: own.json === true || parent.json === true,
    wait: own.wait !== false && parent.wait !== false,
  };
}

export function migrateCommand(): Command {
  const cmd = new Command('migrate')
    .description('Move a VM live to another host (status, start-postcopy, pause, recover, cancel: see below)')
    .argument('<name>', 'VM name')
    .option('--to <url>', 'destination host, ws://HOST:PORT (wss:// for a TLS host)')
    .addOption(new Option('--mode <mode>', 'precopy while it runs; postcopy (resume there at once, pages fetched on demand); hybrid (pre-copy, then post-copy); cold for a stopped VM').choices(['precopy', 'postcopy', 'hybrid', 'cold']).default('precopy'))
    .option('--downtime-limit <ms>', 'switch over once the rest fits in this downtime (default 300, as QEMU)')
    .option('--max-bandwidth <bytes/s>', 'cap the page stream, e.g. 100M (default unlimited)')
    .option('--max-rounds <n>', 'after this many rounds without converging, throttle the vCPU until it does (hybrid: switch to post-copy) (default 30)')
    .option('--switchover-at-max-rounds', 'at --max-rounds, switch over even above the downtime limit (instead of throttling)')
    .option('--auto-converge', 'throttle the vCPU when it dirties memory faster than it can be sent')
    .option('--postcopy-after-rounds <n>', 'hybrid: switch to post-copy after N pre-copy rounds (it also switches when pre-copy does not converge)')
    .option('--no-auto-recover', 'post-copy: when the link drops, wait for "migrate recover" instead of reconnecting with backoff')
    .option('--give-up-after <ms>', 'post-copy: give the VM up (lost, on both hosts) after this long without a link (default: never)')
    .addOption(new Option('--xbzrle <mode>', 'pre-copy: send re-sent pages as deltas against the version sent before (auto: when the link is the bottleneck)').choices(['auto', 'on', 'off']).default('auto'))
    .addOption(new Option('--compress <mode>', 'pre-copy: compress page frames with LZ4 (auto: when the link is the bottleneck and it shrinks them)').choices(['auto', 'on', 'off']).default('auto'))
    .option('--xbzrle-cache <bytes>', 'the delta cache: the last-sent versions of this much memory, e.g. 256M (default: the dirty set when deltas start, and a quarter more, up to 512M)')
    .option('--no-wait', 'return as soon as the migration has started')
    .option('--json', 'print the final statistics as JSON')
    .action(async (name: string, o: MigrateOpts, self: Command) => {
      if (o.to === undefined) throw new UsageError('--to ws://HOST:PORT is required');
      const params: Record<string, unknown> = { name, to: o.to, mode: o.mode, autoConverge: o.autoConverge ?? false };
      if (!o.autoRecover) params.autoRecover = false;
      if (o.downtimeLimit !== undefined) params.downtimeLimitMs = parseCount(o.downtimeLimit, 'downtime limit');
      if (o.maxBandwidth !== undefined) params.maxBandwidth = parseSize(o.maxBandwidth, 'max bandwidth');
      if (o.maxRounds !== undefined) params.maxRounds = parseCount(o.maxRounds, 'max rounds');
      if (o.postcopyAfterRounds !== undefined) params.postcopyAfterRounds = parseCount(o.postcopyAfterRounds, 'post-copy after rounds');
      if (o.switchoverAtMaxRounds) params.switchoverAtMaxRounds = true;
      if (o.giveUpAfter !== undefined) params.giveUpAfterMs = parseCount(o.giveUpAfter, 'give-up-after');
      if (o.xbzrle !== undefined) params.xbzrle = o.xbzrle;
      if (o.compress !== undefined) params.compress = o.compress;
      if (o.xbzrleCache !== undefined) params.xbzrleCacheBytes = parseSize(o.xbzrleCache, 'xbzrle cache');
      const c = await connect(self.optsWithGlobals<GlobalOptions>(), 'ferry-migrate');
      try {
        const started = await c.request<MigrationInfo>('migrate.start', params);
        if (!o.wait) {
          if (o.json) printJson(started);
          else process.stdout.write(`${name}: migration to ${o.to} started\n`);
          return;
        }
        const bar = process.stderr.isTTY === true && !o.json ? progressBar() : undefined;
        const notice = pausedNotice(name);
        const final = await waitForMigration(c, name, (s) => {
          notice(s);
          bar?.update(s);
        }).finally(() => bar?.stop());
        if (o.json) printJson(final);
        else process.stdout.write(`${migrationSummary(final)}\n`);
        if (final.status !== 'completed') throw new FerryError('EMIGRATE', migrationSummary(final));
      } finally {
        await c.close();
      }
    });

  cmd.command('status')
    .description('Statistics of the current or last migration of a VM on this host (QEMU query-migrate names)')
    .argument('<name>', 'VM name')
    .option('--json', 'print one JSON document')
    .action(async (name: string, _o: unknown, self: Command) => {
      // `--json` after `status` may be taken by the parent `migrate` command: read it from both.
      const o = self.optsWithGlobals<GlobalOptions & { json?: boolean }>();
      const c = await connect(o, 'ferry-migrate');
      try {
        const s = await c.request<MigrationInfo>('migrate.status', { name });
        if (o.json) printJson(s);
        else process.stdout.write(`${s.status === 'active' || s.status === 'setup' || s.status === 'device' ? progressLine(s) : migrationSummary(s)}\n`);
      } finally {
        await c.close();
      }
    });

  cmd.command('start-postcopy')
    .description('Switch a running hybrid migration to post-copy now (as QEMU migrate-start-postcopy)')
    .argument('<name>', 'VM name')
    .action(async (name: string, _o: unknown, self: Command) => {
      const c = await connect(self.optsWithGlobals<GlobalOptions>(), 'ferry-migrate');
      try {
        await c.request('migrate.start-postcopy', { name });
        process.stdout.write(`${name}: switching to post-copy at the end of the current round\n`);
      } finally {
        await c.close();
      }
    });

  cmd.command('pause')
    .description('Drop the link of a post-copy migration on purpose (as QEMU migrate-pause); it stays postcopy-paused until "recover"')
    .argument('<name>', 'VM name')
    .option('--json', 'print the migration\'s statistics as JSON')
    .action(async (name: string, _o: unknown, self: Command) => {
      const o = subOpts(self);
      const c = await connect(o, 'ferry-migrate');
      try {
        const asked = await c.request<MigrationInfo>('migrate.pause', { name });
        // The link drops right after the answer: report the status it lands in.
        const s = asked.status === 'postcopy-paused' ? asked : await waitForMigration(c, name, undefined, (i) => i.status === 'postcopy-paused');
        if (o.json) printJson(s);
        else if (s.status === 'postcopy-paused') process.stdout.write(`${name}: migration postcopy-paused; "ferry migrate recover ${name}" reconnects it\n`);
        else process.stdout.write(`${migrationSummary(s)}\n`);
        if (s.status !== 'postcopy-paused') throw new FerryError('ESTATE', `the migration of "${name}" ended before it could be paused: ${s.status}`);
      } finally {
        await c.close();
      }
    });

  cmd.command('recover')
    .description('Reconnect a postcopy-paused migration now (as QEMU migrate-recover) and wait for it to end; run on the source host')
    .argument('<name>', 'VM name')
    .option('--no-wait', 'return as soon as the reconnection has started')
    .option('--json', 'print the final statistics as JSON')
    .action(async (name: string, _o: unknown, self: Command) => {
      const o = subOpts(self);
      const c = await connect(o, 'ferry-migrate');
      try {
        const asked = await c.request<MigrationInfo>('migrate.recover', { name });
        if (!o.wait) {
          if (o.json) printJson(asked);
          else process.stdout.write(`${name}: reconnecting the post-copy migration to ${asked.peer}\n`);
          return;
        }
        // Stop waiting if the attempt this asked for fails: the migration stays postcopy-paused.
        const failedAttempt = (s: MigrationInfo) => s.status === 'postcopy-paused' && s['error-desc'] !== asked['error-desc']
          && /recovery attempt \d+ failed/.test(s['error-desc'] ?? '');
        const bar = process.stderr.isTTY === true && !o.json ? progressBar() : undefined;
        const final = await waitForMigration(c, name, bar ? (s) => bar.update(s) : undefined, failedAttempt).finally(() => bar?.stop());
        if (o.json) printJson(final);
        else process.stdout.write(`${migrationSummary(final)}\n`);
        if (final.status === 'postcopy-paused') {
          throw new FerryError('EMIGRATE', `recovery failed: ${final['error-desc'] ?? ''}; the migration stays postcopy-paused`);
        }
        if (final.status !== 'completed') throw new FerryError('EMIGRATE', migrationSummary(final));
      } finally {
        await c.close();
      }
    });

  cmd.command('resolve')
    .description('Decide a switch-over whose outcome the source could not learn (outcome-unknown; run on the source host): --release if the destination runs the VM, --resume if it does not')
    .argument('<name>', 'VM name')
    .option('--release', 'the destination runs the VM: drop the paused copy here')
    .option('--resume', 'the destination does not run the VM: run the paused copy here')
    .action(async (name: string, _o: unknown, self: Command) => {
      const o = self.opts<{ release?: boolean; resume?: boolean }>();
      if (o.release === o.resume) throw new UsageError('give exactly one of --release or --resume');
      const c = await connect(self.optsWithGlobals<GlobalOptions>(), 'ferry-migrate');
      try {
        await c.request('migrate.resolve', { name, decision: o.release ? 'release' : 'resume' });
        const final = await waitForMigration(c, name);
        process.stdout.write(`${migrationSummary(final)}\n`);
      } finally {
        await c.close();
      }
    });

  cmd.command('cancel')
    .description('Cancel a migration before its switch-over: the VM runs on here')
    .argument('<name>', 'VM name')
    .action(async (name: string, _o: unknown, self: Command) => {
      const c = await connect(self.optsWithGlobals<GlobalOptions>(), 'ferry-migrate');
      try {
        await c.request('migrate.cancel', { name });
        const final = await waitForMigration(c, name);
        process.stdout.write(`${migrationSummary(final)}\n`);
      } finally {
        await c.close();
      }
    });
  return cmd;
}
