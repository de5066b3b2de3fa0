import { Command, Option } from 'commander';
import type { ControlClient } from '../wire/control-client.ts';
import { Migration } from '../api/client.ts';
import type { MigrationInfo } from '../migration/stats.ts';
import { FINAL_STATUSES } from '../migration/stats.ts';
import { FerryError, ReportedError, UsageError } from '../errors.ts';
import { MigrationProgress, statisticsTable } from './migration-progress.ts';
import { fmtBytes, printJson } from './output.ts';
import { parseCount, parseSize } from './parse.ts';
import { connect, type GlobalOptions } from './vm-commands.ts';

export interface MigrateOpts {
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
  detach?: boolean;
  convergencePolicy?: string;
  pushOrder?: string;
  /** --name: the name on the destination. */
  name?: string;
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

/** The live status on a terminal: one line, redrawn in place (migration-progress.ts). */
function liveLine(): { update(s: MigrationInfo): void; stop(): void } {
  const progress = new MigrationProgress();
  let shown = false;
  return {
    update(s) {
      const width = Math.max(40, process.stderr.columns || 120); // (a pty without a size reports 0 columns)
      const text = progress.line(s);
      process.stderr.write(`\r\x1b[K${text.length > width - 1 ? `${text.slice(0, width - 2)}…` : text}`);
      shown = true;
    },
    stop() {
      if (shown) process.stderr.write('\r\x1b[K');
      shown = false;
    },
  };
}

/**
 * Waits for the outgoing migration of `name` to end (or for `until` to hold), with every
 * statistics update on the way: the library's Migration handle (events, and polling should one be lost).
 */
export function waitForMigration(
  c: ControlClient, name: string, onProgress?: (s: MigrationInfo) => void, until?: (s: MigrationInfo) => boolean,
): Promise<MigrationInfo> {
  const m = new Migration(c, name);
  return new Promise((resolve, reject) => {
    m.on('update', (s) => {
      onProgress?.(s);
      if (!FINAL_STATUSES.includes(s.status) && until?.(s) === true) {
        resolve(s);
        m.abandon(new FerryError('ECANCELED', 'no longer followed'));
      }
    });
    m.done.then(resolve, reject);
    m.begin();
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
      process.stderr.write(`${name}: postcopy-paused: ${s['error-desc'] ?? 'link lost'} ("ferry migration recover ${name}" reconnects now)\n`);
    }
    const warning = s['convergence-warning'];
    if (warning !== undefined && !warned) process.stderr.write(`${name}: ${warning}\n`);
    warned = warning !== undefined;
    if (s.status === 'outcome-unknown' && last !== 'outcome-unknown') {
      process.stderr.write(`${name}: outcome-unknown: ${s['error-desc'] ?? 'the link was lost at the switch-over'}; the VM stays paused here until the destination answers ("ferry migration resolve ${name} --release|--resume" decides)\n`);
    }
    last = s.status;
  };
}

/** Statuses after which the source can no longer cancel: the destination runs (or may run) the guest. */
const PAST_SWITCHOVER: readonly string[] = ['device', 'outcome-unknown', 'postcopy-active', 'postcopy-paused'];

/** Prints a finished migration once: its summary (a table on a terminal) or JSON; a failure exits 1 with it. */
function report(final: MigrationInfo, json: boolean, failure = (s: MigrationInfo) => migrationSummary(s)): void {
  if (final.status === 'completed') {
    if (json) printJson(final);
    else if (process.stdout.isTTY === true) process.stdout.write(`${migrationSummary(final)}\n${statisticsTable(final)}\n`);
    else process.stdout.write(`${migrationSummary(final)}\n`);
    return;
  }
  if (json) {
    printJson(final);
    throw new ReportedError('EMIGRATE', failure(final));
  }
  throw new FerryError('EMIGRATE', failure(final));
}

/** Old spellings of the `ferry migration` verbs: a VM may be named so, but without --to say where they went. */
const MIGRATION_VERBS = ['status', 'cancel', 'start-postcopy', 'pause', 'recover', 'resolve'];

/**
 * Waits for a migration `ferry migrate` started, with Ctrl-C meaning what `virsh migrate` users
 * expect: before the switch-over it cancels (the VM runs on here); after it, it explains why it
 * cannot, and a second Ctrl-C stops watching. With --detach, Ctrl-C stops watching at once.
 */
export async function follow(c: ControlClient, name: string, o: { json: boolean; detach: boolean }): Promise<{ final: MigrationInfo; cancelledHere: boolean } | undefined> {
  const live = process.stderr.isTTY === true && !o.json ? liveLine() : undefined;
  const notice = pausedNotice(name);
  let last: MigrationInfo | undefined;
  let cancelling = false;
  let explained = false;
  let leave: ((why: string) => void) | undefined;
  const left = new Promise<string>((resolve) => { leave = resolve; });
  const say = (text: string) => {
    live?.stop();
    process.stderr.write(`${text}\n`);
  };
  const onSigint = () => {
    const status = last?.status ?? 'setup';
    if (o.detach || (cancelling && !PAST_SWITCHOVER.includes(status)) || explained) {
      leave!(o.detach ? 'detached' : 'interrupted');
      return;
    }
    if (PAST_SWITCHOVER.includes(status)) {
      explained = true;
      say(`${name}: the migration is past its switch-over (${status}): the guest runs on the destination, which still needs pages from here, so it cannot be cancelled. It goes on without this command: Ctrl-C again stops watching ("ferry migration status ${name}" follows it).`);
      return;
    }
    cancelling = true;
    say(`${name}: cancelling the migration (Ctrl-C again stops waiting for the cancel)`);
    c.request('migrate.cancel', { name }).catch((e: Error) => {
      // Too late: it switched over meanwhile. Say so once, and go on watching.
      explained = true;
      say(`${name}: cannot cancel: ${e.message}. Ctrl-C again stops watching.`);
    });
  };
  process.on('SIGINT', onSigint);
  try {
    const done = waitForMigration(c, name, (s) => {
      last = s;
      notice(s);
      live?.update(s);
    });
    const outcome = await Promise.race([done, left]);
    live?.stop();
    if (typeof outcome === 'string') {
      done.catch(() => undefined);
      const status = last?.status ?? 'setup';
      if (outcome === 'detached') {
        process.stderr.write(`${name}: detached; the migration goes on (${status}): "ferry migration status ${name}" follows it\n`);
        return undefined;
      }
      throw new FerryError('EINTERRUPTED', `stopped watching; the migration goes on (${status}): "ferry migration status ${name}" follows it`);
    }
    return { final: outcome, cancelledHere: cancelling };
  } finally {
    process.off('SIGINT', onSigint);
    live?.stop();
  }
}

/** The migration options `ferry migrate` and `ferry host drain` share (all but --to). */
export function addMigrationOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--mode <mode>', 'precopy while it runs; postcopy (resume there at once, pages fetched on demand); hybrid (pre-copy, then post-copy); cold for a stopped VM').choices(['precopy', 'postcopy', 'hybrid', 'cold']).default('precopy'))
    .option('--downtime-limit <ms>', 'switch over once the rest fits in this downtime (default 300, as QEMU)')
    .option('--max-bandwidth <bytes/s>', 'cap the page stream, e.g. 100M (default unlimited)')
    .option('--max-rounds <n>', 'after this many rounds without converging, throttle the vCPU until it does (hybrid: switch to post-copy) (default 30)')
    .option('--switchover-at-max-rounds', 'at --max-rounds, switch over even above the downtime limit (instead of throttling)')
    .option('--auto-converge', 'throttle the vCPU when it dirties memory faster than it can be sent')
    .option('--postcopy-after-rounds <n>', 'hybrid: switch to post-copy after N pre-copy rounds (it also switches when pre-copy does not converge)')
    .option('--no-auto-recover', 'post-copy: when the link drops, wait for "ferry migration recover" instead of reconnecting with backoff')
    .option('--give-up-after <ms>', 'post-copy: give the VM up (lost, on both hosts) after this long without a link (default: never)')
    .addOption(new Option('--xbzrle <mode>', 'pre-copy: send re-sent pages as deltas against the version sent before (auto: when the link is the bottleneck)').choices(['auto', 'on', 'off']).default('auto'))
    .addOption(new Option('--compress <mode>', 'pre-copy: compress page frames with LZ4 (auto: when the link is the bottleneck and it shrinks them)').choices(['auto', 'on', 'off']).default('auto'))
    .option('--xbzrle-cache <bytes>', 'the delta cache: the last-sent versions of this much memory, e.g. 256M (default: the dirty set when deltas start, and a quarter more, up to 512M)')
    .option('--convergence-policy <name>', 'pre-copy: decide rounds, throttle and switch-over by this policy of the source host (default, predictive, or one from its --policy-module)')
    .option('--push-order <name>', 'post-copy: push the missing pages in this order of the source host (default, near-pc, or one from its --policy-module)');
}

