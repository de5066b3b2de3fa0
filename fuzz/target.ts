/**
 * The target fixture: host B (under fuzz) running a few VMs, with a post-copy migration from
 * host A in flight into it (the background push held back by pushDelayMs, so the guest keeps
 * running on B with part of its memory still on A).
 */
import { randomBytes } from 'node:crypto';
import { LegitClient } from './conn.ts';
import { spawnHost, type HostProcess } from './spawn.ts';

export interface FixtureOptions {
  /** Run both hosts with a cluster token. */
  token: boolean;
  /** FERRY_LOG_LEVEL of the hosts (default warn). */
  logLevel?: string;
  /** --max-memory of host B (bounds what fuzzed setups and vm.create may reserve). */
  maxMemoryB?: string;
  /** How long the post-copy's background push is held back (default 1 h: it stays in flight). */
  pushDelayMs?: number;
  /** A distinguishing tag for host names (several fixtures may run at once). */
  tag?: string;
  /** The checkout to run the hosts from (default: this one). */
  root?: string;
  log?: (line: string) => void;
}

export interface FixtureVm {
  name: string;
  params: Record<string, unknown>;
}

/** VMs created directly on B. Small RAM, rate-limited memstress: little CPU next to the fuzzer. */
export const FIXTURE_VMS: readonly FixtureVm[] = [
  { name: 'fx-counter-1', params: { program: 'counter', memory: 16 * 1024 * 1024, args: ['period_ms=100'], start: true } },
  { name: 'fx-counter-2', params: { program: 'counter', memory: 16 * 1024 * 1024, args: ['period_ms=250'], start: true } },
  { name: 'fx-memstress', params: { program: 'memstress', memory: 32 * 1024 * 1024, args: ['ws_mib=8', 'rate_mib_s=16'], start: true } },
];

/** The VM migrated A -> B in post-copy; its working set is written on A before it leaves. */
export const POSTCOPY_VM: FixtureVm = {
  name: 'fx-postcopy',
  params: { program: 'memstress', memory: 64 * 1024 * 1024, args: ['ws_mib=32', 'rate_mib_s=32'], start: true },
};

export interface Fixture {
  token: string | undefined;
  a: HostProcess;
  b: HostProcess;
  /** Host B's ws://127.0.0.1:PORT. */
  url: string;
  host: string;
  port: number;
  /** Names of every VM B must keep running (the post-copy one included). */
  vms: string[];
  postcopyVm: string;
  /** Stops both hosts (SIGTERM, then SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<void>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function startFixture(o: FixtureOptions): Promise<Fixture> {
  const log = o.log ?? (() => {});
  const t0 = Date.now();
  const token = o.token ? `fuzz-token-${randomBytes(12).toString('hex')}` : undefined;
  const tag = o.tag ?? randomBytes(3).toString('hex');
  const common = { logLevel: o.logLevel ?? 'warn', ...(token !== undefined ? { token } : {}), ...(o.root !== undefined ? { root: o.root } : {}) };
  const started = await Promise.allSettled([
    spawnHost({ name: `fuzz-a-${tag}`, ...common }),
    spawnHost({ name: `fuzz-b-${tag}`, ...common, maxMemory: o.maxMemoryB ?? '512M' }),
  ]);
  const hosts = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const stop = async (graceMs = 5000) => { await Promise.all(hosts.map((h) => h.stop(graceMs))); };
  if (hosts.length !== 2) {
    await stop();
    const why = started.flatMap((r) => (r.status === 'rejected' ? [String((r.reason as Error).message ?? r.reason)] : []));
    throw new Error(`fixture hosts did not start: ${why.join('; ')}`);
  }
  const [a, b] = hosts as [HostProcess, HostProcess];
  let ca: LegitClient | undefined;
  let cb: LegitClient | undefined;
  try {
    ca = await LegitClient.connect(a.url, token, 10_000);
    cb = await LegitClient.connect(b.url, token, 10_000);
    for (const v of FIXTURE_VMS) await cb.request('vm.create', { name: v.name, ...v.params }, 10_000);
    await ca.request('vm.create', { name: POSTCOPY_VM.name, ...POSTCOPY_VM.params }, 10_000);
    // Let the guest boot and write its working set on A, so post-copy has pages to fetch on
    // demand, and pages B's guest never touches again (its zeroed stack): the post-copy stays
    // in flight until the push, held back by pushDelayMs.
    const booted = Date.now() + 20_000;
    while ((await ca.request<{ instret: number }>('vm.info', { name: POSTCOPY_VM.name }, 5000)).instret === 0) {
      if (Date.now() > booted) throw new Error(`${POSTCOPY_VM.name} did not boot on host A within 20 s`);
      await sleep(50);
    }
    await sleep(1500);
    await ca.request('migrate.start', {
      name: POSTCOPY_VM.name, to: b.url, mode: 'postcopy', pushDelayMs: o.pushDelayMs ?? 3_600_000,
    }, 10_000);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const s = await cb.request<Record<string, unknown>>('migrate.status', { name: POSTCOPY_VM.name }, 5000).catch(() => undefined);
      if (s?.status === 'postcopy-active') {
        // Still in flight a moment later (not completed by demand faults alone).
        await sleep(1000);
        const again = await cb.request<Record<string, unknown>>('migrate.status', { name: POSTCOPY_VM.name }, 5000);
        if (again.status !== 'postcopy-active') throw new Error(`fixture post-copy did not stay in flight: ${String(again.status)} ${String(again['error-desc'] ?? '')}`);
        break;
      }
      if (s?.status === 'failed' || s?.status === 'cancelled' || s?.status === 'completed') {
        throw new Error(`fixture post-copy ended as ${String(s.status)}: ${String(s['error-desc'] ?? '')}`);
      }
      if (Date.now() > deadline) throw new Error(`fixture post-copy not postcopy-active within 30 s (last: ${JSON.stringify(s)})`);
      await sleep(50);
    }
    log(`fixture up in ${Date.now() - t0} ms: A ${a.url} (pid ${a.pid}), B ${b.url} (pid ${b.pid})${token ? ', with a token' : ''}`);
  } catch (e) {
    ca?.close();
    cb?.close();
    const tails = `\n--- host A stderr ---\n${a.stderrTail(20)}\n--- host B stderr ---\n${b.stderrTail(20)}`;
    await stop();
    throw new Error(`fixture setup failed: ${(e as Error).message}${tails}`);
  }
  ca.close();
  cb.close();
  const u = new URL(b.url);
  return {
    token, a, b, url: b.url, host: u.hostname, port: Number(u.port),
    vms: [...FIXTURE_VMS.map((v) => v.name), POSTCOPY_VM.name], postcopyVm: POSTCOPY_VM.name,
    stop,
  };
}
