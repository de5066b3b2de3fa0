// Two machines on one box: two network namespaces, each with a host bound to its own addresses
// (not loopback), and a veth from this (root) namespace into each for the test's control
// connections. Without a profile the migration link is one veth pair, namespace to namespace:
//
//   root 10.78.<2n>.1 --- c 10.78.<2n>.2 [ns A] a 10.77.<n>.1 ==== b 10.77.<n>.2 [ns B] c 10.78.<2n+1>.2 --- root 10.78.<2n+1>.1
//
// With a link profile (LINK_PROFILES: lan, datacenter, wan) a third namespace, "wire", sits in the
// middle, joined to each host by a veth pair, and scripts/link-shaper.py bridges its two ends at
// layer 2 with the profile's rate, delay, loss and queue (this kernel has no sch_netem, so the
// emulation is in user space). Both link addresses stay on one /24, so the shaper is a transparent
// bridge; the wire namespace has no addresses and no IPv6, so every frame on it is the hosts':
//
//   [ns A] a 10.77.<n>.1 ==== wa [ns wire: link-shaper.py] wb ==== b 10.77.<n>.2 [ns B]
//
// Needs root and `ip` (and python3 for a profile); netnsUnavailable() says why not otherwise, so
// the tests can skip saying so. Every name carries this process's id and a per-process bed
// number, and teardown() stops the shaper and deletes everything it made.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControlClient } from '../../src/wire/control-client.ts';

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHAPER = join(REPO_ROOT, 'scripts', 'link-shaper.py');

export type LinkProfileName = 'lan' | 'datacenter' | 'wan';

/** What a link profile emulates, each way (the numbers issue 11 asks for). */
export interface LinkProfile {
  name: LinkProfileName;
  /** Serialization rate, bytes per second. */
  rate: number;
  /** One-way delay, milliseconds. */
  delayMs: number;
  /** The round-trip time the link adds (2 × delayMs), milliseconds. */
  rttMs: number;
  /** Probability that a frame is dropped. */
  loss: number;
  /** Tail-drop limit of the bytes waiting to be serialized (the link's buffer). */
  queueBytes: number;
  /** Hosts send frames of one TCP segment (gso_max_segs 1), so loss is per packet as on a real WAN. */
  oneSegmentFrames: boolean;
  summary: string;
}

/**
 * The profiles. Buffers: about 1 ms of traffic on the LAN and datacenter links (a switch port's
 * share of a shallow-buffered switch), one bandwidth-delay product on the WAN.
 */
export const LINK_PROFILES: Record<LinkProfileName, LinkProfile> = {
  lan: { name: 'lan', rate: 1.25e9, delayMs: 0.05, rttMs: 0.1, loss: 0, queueBytes: 1 << 20, oneSegmentFrames: false, summary: '10 Gbit/s, RTT 0.1 ms' },
  datacenter: { name: 'datacenter', rate: 125e6, delayMs: 0.25, rttMs: 0.5, loss: 0, queueBytes: 128 << 10, oneSegmentFrames: false, summary: '1 Gbit/s, RTT 0.5 ms' },
  wan: { name: 'wan', rate: 12.5e6, delayMs: 10, rttMs: 20, loss: 0.001, queueBytes: 256 << 10, oneSegmentFrames: true, summary: '100 Mbit/s, RTT 20 ms, 0.1 % loss' },
};

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

/** One direction's counters from the shaper. */
export interface ShaperDirection {
  frames: number;
  /** Ethernet bytes forwarded, and what they cost on the link (a GSO super-packet as its segments). */
  bytes: number;
  wire_bytes: number;
  /** Dropped by the emulated loss, by the full queue, by a send that failed (the far end down), by the kernel (socket buffer full). */
  lost: number;
  queue_drops: number;
  send_errors: number;
  kernel_drops: number;
}

export interface ShaperCounters {
  a_to_b: ShaperDirection;
  b_to_a: ShaperDirection;
}

export interface Shaper {
  pid: number;
  /** The counters so far (SIGUSR1; it also flushes the pcap). */
  counters(): Promise<ShaperCounters>;
  /** The shaper's stderr so far. */
  stderr(): string;
}

export interface Testbed {
  a: NetnsHost;
  b: NetnsHost;
  /** The migration link's interface in each host's namespace. */
  linkDev: { a: string; b: string };
  /** With a profile: what it emulates, the namespace in the middle, the shaper, and the capture file. */
  profile?: LinkProfile;
  wireNs?: string;
  shaper?: Shaper;
  pcap?: string;
  /** Stops the shaper (its last counters are returned) and deletes every namespace and link made. */
  teardown(): Promise<ShaperCounters | undefined>;
}

