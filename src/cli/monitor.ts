import { homedir } from 'node:os';
import { join } from 'node:path';
import repl, { type REPLServer } from 'node:repl';
import { Command } from 'commander';
import type { ControlClient } from '../wire/control-client.ts';
import type { VmSummary } from '../host/registry.ts';
import { UsageError } from '../errors.ts';
import { hex32, vmDetails, vmTable } from './output.ts';
import { parseCount, parseSize } from './parse.ts';
import { connect, type GlobalOptions } from './vm-commands.ts';
import { builtPrograms } from '../vm/programs.ts';
import { migrationSummary } from './migrate-command.ts';
import { FINAL_STATUSES, type MigrationInfo } from '../migration/stats.ts';

interface Verb {
  usage: string;
  help: string;
  run(args: string[], m: Monitor): Promise<string | void>;
}

const INFO_TOPICS = ['vms', 'vm', 'registers', 'migrate', 'host'];

const ABI = ['zero', 'ra', 'sp', 'gp', 'tp', 't0', 't1', 't2', 's0', 's1', 'a0', 'a1', 'a2', 'a3', 'a4', 'a5',
  'a6', 'a7', 's2', 's3', 's4', 's5', 's6', 's7', 's8', 's9', 's10', 's11', 't3', 't4', 't5', 't6'];

function need(args: string[], n: number, usage: string): void {
  if (args.length < n) throw new UsageError(`usage: ${usage}`);
}