/** migrate.start parameters from those options. */
export function migrationParams(name: string, to: string, o: MigrateOpts): Record<string, unknown> {
  const params: Record<string, unknown> = { name, to, mode: o.mode, autoConverge: o.autoConverge ?? false };
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
  if (o.convergencePolicy !== undefined) params.convergencePolicy = o.convergencePolicy;
  if (o.pushOrder !== undefined) params.pushOrder = o.pushOrder;
  return params;
}

export function migrateCommand(): Command {
  return addMigrationOptions(new Command('migrate')
    .description('Move a VM live to another host (then "ferry migration status|cancel|... NAME")')
    .argument('<name>', 'VM name (any: "ferry migrate status --to URL" moves a VM named status)')
    .option('--to <url>', 'destination host, ws://HOST:PORT (wss:// for a TLS host)')
    .option('--name <new>', 'the VM\'s name on the destination (default: its name here)'))
    .option('--detach', 'Ctrl-C stops watching and leaves the migration running (without it, Ctrl-C cancels a migration before its switch-over)')
    .option('--no-wait', 'return as soon as the migration has started')
    .option('--json', 'print the final statistics as JSON')
    .action(async (name: string, o: MigrateOpts, self: Command) => {
      if (o.to === undefined) {
        throw new UsageError(MIGRATION_VERBS.includes(name)
          ? `--to ws://HOST:PORT is required (to ${name} a migration: "ferry migration ${name} NAME")`
          : '--to ws://HOST:PORT is required');
      }
      const params = { ...migrationParams(name, o.to, o), ...(o.name !== undefined ? { as: o.name } : {}) };
      const c = await connect(self.optsWithGlobals<GlobalOptions>(), 'ferry-migrate');
      try {
        const started = await c.request<MigrationInfo>('migrate.start', params);
        if (!o.wait) {
          if (o.json) printJson(started);
          else process.stdout.write(`${name}: migration to ${o.to} started\n`);
          return;
        }
        const followed = await follow(c, name, { json: o.json === true, detach: o.detach === true });
        if (followed) report(followed.final, o.json === true);
      } finally {
        await c.close();
      }
    });
}

