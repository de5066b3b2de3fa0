/**
 * The oracles run between batches: the host answers a fresh legit client within 2 s, every
 * fixture VM is there and running (instret advancing), the post-copy is still in flight, and
 * the host's RSS and descriptor count. VMs left behind by fuzz cases are listed and destroyed.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { LegitClient } from './conn.ts';

export interface ProcStats {
  rssKiB: number;
  fds: number;
}

/** RSS (VmRSS) and open descriptors of a process, from /proc; undefined when it is gone. */
export function procStats(pid: number): ProcStats | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    const fds = readdirSync(`/proc/${pid}/fd`).length;
    return { rssKiB: m ? Number(m[1]) : 0, fds };
  } catch {
    return undefined;
  }
}

export interface OracleTarget {
  url: string;
  token: string | undefined;
  pid: number;
  vms: readonly string[];
  postcopyVm: string;
}

export interface OracleResult {
  /** The host did not let a legit client in and answer host.info within the limit. */
  hang: string | undefined;
  /** Fixture VMs missing, not running, or not advancing. */
  vmProblems: string[];
  postcopyStatus: string | undefined;
  /** The post-copy has failed or left (not merely paused for a moment). */
  postcopyProblem: string | undefined;
  /** VMs on the host that are not the fixture's (left by fuzz cases), with their state. */
  strays: { name: string; state: string }[];
  stats: ProcStats | undefined;
  /** How long the legit client took to connect and get host.info (ms). */
  hostInfoMs: number | undefined;
}

interface VmSummary {
  name: string;
  state: string;
  instret: number;
}

export interface OracleOptions {
  /** Limit for a fresh client's connect + host.info (default 2000 ms). */
  hangMs?: number;
  /** A fixture VM whose instret has not moved for this long is stuck (default 8000 ms). */
  stallMs?: number;
  /** A post-copy paused for longer than this is a failure (default 15000 ms). */
  pausedMs?: number;
}

export class Oracle {
  private readonly progress = new Map<string, { instret: number; movedAt: number }>();
  private pausedSince: number | undefined;
  private readonly o: Required<OracleOptions>;

  constructor(private readonly t: OracleTarget, o: OracleOptions = {}) {
    this.o = { hangMs: o.hangMs ?? 2000, stallMs: o.stallMs ?? 8000, pausedMs: o.pausedMs ?? 15_000 };
  }

  /** `keep`: stray VMs not to destroy (they belong to a case still running). */
  async check(opts: { destroyStrays: boolean; keep?: (name: string) => boolean }): Promise<OracleResult> {
    const result: OracleResult = {
      hang: undefined, vmProblems: [], postcopyStatus: undefined, postcopyProblem: undefined, strays: [], stats: undefined, hostInfoMs: undefined,
    };
    const t0 = Date.now();
    let c: LegitClient | undefined;
    try {
      c = await LegitClient.connect(this.t.url, this.t.token, this.o.hangMs);
      await c.request('host.info', {}, Math.max(1, this.o.hangMs - (Date.now() - t0)));
      result.hostInfoMs = Date.now() - t0;
    } catch (e) {
      result.hang = `a fresh client from 127.0.0.1 got no host.info within ${this.o.hangMs} ms: ${(e as Error).message}`;
      c?.close();
      result.stats = procStats(this.t.pid);
      return result;
    }
    try {
      const list = await c.request<VmSummary[]>('vm.list', {}, 5000);
      const now = Date.now();
      const byName = new Map(list.map((v) => [v.name, v]));
      for (const name of this.t.vms) {
        const v = byName.get(name);
        if (!v) {
          result.vmProblems.push(`${name} is gone`);
          continue;
        }
        if (v.state !== 'running') result.vmProblems.push(`${name} is ${v.state}, not running`);
        const p = this.progress.get(name);
        if (!p || v.instret > p.instret) this.progress.set(name, { instret: v.instret, movedAt: now });
        else if (now - p.movedAt > this.o.stallMs) result.vmProblems.push(`${name} has not advanced for ${Math.round((now - p.movedAt) / 1000)} s (instret ${v.instret})`);
      }
      result.strays = list.filter((v) => !this.t.vms.includes(v.name) && !(opts.keep?.(v.name) ?? false)).map((v) => ({ name: v.name, state: v.state }));
      const s = await c.request<Record<string, unknown>>('migrate.status', { name: this.t.postcopyVm }, 5000).catch((e: Error): Record<string, unknown> => ({ status: `unknown (${e.message})` }));
      result.postcopyStatus = String(s.status);
      if (s.status === 'postcopy-active') this.pausedSince = undefined;
      else if (s.status === 'postcopy-paused') {
        this.pausedSince ??= now;
        if (now - this.pausedSince > this.o.pausedMs) result.postcopyProblem = `post-copy paused for more than ${this.o.pausedMs / 1000} s (${String(s['error-desc'] ?? '')})`;
      } else {
        result.postcopyProblem = `post-copy is ${String(s.status)}${s['error-desc'] ? `: ${String(s['error-desc'])}` : ''}`;
      }
      if (opts.destroyStrays) {
        for (const v of result.strays) {
          if (opts.keep?.(v.name)) continue;
          await c.request('vm.destroy', { name: v.name }, 5000).catch(() => undefined);
        }
      }
    } catch (e) {
      result.hang = `the legit client's requests stalled: ${(e as Error).message}`;
    } finally {
      c.close();
    }
    result.stats = procStats(this.t.pid);
    return result;
  }
}