/** QEMU-monitor-like verbs; `stop`/`cont` pause and resume as in QEMU. */
const VERBS: Record<string, Verb> = {
  help: {
    usage: 'help [verb]', help: 'list the verbs, or explain one',
    async run(args) {
      if (args[0] && VERBS[args[0]]) return `${VERBS[args[0]]!.usage}\n  ${VERBS[args[0]]!.help}`;
      return Object.values(VERBS).map((v) => `${v.usage}\n    ${v.help}`).join('\n');
    },
  },
  info: {
    usage: 'info vms | vm NAME | registers NAME | migrate NAME | host', help: 'show VMs, one VM, its registers, its migration, or the host',
    async run(args, m) {
      const [topic, name] = args;
      switch (topic) {
        case 'vms': {
          const vms = await m.client.request<VmSummary[]>('vm.list');
          m.names = vms.map((v) => v.name);
          return vms.length ? vmTable(vms) : 'no VMs';
        }
        case 'vm':
          need(args, 2, 'info vm NAME');
          return vmDetails(await m.client.request<VmSummary>('vm.info', { name }));
        case 'registers': {
          need(args, 2, 'info registers NAME');
          const r = await m.client.request<{ pc: number; x: number[]; live: boolean; state: string }>('vm.registers', { name });
          const lines = [`pc  ${hex32(r.pc)}   (${r.state}${r.live ? ', live sample' : ''})`];
          for (let i = 0; i < 32; i += 4) {
            lines.push([0, 1, 2, 3].map((j) => `x${i + j}/${ABI[i + j]}`.padEnd(8) + hex32(r.x[i + j]!)).join('  '));
          }
          return lines.join('\n');
        }
        case 'migrate': {
          need(args, 2, 'info migrate NAME');
          const s = await m.client.request<MigrationInfo>('migrate.status', { name });
          return [migrationSummary(s), ...s.rounds.map((r) => `  round ${r.round}: ${r.pages} pages in ${r.ms} ms, ${r.mbps} Mbit/s, `
            + `${r['dirty-pages']} dirtied, expected downtime ${r['expected-downtime-ms']} ms`)].join('\n');
        }
        case 'host': {
          const h = await m.client.request<Record<string, unknown>>('host.info');
          return Object.entries(h).map(([k, v]) => `${k}: ${String(v)}`).join('\n');
        }
        default:
          throw new UsageError(`usage: ${VERBS.info!.usage}`);
      }
    },
  },
  create: {
    usage: 'create NAME PROGRAM [memory=SIZE] [icount] [insn-limit=N] [start] [k=v...]',
    help: 'create a VM from a built program; other k=v pairs are boot args',
    async run(args, m) {
      need(args, 2, VERBS.create!.usage);
      const [name, program, ...rest] = args;
      const params: Record<string, unknown> = { name, program, args: [] as string[] };
      for (const a of rest) {
        if (a === 'icount') params.icount = true;
        else if (a === 'start') params.start = true;
        else if (a.startsWith('memory=')) params.memory = parseSize(a.slice(7), 'memory size');
        else if (a.startsWith('insn-limit=')) params.insnLimit = parseCount(a.slice(11), 'instruction limit');
        else (params.args as string[]).push(a);
      }
      const r = await m.client.request<VmSummary>('vm.create', params);
      m.names.push(r.name);
      return `${r.name}: ${r.state}`;
    },
  },
  start: { usage: 'start NAME', help: 'start a created VM', run: (a, m) => m.lifecycle('vm.start', a, 'start NAME') },
  stop: { usage: 'stop NAME', help: 'pause the VM (QEMU\'s stop)', run: (a, m) => m.lifecycle('vm.pause', a, 'stop NAME') },
  cont: { usage: 'cont NAME', help: 'resume the VM (QEMU\'s cont)', run: (a, m) => m.lifecycle('vm.resume', a, 'cont NAME') },
  poweroff: { usage: 'poweroff NAME', help: 'power the VM off for good', run: (a, m) => m.lifecycle('vm.stop', a, 'poweroff NAME') },
  destroy: { usage: 'destroy NAME', help: 'destroy the VM', run: (a, m) => m.lifecycle('vm.destroy', a, 'destroy NAME') },
  digest: {
    usage: 'digest NAME', help: 'SHA-256 over RAM, CPU and devices',
    async run(args, m) {
      need(args, 1, 'digest NAME');
      const r = await m.client.request<{ digest: string }>('vm.digest', { name: args[0] });
      return `digest: ${r.digest}`;
    },
  },
  console: {
    usage: 'console NAME | console off', help: 'show a VM\'s console output here as it comes (off stops)',
    async run(args, m) {
      need(args, 1, 'console NAME | console off');
      if (m.following) await m.client.request('console.detach', { name: m.following });
      if (args[0] === 'off') {
        m.following = undefined;
        return 'console off';
      }
      const r = await m.client.request<{ history: Uint8Array }>('console.attach', { name: args[0] });
      m.following = args[0];
      return `[console of ${args[0]}; "console off" stops]\n${Buffer.from(r.history).toString('latin1')}`;
    },
  },
  input: {
    usage: 'input NAME TEXT...', help: 'send TEXT and a newline to the VM\'s UART',
    async run(args, m) {
      need(args, 2, 'input NAME TEXT...');
      const data = Buffer.from(`${args.slice(1).join(' ')}\n`, 'latin1');
      await m.client.request('console.input', { name: args[0], data: new Uint8Array(data) });
    },
  },
  migrate: {
    usage: 'migrate NAME ws://HOST:PORT [cold|postcopy|hybrid] [downtime-limit=MS] [max-bandwidth=SIZE] [max-rounds=N] [switchover-at-max-rounds] [auto-converge] [postcopy-after-rounds=N] [no-auto-recover] [give-up-after=MS] [xbzrle=auto|on|off] [compress=auto|on|off] [xbzrle-cache=SIZE] [as=NEW_NAME] [convergence-policy=NAME] [push-order=NAME]',
    help: 'migrate a VM live to another host (progress shows here; the monitor stays usable)',
    async run(args, m) {
      need(args, 2, VERBS.migrate!.usage);
      const [name, to] = args;
      const params = monitorMigrateParams(args);
      await m.client.request('migrate.start', params);
      m.watching.add(name!);
      return `${name}: migration to ${to} started; "info migrate ${name}" shows progress`;
    },
  },
  migrate_start_postcopy: {
    usage: 'migrate_start_postcopy NAME', help: 'switch a hybrid migration to post-copy now',
    async run(args, m) {
      need(args, 1, 'migrate_start_postcopy NAME');
      await m.client.request('migrate.start-postcopy', { name: args[0] });
      return `${args[0]}: switching to post-copy`;
    },
  },
  migrate_pause: {
    usage: 'migrate_pause NAME', help: 'drop the link of a post-copy migration on purpose; it stays postcopy-paused until migrate_recover',
    async run(args, m) {
      need(args, 1, 'migrate_pause NAME');
      await m.client.request('migrate.pause', { name: args[0] });
      return `${args[0]}: pausing post-copy; "migrate_recover ${args[0]}" reconnects it`;
    },
  },
  migrate_recover: {
    usage: 'migrate_recover NAME', help: 'reconnect a postcopy-paused migration now (on the source host)',
    async run(args, m) {
      need(args, 1, 'migrate_recover NAME');
      const s = await m.client.request<MigrationInfo>('migrate.recover', { name: args[0] });
      m.watching.add(args[0]!);
      return `${args[0]}: reconnecting to ${s.peer}; "info migrate ${args[0]}" shows progress`;
    },
  },
  migrate_resolve: {
    usage: 'migrate_resolve NAME release|resume', help: 'decide a switch-over whose outcome is unknown: release (the destination runs it) or resume (it runs here)',
    async run(args, m) {
      need(args, 2, 'migrate_resolve NAME release|resume');
      if (args[1] !== 'release' && args[1] !== 'resume') throw new UsageError('usage: migrate_resolve NAME release|resume');
      await m.client.request('migrate.resolve', { name: args[0], decision: args[1] });
      return `${args[0]}: ${args[1] === 'release' ? 'releasing the copy here' : 'resuming the copy here'}`;
    },
  },
  migrate_cancel: {
    usage: 'migrate_cancel NAME', help: 'cancel a migration before its switch-over',
    async run(args, m) {
      need(args, 1, 'migrate_cancel NAME');
      await m.client.request('migrate.cancel', { name: args[0] });
      return `${args[0]}: cancelling`;
    },
  },
  quit: { usage: 'quit', help: 'leave the monitor (VMs keep running)', async run(_a, m) { m.server?.close(); } },
};

