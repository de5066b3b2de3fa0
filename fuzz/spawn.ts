/**
 * Spawns `ferry host start` as a child process (`node --import tsx src/cli.ts ...` from the
 * repo root), keeps the tail of its stderr, and makes sure no host outlives the fuzzer.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface HostProcess {
  name: string;
  url: string;
  port: number;
  pid: number;
  /** The last `n` lines of its stderr. */
  stderrTail(n?: number): string;
  /** Resolves once it has exited (code, or the signal's name). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  running(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnHostOptions {
  name: string;
  token?: string;
  maxMemory?: string;
  logLevel?: string;
  startTimeoutMs?: number;
  extraArgs?: string[];
  /** The checkout whose `src/cli.ts` to run (default: the one this file is in). */
  root?: string;
}

const live = new Set<ChildProcess>();
let exitHook = false;

/** Kills every host still running when this process exits (the last resort after a crash of ours). */
function installExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const p of live) {
      try {
        p.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

const LISTENING = /^ferry host (\S+) listening on (ws:\/\/[^\s]+)\n/;
const MAX_LINES = 2000;

export async function spawnHost(o: SpawnHostOptions): Promise<HostProcess> {
  installExitHook();
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FERRY_')) env[k] = v;
  env.FERRY_LOG_LEVEL = o.logLevel ?? 'warn';
  if (o.token !== undefined) env.FERRY_TOKEN = o.token;
  const args = [
    '--import', 'tsx', 'src/cli.ts', 'host', 'start', '--listen', '127.0.0.1:0', '--name', o.name,
    ...(o.maxMemory !== undefined ? ['--max-memory', o.maxMemory] : []), ...(o.extraArgs ?? []),
  ];
  const proc = spawn(process.execPath, args, { cwd: o.root ?? REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let stdout = '';
  const lines: string[] = [];
  let partial = '';
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (d: string) => { if (stdout.length < 65_536) stdout += d; });
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => {
    const parts = (partial + d).split('\n');
    partial = parts.pop() ?? '';
    for (const l of parts) lines.push(l.length > 4000 ? `${l.slice(0, 4000)}…(${l.length} chars)` : l);
    if (lines.length > MAX_LINES) lines.splice(0, lines.length - MAX_LINES);
    if (partial.length > 65_536) {
      lines.push(`${partial.slice(0, 4000)}…(${partial.length} chars)`);
      partial = '';
    }
  });
  let isRunning = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('close', (code, signal) => {
      isRunning = false;
      live.delete(proc);
      resolve({ code, signal });
    });
    proc.once('error', () => {
      isRunning = false;
      live.delete(proc);
      resolve({ code: null, signal: null });
    });
  });
  const stop = async (graceMs = 5000): Promise<void> => {
    if (!isRunning) return;
    proc.kill('SIGTERM');
    const t = setTimeout(() => { if (isRunning) proc.kill('SIGKILL'); }, graceMs);
    await exited;
    clearTimeout(t);
  };
  const stderrTail = (n = 40): string => [...lines, ...(partial ? [partial] : [])].slice(-n).join('\n');

  const deadline = Date.now() + (o.startTimeoutMs ?? 30_000);
  while (!stdout.includes('\n')) {
    if (!isRunning || Date.now() > deadline) {
      await stop(1000);
      throw new Error(`host ${o.name} did not start (stdout ${JSON.stringify(stdout)}): ${stderrTail(20)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const m = LISTENING.exec(stdout);
  if (!m) {
    await stop(1000);
    throw new Error(`host ${o.name} printed an unexpected first line: ${JSON.stringify(stdout)}`);
  }
  const url = m[2]!;
  return {
    name: o.name, url, port: Number(new URL(url).port), pid: proc.pid!, stderrTail, exited, stop,
    running: () => isRunning,
  };
}
