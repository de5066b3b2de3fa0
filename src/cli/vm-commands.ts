import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { Command, Option } from 'commander';
import { loadToken } from '../wire/auth.ts';
import { ControlClient } from '../wire/control-client.ts';
import { loadClientTls, type TlsTrust } from '../wire/tls.ts';
import type { VmSummary } from '../host/registry.ts';
import { UsageError } from '../errors.ts';
import { checkRamSize } from '../memory/guest-memory.ts';
import { collect, parseCount, parseSize } from './parse.ts';
import { printJson, vmDetails, vmTable } from './output.ts';

export const DEFAULT_HOST_URL = 'ws://127.0.0.1:7400';

export interface GlobalOptions {
  host: string;
  tokenFile?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/**
 * Connects to the host named by --host / FERRY_HOST, with the token from --token-file /
 * FERRY_TOKEN and, for wss://, the CA and client certificate from --tls-ca / --tls-cert / --tls-key.
 */
export async function connect(g: GlobalOptions, client = 'ferry-cli'): Promise<ControlClient> {
  let token: string | undefined;
  let tls: TlsTrust | undefined;
  try {
    token = loadToken(g.tokenFile);
    tls = loadClientTls({ ca: g.tlsCa, cert: g.tlsCert, key: g.tlsKey });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return ControlClient.connect(g.host, { client, ...(token !== undefined ? { token } : {}), ...(tls !== undefined ? { tls } : {}) });
}

/** Runs `fn` with a connected client and always closes it. */
async function withClient<T>(cmd: Command, fn: (c: ControlClient) => Promise<T>): Promise<T> {
  const c = await connect(cmd.optsWithGlobals<GlobalOptions>());
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

/** --memory, checked here: a size the host would refuse is the user's input (exit 2), said in their units. */
function guestRam(text: string): number {
  const size = parseSize(text, 'memory size');
  try {
    checkRamSize(size);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return size;
}

interface CreateOpts {
  program?: string;
  elf?: string;
  memory?: string;
  icount?: boolean;
  insnLimit?: string;
  arg: string[];
  start?: boolean;
  json?: boolean;
}

function lifecycle(vm: Command, verb: 'start' | 'pause' | 'resume' | 'stop' | 'destroy', description: string): void {
  vm.command(verb)
    .description(description)
    .argument('<name>', 'VM name')
    .option('--json', 'print the result as JSON')
    .action(async (name: string, o: { json?: boolean }, cmd: Command) => {
      const r = await withClient(cmd, (c) => c.request<VmSummary | { name: string }>(`vm.${verb}`, { name }));
      if (o.json) printJson(r);
      else process.stdout.write(`${name}: ${'state' in r ? r.state : 'destroyed'}\n`);
    });
}

export function vmCommand(): Command {
  const vm = new Command('vm').description('Create, inspect and drive VMs on a host (--host, or FERRY_HOST)');

  vm.command('create')
    .description('Create a VM from a built program or an ELF file')
    .argument('<name>', 'VM name (letters, digits, . _ -)')
    .option('--program <name>', 'a built guest program (hello, counter, memstress, sieve, life, echo)')
    .option('--elf <file>', 'an RV32 ELF file to upload')
    .option('--memory <size>', 'guest RAM, e.g. 64M or 1G', '128M')
    .option('--icount', 'deterministic mode: guest time derives from retired instructions')
    .option('--insn-limit <n>', 'halt after exactly N retired instructions')
    .addOption(new Option('--arg <key=value>', 'boot argument for the guest (repeatable)').default([]).argParser(collect))
    .option('--start', 'start it right away')
    .option('--json', 'print the new VM as JSON')
    .action(async (name: string, o: CreateOpts, cmd: Command) => {
      if ((o.program === undefined) === (o.elf === undefined)) throw new UsageError('give exactly one of --program P or --elf F');
      const params: Record<string, unknown> = {
        name, memory: guestRam(o.memory ?? '128M'), icount: o.icount ?? false, args: o.arg, start: o.start ?? false,
      };
      if (o.insnLimit !== undefined) params.insnLimit = parseCount(o.insnLimit, 'instruction limit');
      if (o.program !== undefined) params.program = o.program;
      if (o.elf !== undefined) {
        try {
          params.elf = new Uint8Array(readFileSync(o.elf));
        } catch (e) {
          throw new UsageError(`cannot read ELF file ${o.elf}: ${(e as Error).message}`);
        }
        params.elfName = basename(o.elf);
      }
      const r = await withClient(cmd, (c) => c.request<VmSummary>('vm.create', params));
      if (o.json) printJson(r);
      else process.stdout.write(`${r.name}: ${r.state} on host ${r.host}\n`);
    });

  vm.command('list')
    .description('List the VMs on a host')
    .option('--json', 'print one JSON document')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const r = await withClient(cmd, (c) => c.request<VmSummary[]>('vm.list'));
      if (o.json) printJson(r);
      else process.stdout.write(r.length ? `${vmTable(r)}\n` : 'no VMs\n');
    });

  vm.command('info')
    .description('Show one VM: state, pc, instret, MIPS, memory, host')
    .argument('<name>', 'VM name')
    .option('--json', 'print one JSON document')
    .action(async (name: string, o: { json?: boolean }, cmd: Command) => {
      const r = await withClient(cmd, (c) => c.request<VmSummary>('vm.info', { name }));
      if (o.json) printJson(r);
      else process.stdout.write(`${vmDetails(r)}\n`);
    });

  lifecycle(vm, 'start', 'Start a created VM');
  lifecycle(vm, 'pause', 'Pause a running VM at an instruction boundary');
  lifecycle(vm, 'resume', 'Resume a paused VM');
  lifecycle(vm, 'stop', 'Power a VM off for good (its state stays readable)');
  lifecycle(vm, 'destroy', 'Stop a VM and free everything it holds (a VM whose post-copy migration is paused is given up: lost on both hosts)');

  vm.command('digest')
    .description('SHA-256 over RAM, CPU and devices (a running VM is paused for it, then resumed)')
    .argument('<name>', 'VM name')
    .option('--json', 'print one JSON document')
    .action(async (name: string, o: { json?: boolean }, cmd: Command) => {
      const r = await withClient(cmd, (c) => c.request<{ digest: string; instret: number }>('vm.digest', { name }));
      if (o.json) printJson(r);
      else process.stdout.write(`digest: ${r.digest}\n`);
    });

  vm.command('console')
    .description('Attach to a VM console: output to stdout, stdin to the guest (Ctrl-] or Ctrl-C detaches)')
    .argument('<name>', 'VM name')
    .option('--no-history', 'do not print the output that came before attaching')
    .action(async (name: string, o: { history: boolean }, cmd: Command) => {
      await attachConsole(cmd.optsWithGlobals<GlobalOptions>(), name, o.history);
    });

  return vm;
}

const CTRL_RIGHT_BRACKET = 0x1d;

/** Streams a VM's console until detach (Ctrl-], SIGINT), the VM ends, or the host goes away. */
async function attachConsole(g: GlobalOptions, name: string, history: boolean): Promise<void> {
  // Ctrl-C detaches from the first moment, even before the console is attached.
  let interrupted = false;
  let detach = () => { interrupted = true; };
  const onSigint = () => detach();
  process.on('SIGINT', onSigint);
  try {
    const c = await connect(g, 'ferry-console');
    try {
      if (!interrupted) await streamConsole(c, name, history, (fn) => { detach = fn; if (interrupted) fn(); });
    } finally {
      await c.close(); // (a console that could not attach, "no VM named ...", used to keep the command waiting)
    }
  } finally {
    process.off('SIGINT', onSigint);
  }
}

async function streamConsole(c: ControlClient, name: string, history: boolean, onDetach: (fn: () => void) => void): Promise<void> {
  const r = await c.request<{ history: Uint8Array }>('console.attach', { name });
  if (history) process.stdout.write(r.history);
  const tty = process.stdin.isTTY === true;
  await new Promise<void>((resolve, reject) => {
    let finished = false;
    const done = (err?: Error) => {
      if (finished) return;
      finished = true;
      process.stdin.off('data', onInput);
      if (tty) process.stdin.setRawMode(false);
      process.stdin.pause();
      void c.close().then(() => (err ? reject(err) : resolve()));
    };
    const onInput = (chunk: Buffer) => {
      if (tty && chunk.includes(CTRL_RIGHT_BRACKET)) {
        done();
        return;
      }
      if (tty && chunk.includes(3)) {
        done();
        return;
      }
      c.request('console.input', { name, data: new Uint8Array(chunk) }).catch((e: Error) => done(e));
    };
    onDetach(() => done());
    c.on('event', (event: string, vm: string | undefined, data: unknown) => {
      if (vm !== name) return;
      if (event === 'console') process.stdout.write(data as Uint8Array);
      else if (event === 'vm.state') {
        const s = data as VmSummary & { state: string };
        if (s.state === 'halted') process.stderr.write(`\n[${name} halted: ${s.haltReason}, exit ${s.exitCode}]\n`);
        if (s.state === 'destroyed') {
          // It may have only moved: say where, and how to follow it there.
          const why = (s as { why?: unknown }).why;
          const moved = typeof why === 'string' ? /^migrated to (\S+)(?: as (\S+))?$/.exec(why) : null;
          process.stderr.write(moved
            ? `\n[${name} migrated to ${moved[1]}${moved[2] ? ` as ${moved[2]}` : ''}; "ferry --host ${moved[1]} vm console ${moved[2] ?? name}" follows it there]\n`
            : `\n[${name} ${typeof why === 'string' && why !== 'destroyed' ? `gone: ${why}` : 'destroyed'}]\n`);
          done();
        }
      }
    });
    c.on('close', (e: Error) => done(e));
    if (tty) {
      process.stderr.write(`[attached to ${name}; Ctrl-] detaches]\n`);
      process.stdin.setRawMode(true);
    }
    process.stdin.on('data', onInput);
    process.stdin.on('error', () => {});
    process.stdin.resume();
  });
}