class Monitor {
  names: string[] = [];
  /** Migrations started here: their end is announced in the monitor. */
  readonly watching = new Set<string>();
  following: string | undefined;
  server: REPLServer | undefined;

  constructor(readonly client: ControlClient) {}

  async lifecycle(method: string, args: string[], usage: string): Promise<string> {
    need(args, 1, usage);
    const r = await this.client.request<VmSummary | { name: string }>(method, { name: args[0] });
    return `${args[0]}: ${'state' in r ? r.state : 'destroyed'}`;
  }

  complete(line: string): [string[], string] {
    return completeMonitorLine(line, this.names);
  }
}

/** Tab completion: verbs first, then `info` topics, program names for `create`, VM names elsewhere. */
/** The `migrate.start` request for the monitor's `migrate NAME URL [word ...]` (a UsageError for a word it does not know). */
export function monitorMigrateParams(args: readonly string[]): Record<string, unknown> {
  const [name, to, ...rest] = args;
  const params: Record<string, unknown> = { name, to };
  for (const a of rest) {
    if (a === 'cold' || a === 'postcopy' || a === 'hybrid') params.mode = a;
    else if (a.startsWith('postcopy-after-rounds=')) params.postcopyAfterRounds = parseCount(a.slice(22), 'post-copy after rounds');
    else if (a === 'auto-converge') params.autoConverge = true;
    else if (a === 'no-auto-recover') params.autoRecover = false;
    else if (a === 'switchover-at-max-rounds') params.switchoverAtMaxRounds = true;
    else if (a.startsWith('give-up-after=')) params.giveUpAfterMs = parseCount(a.slice(14), 'give-up-after');
    else if (a.startsWith('downtime-limit=')) params.downtimeLimitMs = parseCount(a.slice(15), 'downtime limit');
    else if (a.startsWith('max-bandwidth=')) params.maxBandwidth = parseSize(a.slice(14), 'max bandwidth');
    else if (a.startsWith('max-rounds=')) params.maxRounds = parseCount(a.slice(11), 'max rounds');
    else if (/^(xbzrle|compress)=(auto|on|off)$/.test(a)) params[a.slice(0, a.indexOf('='))] = a.slice(a.indexOf('=') + 1);
    else if (a.startsWith('xbzrle-cache=')) params.xbzrleCacheBytes = parseSize(a.slice(13), 'xbzrle cache');
    else if (a.startsWith('as=') && a.length > 3) params.as = a.slice(3);
    else if (a.startsWith('convergence-policy=') && a.length > 19) params.convergencePolicy = a.slice(19);
    else if (a.startsWith('push-order=') && a.length > 11) params.pushOrder = a.slice(11);
    else throw new UsageError(`usage: ${VERBS.migrate!.usage}`);
  }
  return params;
}

