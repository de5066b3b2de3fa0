// Two machines on one box: two network namespaces, each with a host bound to its own addresses
// (not loopback), joined by a veth pair that carries the migration (optionally shaped with tc),
// and a veth from this (root) namespace into each for the test's control connections:
//
//   root 10.78.<n>.1 --- c0 10.78.<n>.2 [ns A] a0 10.77.<n>.1 ==== b0 10.77.<n>.2 [ns B] c0 10.78.<n+1>.2 --- root 10.78.<n+1>.1
//
// Needs root and `ip`; bed() says why not otherwise, so the tests can skip saying so. Every name
// carries this process's id, and teardown() deletes everything it made.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { REPO_ROOT } from './helpers.ts';

export interface NetnsHost {
  name: 'a' | 'b';
  ns: string;
  /** Where the other host reaches it (the migration link). */
  linkAddr: string;
  /** Where this test process reaches it. */
  controlAddr: string;
  proc?: ChildProcess;
  stderr: string;
}

export interface Testbed {
  a: NetnsHost;
  b: NetnsHost;
  /** The migration link's interface in each namespace. */
  linkDev: { a: string; b: string };
  teardown(): void;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Why this machine cannot make the test bed, or undefined if it can. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: network namespaces need root';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'no `ip` command (iproute2)';
  }
  const probe = `ferry-probe-${process.pid}`;
  try {
    ip('netns', 'add', probe);
    ip('netns', 'del', probe);
  } catch (e) {
    return `cannot create a network namespace: ${String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim()}`;
  }
  return undefined;
}

/** Creates the two namespaces and their links; `n` (1..100) keeps concurrent beds apart. */
export function createTestbed(n = (process.pid % 100) + 1): Testbed {
  const tag = `${process.pid}`;
  const nsA = `ferry-a-${tag}`;
  const nsB = `ferry-b-${tag}`;
  const dev = (s: string) => `fy${tag.slice(-6)}${s}`; // interface names: at most 15 characters
  const made: (() => void)[] = [];
  const teardown = () => {
    for (const undo of made.splice(0).reverse()) {
      try { undo(); } catch { /* already gone */ }
    }
  };
  try {
    for (const ns of [nsA, nsB]) {
      ip('netns', 'add', ns);
      made.push(() => ip('netns', 'del', ns));
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    // The migration link, namespace to namespace.
    ip('link', 'add', dev('a'), 'type', 'veth', 'peer', 'name', dev('b'));
    made.push(() => ip('link', 'del', dev('a')));
    ip('link', 'set', dev('a'), 'netns', nsA);
    ip('link', 'set', dev('b'), 'netns', nsB);
    ip('-n', nsA, 'addr', 'add', `10.77.${n}.1/24`, 'dev', dev('a'));
    ip('-n', nsB, 'addr', 'add', `10.77.${n}.2/24`, 'dev', dev('b'));
    ip('-n', nsA, 'link', 'set', dev('a'), 'up');
    ip('-n', nsB, 'link', 'set', dev('b'), 'up');
    // A control link from this namespace into each.
    const control = (ns: string, side: string, subnet: number) => {
      ip('link', 'add', dev(`r${side}`), 'type', 'veth', 'peer', 'name', dev(`c${side}`));
      made.push(() => ip('link', 'del', dev(`r${side}`)));
      ip('link', 'set', dev(`c${side}`), 'netns', ns);
      ip('addr', 'add', `10.78.${subnet}.1/24`, 'dev', dev(`r${side}`));
      ip('-n', ns, 'addr', 'add', `10.78.${subnet}.2/24`, 'dev', dev(`c${side}`));
      ip('link', 'set', dev(`r${side}`), 'up');
      ip('-n', ns, 'link', 'set', dev(`c${side}`), 'up');
    };
    control(nsA, 'a', 2 * n);
    control(nsB, 'b', 2 * n + 1);
  } catch (e) {
    teardown();
    throw new Error(`test bed: ${String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim()}`);
  }
  return {
    a: { name: 'a', ns: nsA, linkAddr: `10.77.${n}.1`, controlAddr: `10.78.${2 * n}.2`, stderr: '' },
    b: { name: 'b', ns: nsB, linkAddr: `10.77.${n}.2`, controlAddr: `10.78.${2 * n + 1}.2`, stderr: '' },
    linkDev: { a: dev('a'), b: dev('b') },
    teardown,
  };
}

/** Takes the migration link down in `ns` (a cable pulled), or brings it back up. */
export function setLink(ns: string, devName: string, up: boolean): void {
  ip('-n', ns, 'link', 'set', devName, up ? 'up' : 'down');
}

/** Starts `ferry host start ARGS` inside the host's namespace; resolves once it listens. */
export function startHostIn(h: NetnsHost, args: string[], timeoutMs = 30_000): Promise<void> {
  const proc = spawn('ip', ['netns', 'exec', h.ns, process.execPath, '--import', 'tsx', 'src/cli.ts', 'host', 'start', '--name', h.name, ...args], {
    cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'],
  });
  h.proc = proc;
  proc.stderr!.on('data', (d: Buffer) => { h.stderr += d.toString(); });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`host ${h.name} did not listen within ${timeoutMs} ms: ${h.stderr.slice(-500)}`)), timeoutMs);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`host ${h.name} exited ${code}: ${h.stderr.slice(-500)}`));
    });
  });
}

/** Stops a host started with startHostIn (SIGTERM, then SIGKILL). */
export async function stopHostIn(h: NetnsHost): Promise<void> {
  const p = h.proc;
  if (!p || p.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(t);
}
