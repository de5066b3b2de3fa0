import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FerryError } from '../errors.ts';
import { ControlClient, type ConnectOptions } from '../wire/control-client.ts';

// Run from the TypeScript sources (tests, bench, the repo's demo) the child loads them through tsx;
// installed, the compiled cli.js beside this module runs as it is.
const COMPILED = !import.meta.url.endsWith('.ts');
const CLI = fileURLToPath(new URL(COMPILED ? '../cli.js' : '../cli.ts', import.meta.url));
const LOADER = COMPILED ? [] : ['--import', 'tsx'];
/** A host that has not said where it listens by then never will (a loaded 2-core machine starts one in 1-3 s). */
const LISTEN_DEADLINE_MS = 30_000;

export interface HostProcess {
  name: string;
  url: string;
  proc: ChildProcess;
  client: ControlClient;
  /** SIGTERM, then wait for the process to exit. */
  stop(): Promise<void>;
}

/** Runs `ferry host start` as a child process on a free loopback port, connected and ready. */
export async function startHostProcess(name: string, extraArgs: string[] = [], connect: ConnectOptions = {}, env: Record<string, string> = {}): Promise<HostProcess> {
  const proc = spawn(process.execPath, [...LOADER, CLI, 'host', 'start', '--listen', '127.0.0.1:0', '--name', name, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, FERRY_LOG_LEVEL: process.env.FERRY_LOG_LEVEL ?? 'warn', ...env },
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new FerryError('ETIMEDOUT', `host ${name} did not listen within ${LISTEN_DEADLINE_MS} ms`));
    }, LISTEN_DEADLINE_MS);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (wss?:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new FerryError('EHOST', `host ${name} exited (${code}) before listening`));
    });
  });
  const client = await ControlClient.connect(url, { client: 'ferry-tool', ...connect });
  return {
    name, url, proc, client,
    async stop() {
      await client.close().catch(() => undefined);
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}