export interface TestbedOptions {
  profile?: LinkProfileName;
  /** With a profile: write every frame crossing the link to this pcap file. */
  pcap?: string;
  /** Seed of the shaper's loss decisions. */
  seed?: number;
  /** Called with counters the shaper reports unasked (someone sent it SIGUSR1). */
  onCounters?: (c: ShaperCounters) => void;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function errText(e: unknown): string {
  return String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim();
}

let python: string | undefined;

/** Why this machine cannot make the test bed (with `shaper`: one with a link profile), or undefined if it can. */
export function netnsUnavailable(o: { shaper?: boolean } = {}): string | undefined {
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
    return `cannot create a network namespace: ${errText(e)}`;
  }
  if (o.shaper) {
    try {
      // The interpreter itself (not a version manager's shim), and the AF_PACKET sockets the shaper needs.
      python = execFileSync('python3', ['-c', 'import socket, sys; socket.AF_PACKET; print(sys.executable)'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    } catch {
      return 'python3 is not installed (or has no AF_PACKET sockets): the link shaper, scripts/link-shaper.py, needs it';
    }
  }
  return undefined;
}

let beds = 0;

/** The first n (1..100) from `start` whose control subnets 10.78.<2n>/24 and 10.78.<2n+1>/24 are unused here. */
function freeSubnet(start: number): number {
  const used = execFileSync('ip', ['-4', '-o', 'addr', 'show']).toString();
  for (let i = 0; i < 100; i++) {
    const n = ((start + i - 1) % 100) + 1;
    if (!used.includes(` 10.78.${2 * n}.`) && !used.includes(` 10.78.${2 * n + 1}.`)) return n;
  }
  throw new Error('test bed: no free 10.78.x.0/24 control subnet');
}

/**
 * Creates the namespaces and their links and, with a profile, starts the shaper between them.
 * Beds of one process are numbered (names and subnets stay apart); so are those of concurrent
 * processes, by process id.
 */
export async function createTestbed(o: TestbedOptions = {}): Promise<Testbed> {
  const idx = beds++;
  const tag = `${process.pid}-${idx}`;
  const nsA = `ferry-a-${tag}`;
  const nsB = `ferry-b-${tag}`;
  const nsW = `ferry-wire-${tag}`;
  const short = `${process.pid}`.slice(-6) + (idx % 36).toString(36);
  const dev = (s: string) => `fy${short}${s}`; // interface names: at most 15 characters
  const profile = o.profile === undefined ? undefined : LINK_PROFILES[o.profile];
  if (profile && python === undefined) {
    const why = netnsUnavailable({ shaper: true });
    if (why) throw new Error(`test bed: ${why}`);
  }
  const made: (() => void)[] = [];
  const undo = () => {
    for (const u of made.splice(0).reverse()) {
      try { u(); } catch { /* already gone */ }
    }
  };
  /** A veth pair, one end in each namespace (undefined: this one), deleted at teardown. */
  const veth = (name: string, ns: string | undefined, peer: string, peerNs: string | undefined) => {
    ip('link', 'add', name, 'type', 'veth', 'peer', 'name', peer);
    made.push(() => (ns ? ip('-n', ns, 'link', 'del', name) : ip('link', 'del', name)));
    if (ns) ip('link', 'set', name, 'netns', ns);
    if (peerNs) ip('link', 'set', peer, 'netns', peerNs);
  };
  const n = freeSubnet(((process.pid + idx) % 100) + 1);
  let shaper: (Shaper & { stop(): Promise<ShaperCounters | undefined> }) | undefined;
  try {
    for (const ns of profile ? [nsA, nsB, nsW] : [nsA, nsB]) {
      ip('netns', 'add', ns);
      made.push(() => ip('netns', 'del', ns));
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    if (profile) {
      // Nothing of the wire namespace's own on the link: no IPv6 (router solicitations, MLD), no addresses.
      execFileSync('ip', ['netns', 'exec', nsW, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'], { stdio: 'ignore' });
      veth(dev('a'), nsA, dev('wa'), nsW);
      veth(dev('b'), nsB, dev('wb'), nsW);
      for (const d of [dev('wa'), dev('wb')]) {
        ip('-n', nsW, 'link', 'set', d, 'promisc', 'on');
        ip('-n', nsW, 'link', 'set', d, 'up');
      }
      if (profile.oneSegmentFrames) {
        ip('-n', nsA, 'link', 'set', 'dev', dev('a'), 'gso_max_segs', '1');
        ip('-n', nsB, 'link', 'set', 'dev', dev('b'), 'gso_max_segs', '1');
      }
    } else {
      veth(dev('a'), nsA, dev('b'), nsB);
    }
    ip('-n', nsA, 'addr', 'add', `10.77.${n}.1/24`, 'dev', dev('a'));
    ip('-n', nsB, 'addr', 'add', `10.77.${n}.2/24`, 'dev', dev('b'));
    ip('-n', nsA, 'link', 'set', dev('a'), 'up');
    ip('-n', nsB, 'link', 'set', dev('b'), 'up');
    // A control link from this namespace into each.
    const control = (ns: string, side: string, subnet: number) => {
      veth(dev(`r${side}`), undefined, dev(`c${side}`), ns);
      ip('addr', 'add', `10.78.${subnet}.1/24`, 'dev', dev(`r${side}`));
      ip('-n', ns, 'addr', 'add', `10.78.${subnet}.2/24`, 'dev', dev(`c${side}`));
      ip('link', 'set', dev(`r${side}`), 'up');
      ip('-n', ns, 'link', 'set', dev(`c${side}`), 'up');
    };
    control(nsA, 'a', 2 * n);
    control(nsB, 'b', 2 * n + 1);
    if (profile) {
      shaper = await startShaper(nsW, [
        '--a', dev('wa'), '--b', dev('wb'), '--rate', String(profile.rate), '--delay-ms', String(profile.delayMs),
        '--loss', String(profile.loss), '--queue-bytes', String(profile.queueBytes),
        ...(o.pcap !== undefined ? ['--pcap', o.pcap] : []), ...(o.seed !== undefined ? ['--seed', String(o.seed)] : []),
      ], o.onCounters);
    }
  } catch (e) {
    undo();
    throw new Error(`test bed: ${errText(e)}`);
  }
  let last: Promise<ShaperCounters | undefined> | undefined;
  return {
    a: { name: 'a', ns: nsA, linkAddr: `10.77.${n}.1`, controlAddr: `10.78.${2 * n}.2`, stderr: '' },
    b: { name: 'b', ns: nsB, linkAddr: `10.77.${n}.2`, controlAddr: `10.78.${2 * n + 1}.2`, stderr: '' },
    linkDev: { a: dev('a'), b: dev('b') },
    ...(profile ? { profile, wireNs: nsW } : {}),
    ...(shaper ? { shaper } : {}),
    ...(profile && o.pcap !== undefined ? { pcap: o.pcap } : {}),
    teardown: () => {
      last ??= (async () => {
        const counters = await shaper?.stop();
        undo();
        return counters;
      })();
      return last;
    },
  };
}

/** Starts scripts/link-shaper.py in `ns`; resolves once both its sockets are bound. */
function startShaper(ns: string, args: string[], onCounters?: (c: ShaperCounters) => void): Promise<Shaper & { stop(): Promise<ShaperCounters | undefined> }> {
  // A link is not slowed by its hosts' CPU: the shaper runs ahead of the rest of the machine (nice -10).
  const proc = spawn('nice', ['-n', '-10', 'ip', 'netns', 'exec', ns, python!, SHAPER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let out = '';
  let ready: ((pid: number) => void) | undefined;
  const waiting: ((c: ShaperCounters) => void)[] = [];
  let final: ShaperCounters | undefined;
  proc.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      const m = JSON.parse(line) as { ready?: boolean; pid?: number; event?: string } & ShaperCounters;
      if (m.ready) ready?.(m.pid!);
      else if (m.event === 'final') final = m;
      else if (m.event === 'counters') (waiting.shift() ?? onCounters)?.(m);
    }
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`link shaper did not start within 10 s: ${stderr.slice(-500)}`)), 10_000);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`link shaper exited ${proc.exitCode}: ${stderr.slice(-500)}`));
    });
    ready = (pid) => {
      clearTimeout(timer);
      resolve({
        pid,
        stderr: () => stderr,
        counters: () => new Promise<ShaperCounters>((res, rej) => {
          if (proc.exitCode !== null) return rej(new Error('the link shaper is not running'));
          waiting.push(res);
          proc.kill('SIGUSR1');
        }),
        stop: async () => {
          if (proc.exitCode === null && proc.signalCode === null) {
            proc.kill('SIGTERM');
            const t = setTimeout(() => proc.kill('SIGKILL'), 3_000);
            await exited;
            clearTimeout(t);
          }
          return final;
        },
      });
    };
  });
}