/** `ferry migration VERB NAME`: what follows a migration once it is started (QEMU's query-migrate, migrate_cancel, ...). */
export function migrationCommand(): Command {
  const cmd = new Command('migration')
    .description('Follow or steer a migration: status, cancel, start-postcopy, pause, recover, resolve (run on the source host)');

  cmd.command('status')
    .description('Statistics of the current or last migration of a VM on this host (QEMU query-migrate names)')
    .argument('<name>', 'VM name')
    .option('--json', 'print one JSON document')
    .action(async (name: string, o: { json?: boolean }, self: Command) => {
      const c = await connect(self.optsWithGlobals<GlobalOptions>(), 'ferry-migrate');
      try {
        const s = await c.request<MigrationInfo>('migrate.status', { name });
        if (o.json) printJson(s);
        else if (s.status === 'setup' || s.status === 'active' || s.status === 'device') process.stdout.write(`${new MigrationProgress().line(s)}\n`);
        else process.stdout.write(`${migrationSummary(s)}\n`);
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
    .action(async (name: string, o: { json?: boolean }, self: Command) => {
      const c = await connect(self.optsWithGlobals<GlobalOptions>(), 'ferry-migrate');
      try {
        const asked = await c.request<MigrationInfo>('migrate.pause', { name });
        // The link drops right after the answer: report the status it lands in.
        const s = asked.status === 'postcopy-paused' ? asked : await waitForMigration(c, name, undefined, (i) => i.status === 'postcopy-paused');
        if (s.status !== 'postcopy-paused') {
          if (o.json) printJson(s);
          const why = `the migration of "${name}" ended before it could be paused: ${migrationSummary(s)}`;
          throw o.json ? new ReportedError('ESTATE', why) : new FerryError('ESTATE', why);
        }
        if (o.json) printJson(s);
        else process.stdout.write(`${name}: migration postcopy-paused; "ferry migration recover ${name}" reconnects it\n`);
      } finally {
        await c.close();
      }
    });

  cmd.command('recover')
    .description('Reconnect a postcopy-paused migration now (as QEMU migrate-recover) and wait for it to end; run on the source host')
    .argument('<name>', 'VM name')
    .option('--no-wait', 'return as soon as the reconnection has started')
    .option('--json', 'print the final statistics as JSON')
    .action(async (name: string, o: { json?: boolean; wait: boolean }, self: Command) => {
      const c = await connect(self.optsWithGlobals<GlobalOptions>(), 'ferry-migrate');
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
        const live = process.stderr.isTTY === true && !o.json ? liveLine() : undefined;
        const final = await waitForMigration(c, name, live ? (s) => live.update(s) : undefined, failedAttempt).finally(() => live?.stop());
        report(final, o.json === true, (s) => (s.status === 'postcopy-paused'
          ? `recovery failed: ${s['error-desc'] ?? ''}; the migration stays postcopy-paused`
          : migrationSummary(s)));
      } finally {
        await c.close();
      }
    });

  cmd.command('resolve')
    .description('Decide a switch-over whose outcome the source could not learn (outcome-unknown; run on the source host): --release if the destination runs the VM, --resume if it does not')
    .argument('<name>', 'VM name')
    .option('--release', 'the destination runs the VM: drop the paused copy here')
    .option('--resume', 'the destination does not run the VM: run the paused copy here')
    .action(async (name: string, o: { release?: boolean; resume?: boolean }, self: Command) => {
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
