// Shared bits for the test suites: paths, guest ELFs, in-process runs, the CLI, polling.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StepExit } from '../../src/cpu/cpu.ts';
import { GuestMemory } from '../../src/memory/guest-memory.ts';
import { bootElf } from '../../src/vm/boot.ts';
import { Machine } from '../../src/vm/machine.ts';
import { Vm, type VmCreateOptions } from '../../src/vm/vm.ts';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const GUEST_DIR = join(REPO_ROOT, 'guest-programs');
export const BUILD_DIR = join(GUEST_DIR, 'build');
export const TESTS_BUILD_DIR = join(BUILD_DIR, 'tests');
export const TESTS_SRC_DIR = join(GUEST_DIR, 'tests');

export const MiB = 1024 * 1024;
export const PAGE = 4096;

/** Path of a built guest program (`hello`) or conformance test (`tests/rr`). */
export function elfPath(name: string): string {
  return join(BUILD_DIR, `${name}.elf`);
}

export function loadElf(name: string): Uint8Array {
  return new Uint8Array(readFileSync(elfPath(name)));
}

/** Names of the conformance ELFs (without `.elf`), sorted. */
export function conformanceTests(): string[] {
  return readdirSync(TESTS_BUILD_DIR)
    .filter((f) => f.endsWith('.elf'))
    .map((f) => f.slice(0, -4))
    .sort();
}

/** Conformance tests that report through HTIF `tohost` (Ferry only; they spin on QEMU). */
export const HTIF_TESTS = new Set(['htif-pass', 'htif-fail-expected']);

export interface InProcessResult {
  exit: StepExit;
  exitCode: number;
  reason: string;
  instret: number;
  output: string;
}

/** Boots an ELF in this thread (no worker) in icount mode and runs it to a halt or `maxInsns`. */
export function runInProcess(
  elf: Uint8Array,
  opts: { args?: string[]; memory?: number; maxInsns?: number } = {},
): InProcessResult {
  const mem = GuestMemory.allocate(opts.memory ?? 16 * MiB);
  const boot = bootElf(mem, elf, opts.args ?? []);
  let output = '';
  const m = new Machine(
    mem,
    boot.cpuState,
    { ramSize: mem.size, clock: 'icount', tohost: boot.tohost },
    { transmit: (c) => { output += String.fromCharCode(c); }, input: { available: () => false, take: () => 0 } },
  );
  const exit = m.runToHalt(opts.maxInsns ?? 50_000_000);
  return { exit, exitCode: m.cpu.exitCode, reason: m.cpu.exitReason, instret: m.cpu.instret(), output };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls until `cond()` holds; throws after `timeoutMs`. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 20_000, everyMs = 2): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Polls an async `probe` until it returns something other than undefined or false, and returns that. */
export async function eventually<T>(probe: () => Promise<T | undefined | false>, what: string, timeoutMs = 20_000, everyMs = 20): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Waits until the VM's published instret exceeds `n` (the worker needs ~100 ms to start). */
export function waitInstret(vm: Vm, n: number, timeoutMs = 20_000): Promise<void> {
  return waitFor(() => vm.instret() > n || vm.state === 'halted', `instret > ${n}`, timeoutMs, 1);
}

/** Collects a VM's console output as a string (latin1, one char per byte). */
export function collectConsole(vm: Vm): { text: () => string } {
  const chunks: Uint8Array[] = [];
  vm.on('console', (d: Uint8Array) => chunks.push(d));
  return { text: () => Buffer.concat(chunks).toString('latin1') };
}

/**
 * Tracks every VM a test creates so afterEach can destroy them all, whatever happened.
 * Usage: `const vms = vmTracker(); afterEach(() => vms.destroyAll());` then `vms.create(...)`.
 */
export function vmTracker() {
  const live: Vm[] = [];
  return {
    create(o: VmCreateOptions): Vm {
      const vm = Vm.create(o);
      live.push(vm);
      return vm;
    },
    track(vm: Vm): Vm {
      live.push(vm);
      return vm;
    },
    async destroyAll(): Promise<void> {
      const all = live.splice(0);
      await Promise.all(all.map((vm) => vm.destroy().catch(() => undefined)));
    },
  };
}

/**
 * Pauses `vm`, copies its RAM and page states into fresh memory, destroys it, and builds a new
 * VM from the exported state sent through JSON (a manual migration). The new VM is in 'created'.
 */
export async function migrateByHand(vm: Vm): Promise<Vm> {
  await vm.pause();
  const st = vm.exportState();
  const mem = GuestMemory.allocate(vm.memory.size);
  mem.ram.set(vm.memory.ram);
  mem.pageState.set(vm.memory.pageState);
  await vm.destroy();
  return Vm.importState(mem, JSON.parse(JSON.stringify(st)));
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `ferry ARGS...` (src/cli.ts through tsx) from the repo root; stdin ignored unless `input` is given. */
export function runCli(args: string[], timeoutMs = 30_000, input?: string): Promise<CliResult> {
  return runProcess(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], timeoutMs, input);
}

/** Spawns a process from the repo root or `o.cwd` (stdin ignored, or fed `input`); kills it after `timeoutMs`. */
export function runProcess(cmd: string, args: string[], timeoutMs = 30_000, input?: string, o: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: o.cwd ?? REPO_ROOT, ...(o.env ? { env: o.env } : {}), stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    if (input !== undefined) child.stdin!.end(input, 'latin1');
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('latin1'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/** Whether `cmd` is on PATH. */
export function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { stdio: 'ignore' }).status === 0;
}

export { restartablePort } from '../../src/testing/ports.ts';