export interface LinkMeasurement {
  /** A TCP transfer from A to B: goodput, and how long it took. */
  bytesPerSecond: number;
  seconds: number;
  /** Round trips of 32 bytes over TCP (Nagle off), A to B and back. */
  rttMs: { p50: number; p90: number; min: number };
}

/** Inside `ns`: this repository's test/support/link-probe.ts with `args`; resolves with its first line of output. */
function probeIn(ns: string, args: string[]): { proc: ChildProcess; line: Promise<string> } {
  // The measuring instrument, like the shaper, runs ahead of the rest of the machine.
  const proc = spawn('nice', ['-n', '-10', 'ip', 'netns', 'exec', ns, process.execPath, '--import', 'tsx', join(REPO_ROOT, 'test', 'support', 'link-probe.ts'), ...args], {
    cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const line = new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    proc.on('exit', (code) => reject(new Error(`link probe in ${ns} exited ${code}: ${err.slice(-300)}`)));
  });
  return { proc, line };
}

/** What the migration link does: a TCP transfer of `bytes` from A to B, then `echoes` small round trips. */
export async function measureLink(bed: Testbed, o: { bytes: number; echoes: number; port?: number }): Promise<LinkMeasurement> {
  const port = String(o.port ?? 5201);
  const server = probeIn(bed.b.ns, ['serve', port]);
  try {
    await server.line;
    return JSON.parse(await probeIn(bed.a.ns, ['probe', bed.b.linkAddr, port, String(o.bytes), String(o.echoes)]).line) as LinkMeasurement;
  } finally {
    server.proc.kill();
  }
}