export function completeMonitorLine(line: string, vmNames: readonly string[]): [string[], string] {
  const words = line.trimStart().split(/\s+/);
  const last = words[words.length - 1] ?? '';
  let pool: readonly string[];
  if (words.length <= 1) pool = Object.keys(VERBS);
  else if (words[0] === 'info' && words.length === 2) pool = INFO_TOPICS;
  else if (words[0] === 'info' && words.length === 3 && words[1] !== 'vms' && words[1] !== 'host') pool = vmNames;
  else if (words[0] === 'create' && words.length === 3) pool = builtPrograms();
  else if (words[0] === 'console' && words.length === 2) pool = [...vmNames, 'off'];
  else if (words.length === 2) pool = vmNames;
  else pool = [];
  return [pool.filter((p) => p.startsWith(last)), last];
}

export function monitorCommand(): Command {
  return new Command('monitor')
    .description('Interactive, QEMU-monitor-like shell for a host (info vms, stop, cont, create, console, help)')
    .action(async (_o: unknown, cmd: Command) => {
      const client = await connect(cmd.optsWithGlobals<GlobalOptions>(), 'ferry-monitor');
      const m = new Monitor(client);
      m.names = (await client.request<VmSummary[]>('vm.list')).map((v) => v.name);
      // Lines are run one after another even when they arrive faster (piped input).
      let queue = Promise.resolve();
      let quitting = false;
      const server = repl.start({
        prompt: '(ferry) ',
        ignoreUndefined: true,
        completer: (line: string) => m.complete(line),
        eval: (input, _ctx, _file, cb) => {
          const words = input.trim().split(/\s+/).filter(Boolean);
          if (words.length === 0) {
            cb(null, undefined);
            return;
          }
          const verb = Object.hasOwn(VERBS, words[0]!) ? VERBS[words[0]!] : undefined;
          queue = queue.then(async () => {
            if (!verb) {
              cb(null, `unknown command "${words[0]}"; try "help"`);
              return;
            }
            if (verb === VERBS.quit) quitting = true;
            try {
              cb(null, await verb.run(words.slice(1), m));
            } catch (e) {
              cb(null, `error: ${(e as Error).message}`);
            }
          });
        },
        writer: (out: unknown) => (typeof out === 'string' ? out : String(out)),
      });
      m.server = server;
      client.on('event', (event: string, vm: string | undefined, data: unknown) => {
        if (event === 'console' && vm === m.following) process.stdout.write(Buffer.from(data as Uint8Array).toString('latin1'));
        if (event === 'migration' && vm !== undefined && m.watching.has(vm)) {
          const s = data as MigrationInfo;
          if (FINAL_STATUSES.includes(s.status)) {
            m.watching.delete(vm);
            process.stdout.write(`\n${migrationSummary(s)}\n`);
            server.displayPrompt(true);
          }
        }
        if (event === 'vm.state' && vm !== undefined) {
          const s = (data as { state: string }).state;
          if (s === 'destroyed') m.names = m.names.filter((n) => n !== vm);
          else if (!m.names.includes(vm)) m.names.push(vm);
        }
      });
      client.on('close', (e: Error) => {
        if (quitting) return;
        process.stderr.write(`\nmonitor: ${e.message}\n`);
        server.close();
      });
      if (process.stdin.isTTY) {
        server.setupHistory(process.env.FERRY_HISTORY ?? join(homedir(), '.ferry_monitor_history'), () => {});
      }
      await new Promise<void>((resolve) => server.on('exit', () => resolve()));
      quitting = true;
      await queue;
      await client.close();
    });
}
