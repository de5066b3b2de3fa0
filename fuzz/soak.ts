/**
 * Aborted incoming migrations, by the thousand, against one host process: each opens a
 * migration, brings it to a phase, and then breaks it there (the link cut, or a garbage state
 * section). A host that leaks per abort (RAM, a vCPU thread, descriptors) shows it as growth of
 * its resident memory and open descriptors, sampled from /proc as the aborts go on.
 *
 *   setup     hello and setup (the host reserves the VM and starts its vCPU thread), then cut
 *   frames    setup and 1,024 pages of frames (4 MiB written into the new VM's RAM), then cut
 *   state     setup, frames, then a state section whose UART is garbage (refused with EPROTO)
 *   advised   a post-copy setup and an advice (every page missing), then cut
 */
import { FuzzConn } from './conn.ts';
import { procStats } from './oracle.ts';
import { spawnHost } from './spawn.ts';
import { MiB, nonce, pageFrame, validSetup, validState, versionFrom, type SetupShape } from './wire.ts';

export const ABORT_KINDS = ['setup', 'frames', 'state', 'advised'] as const;
export type AbortKind = (typeof ABORT_KINDS)[number];

export interface SoakOptions {
  aborts: number;
  /** Guest RAM of each aborted VM, in MiB (default 16). */
  ramMiB?: number;
  kinds?: readonly AbortKind[];
  /** Host processes from another checkout (default: this one). */
  root?: string;
  /** A sample every this many aborts (default aborts / 20). */
  sampleEvery?: number;
  log?: (line: string) => void;
}

export interface SoakSample {
  aborts: number;
  rssMiB: number;
  fds: number;
}

export interface SoakReport {
  aborts: number;
  kinds: Record<AbortKind, number>;
  ms: number;
  abortsPerSecond: number;
  /** Right after the host started, before any abort. */
  baseline: SoakSample;
  /** After the first tenth of the aborts: the host's working size (heap, allocator arenas, spare thread). */
  warm: SoakSample;
  /** After the last abort and a settle of 3 s. */
  end: SoakSample;
  peak: { rssMiB: number; fds: number };
  samples: SoakSample[];
  /** end - warm (RSS) and end - baseline (descriptors). */
  rssGrowthMiB: number;
  fdGrowth: number;
  /** Aborts whose host did not answer as expected (a setup refused, no failed for a bad state). */
  unexpected: string[];
}

const STEP_MS = 10_000;

/** One aborted migration of `kind` against the host at `url`. Returns what went unexpectedly, if anything. */
async function abortOne(url: string, kind: AbortKind, i: number, ramMiB: number): Promise<string | undefined> {
  const conn = await FuzzConn.open(`${url}/migrate`, { timeoutMs: STEP_MS });
  try {
    const hello = await conn.nextMsg(STEP_MS, 'hello');
    if (!hello) return `abort ${i}: no hello`;
    const id = `soak-${i}-${Date.now().toString(36)}`;
    conn.sendMsg({ t: 'hello', v: versionFrom(hello, '/migrate'), nonce: nonce(), role: 'bulk', id });
    if (!(await conn.nextMsg(STEP_MS, 'ready'))) return `abort ${i}: no ready`;
    const setup: SetupShape = validSetup(`soak-${i}`, kind === 'advised' ? 'postcopy' : 'precopy', ramMiB);
    conn.sendMsg(setup);
    const ok = await conn.nextMsg(STEP_MS, 'setup-ok', 'refused');
    if (ok?.t !== 'setup-ok') return `abort ${i} (${kind}): setup answered ${JSON.stringify(ok?.t ?? 'nothing')}`;
    if (kind === 'frames' || kind === 'state') {
      const data = new Uint8Array(4096).fill(i & 0xff || 1);
      for (let f = 0; f < 16; f++) conn.send(pageFrame(Array.from({ length: 64 }, (_, k) => ({ page: f * 64 + k, data }))));
    }
    if (kind === 'state') {
      const st = validState(setup);
      (st.state as { devices: Record<string, unknown> }).devices.uart = 'garbage';
      conn.sendMsg(st);
      const failed = await conn.nextMsg(STEP_MS, 'failed', 'completed');
      if (failed?.t !== 'failed') return `abort ${i} (state): a garbage state answered ${JSON.stringify(failed?.t ?? 'nothing')}`;
    }
    if (kind === 'advised') {
      const pages = (ramMiB * MiB) / 4096;
      conn.sendMsg({ t: 'postcopy-advise', advice: { missing: new Uint8Array(pages / 8).fill(0xff), missingCount: pages } });
      if (!(await conn.nextMsg(STEP_MS, 'advise-ok'))) return `abort ${i} (advised): no advise-ok`;
    }
    return undefined;
  } finally {
    conn.terminate();
    await conn.waitClosed(STEP_MS);
  }
}

function sample(pid: number, aborts: number): SoakSample {
  const s = procStats(pid);
  if (!s) throw new Error(`the host (pid ${pid}) is gone after ${aborts} aborts`);
  return { aborts, rssMiB: Math.round(s.rssKiB / 1024), fds: s.fds };
}

/** Runs the soak against a fresh host process, which it stops at the end. */
export async function runAbortSoak(o: SoakOptions): Promise<SoakReport> {
  const kinds = o.kinds ?? ABORT_KINDS;
  const ramMiB = o.ramMiB ?? 16;
  const every = o.sampleEvery ?? Math.max(1, Math.floor(o.aborts / 20));
  const host = await spawnHost({ name: `soak-${process.pid}`, logLevel: 'error', maxMemory: '1G', ...(o.root ? { root: o.root } : {}) });
  try {
    await new Promise((r) => setTimeout(r, 500)); // the spare vCPU thread is up
    const baseline = sample(host.pid, 0);
    const samples: SoakSample[] = [baseline];
    const count = Object.fromEntries(kinds.map((k) => [k, 0])) as Record<AbortKind, number>;
    const unexpected: string[] = [];
    let warm = baseline;
    const warmAt = Math.max(1, Math.floor(o.aborts / 10));
    const t0 = performance.now();
    for (let i = 1; i <= o.aborts; i++) {
      const kind = kinds[i % kinds.length]!;
      count[kind]++;
      const why = await abortOne(host.url, kind, i, ramMiB);
      if (why !== undefined && unexpected.length < 20) unexpected.push(why);
      if (!host.running()) throw new Error(`the host died after ${i} aborts:\n${host.stderrTail(40)}`);
      if (i % every === 0 || i === warmAt) {
        const s = sample(host.pid, i);
        samples.push(s);
        if (i === warmAt) warm = s;
        o.log?.(`${i} aborts: RSS ${s.rssMiB} MiB, ${s.fds} descriptors`);
      }
    }
    const ms = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 3000));
    const end = sample(host.pid, o.aborts);
    samples.push(end);
    return {
      aborts: o.aborts, kinds: count, ms: Math.round(ms), abortsPerSecond: Math.round((o.aborts / ms) * 1000 * 10) / 10,
      baseline, warm, end,
      peak: { rssMiB: Math.max(...samples.map((s) => s.rssMiB)), fds: Math.max(...samples.map((s) => s.fds)) },
      samples, rssGrowthMiB: end.rssMiB - warm.rssMiB, fdGrowth: end.fds - baseline.fds, unexpected,
    };
  } finally {
    await host.stop();
  }
}