/** Takes the migration link down in `ns` (a cable pulled), or brings it back up. */
export function setLink(ns: string, devName: string, up: boolean): void {
  ip('-n', ns, 'link', 'set', devName, up ? 'up' : 'down');
}

/** Starts `ferry host start ARGS` inside the host's namespace (with `env` added); resolves once it listens. */
export function startHostIn(h: NetnsHost, args: string[], timeoutMs = 30_000, env: Record<string, string> = {}): Promise<void> {
  const proc = spawn('ip', ['netns', 'exec', h.ns, process.execPath, '--import', 'tsx', 'src/cli.ts', 'host', 'start', '--name', h.name, ...args], {
    cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env },
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
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(t);
}

/** Why scripts/make-certs.sh cannot run here (no openssl), or undefined if it can. */
export function opensslMissing(): string | undefined {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'openssl is not installed (scripts/make-certs.sh needs it)';
  }
}

export interface TlsHosts {
  /** The operator's control clients of host A and host B. */
  ca: ControlClient;
  cb: ControlClient;
  /** Where A migrates to: B's address on the link. */
  to: string;
}

/**
 * Certificates made in `dir` by scripts/make-certs.sh (a, b with their addresses, and an
 * operator), then `ferry host start` in each namespace over mutual TLS on `port`, B admitting
 * only A as a source (--tls-allow a); resolves with the operator's clients of both.
 */
export async function startTlsHosts(bed: Testbed, dir: string, port: number, client: string): Promise<TlsHosts> {
  const { a, b } = bed;
  execFileSync(join(REPO_ROOT, 'scripts', 'make-certs.sh'), [dir, `a=${a.linkAddr},${a.controlAddr}`, `b=${b.linkAddr},${b.controlAddr}`, 'operator=127.0.0.1'], { stdio: 'ignore' });
  const tlsArgs = (n: string) => ['--tls-cert', join(dir, `${n}.pem`), '--tls-key', join(dir, `${n}-key.pem`), '--tls-ca', join(dir, 'ca.pem')];
  await Promise.all([
    startHostIn(a, ['--listen', `0.0.0.0:${port}`, ...tlsArgs('a'), '--advertise', `wss://${a.linkAddr}:${port}`]),
    startHostIn(b, ['--listen', `0.0.0.0:${port}`, ...tlsArgs('b'), '--advertise', `wss://${b.linkAddr}:${port}`, '--tls-allow', 'a']),
  ]);
  const operator = { ca: readFileSync(join(dir, 'ca.pem')), cert: readFileSync(join(dir, 'operator.pem')), key: readFileSync(join(dir, 'operator-key.pem')) };
  const ca = await ControlClient.connect(`wss://${a.controlAddr}:${port}`, { client, tls: operator });
  const cb = await ControlClient.connect(`wss://${b.controlAddr}:${port}`, { client, tls: operator }).catch(async (e: unknown) => {
    await ca.close();
    throw e;
  });
  return { ca, cb, to: `wss://${b.linkAddr}:${port}` };
}
