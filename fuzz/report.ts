/** The fuzz report: its shape, the pass/fail verdict, crash signatures and the human summary. */
import type { ProcStats } from './oracle.ts';
import type { ParkingStats } from './parking.ts';

export interface CaseRef {
  case: number;
  strategy: string;
}

export interface CrashRecord {
  /** The case that crashed the host: confirmed by replaying it alone, else the most likely suspect. */
  case: number | null;
  strategy: string | null;
  /** Replayed alone on a fresh fixture, it crashed the host again. */
  confirmed: boolean;
  /** Cases running (or just finished) when the host died, most recent first. */
  suspects: CaseRef[];
  /** The error the host died of (first error line and the first src/ stack frame). */
  description: string;
  /** Groups crashes of one bug (error class + src/ functions on the stack). */
  key: string;
  /** Other messages the same bug died with (different values, same place). */
  otherMessages: string[];
  exit: { code: number | null; signal: string | null };
  /** The last 40 lines of the host's stderr. */
  stderrTail: string;
  /** When it happened: frames sent so far, ms since the start. */
  atFrames: number;
  atMs: number;
  /** How to run that case alone. */
  repro: string;
  /** Crashes with the same description in this run. */
  occurrences: number;
}

export interface HangRecord {
  description: string;
  suspects: CaseRef[];
  /** It answered again later (after how many ms), or the host was killed and restarted. */
  recoveredAfterMs: number | null;
  stderrTail: string;
  atFrames: number;
}

export interface StrategyStats {
  cases: number;
  frames: number;
  /** Wall time spent in its cases (ms). */
  totalMs: number;
  /** Cases that hit their deadline. */
  timeouts: number;
  /** Cases that threw (could not connect, ...), with a few distinct messages. */
  errors: number;
  errorSamples: string[];
  variants: Record<string, number>;
  /** Notes flagged as anomalies (a request never answered, a connection that stopped answering). */
  anomalies: Record<string, number>;
}

export interface ResourceReport {
  /** After fixture setup and a settle (descriptors are compared with it). */
  baseline: ProcStats | undefined;
  /** The RSS high-water mark of the first `warmupFrames` frames (RSS is compared with it); undefined when the run was shorter. */
  warmBaseline: ProcStats | undefined;
  warmupFrames: number;
  end: ProcStats | undefined;
  peak: ProcStats | undefined;
  fdGrowth: number | null;
  /** End vs the warm baseline (the cold one when there is none). */
  rssGrowthMiB: number | null;
  /** End vs the cold baseline, for information. */
  rssGrowthFromColdMiB: number | null;
  thresholds: { fds: number; rssMiB: number };
  /** Milliseconds the end waited for the host to settle (idle connections closed, fds stable). */
  settleMs: number;
  ok: boolean;
}

export interface FuzzReport {
  seed: number;
  token: boolean;
  surface: string;
  /** Only this case was run (`--case`). */
  onlyCase: number | null;
  framesTarget: number;
  framesSent: number;
  cases: number;
  /** Cases not run: their strategy was quarantined, or the heavy lanes were behind. */
  casesSkipped: number;
  /** Of those, heavy cases left out because the heavy lanes were behind. */
  heavyCasesLeftOut: number;
  durationMs: number;
  framesPerSecond: number;
  strategies: Record<string, StrategyStats>;
  crashes: CrashRecord[];
  hangs: HangRecord[];
  fixtureRestarts: number;
  /** Fixture trouble that is not host B crashing (host A died, a restart failed). */
  fixtureProblems: string[];
  resources: ResourceReport;
  vms: { ok: boolean; problems: string[] };
  postcopy: { ok: boolean; lastStatus: string | undefined; problems: string[] };
  /** VMs fuzz cases left on the host (destroyed by the oracle), by state. */
  strayVms: { total: number; byState: Record<string, number>; samples: string[] };
  idleConnections: ParkingStats;
  /** Why the run failed (empty when it passed). */
  failures: string[];
  ok: boolean;
  stoppedEarly: string | null;
}

export interface CrashSignature {
  /** Groups crashes of one bug: the error class and the src/ functions it went through (no line numbers, no values). */
  key: string;
  /** What it said: the error line and where in src/ it was thrown. */
  description: string;
}

/** What a host died of, from its stderr. */
export function crashSignature(stderr: string, exit: { code: number | null; signal: string | null }): CrashSignature {
  const lines = stderr.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = /^(?:Uncaught )?([A-Za-z]*Error(?: \[[A-Z_]+\])?|Error):?\s?(.*)$/.exec(lines[i]!.trim());
    if (!m) continue;
    const frames = lines.slice(i + 1).filter((l) => /^\s+at /.test(l)).map((l) => l.trim());
    const own = frames.filter((l) => /\/src\//.test(l));
    const where = own[0] ?? frames[0];
    const loc = where ? ` ${where.replace(/file:\/\/\S*?\/src\//, 'src/').replace(/\(\S*?\/src\//, '(src/')}` : '';
    const fns = own.slice(0, 4).map((l) => /^at (?:async )?([^\s(]+)/.exec(l)?.[1] ?? '?');
    const via = fns.length > 1 ? ` via ${fns.slice(1).join(' < ')}` : '';
    return { key: `${m[1]}|${fns.join('<') || where || m[2]!.replace(/\d+/g, 'N')}`, description: `${m[1]}: ${m[2]!.slice(0, 200)}${loc}${via}` };
  }
  for (const l of lines) {
    const j = /"level":(50|60).*?"msg":"([^"]*)"/.exec(l);
    if (j) return { key: `log|${j[2]}`, description: `exited (${exit.code ?? exit.signal}) after: ${j[2]}` };
  }
  const last = lines.filter((l) => l.trim() !== '').pop() ?? '';
  const d = `exited with ${exit.signal ?? `code ${exit.code}`}${last ? `; last stderr line: ${last.slice(0, 200)}` : ''}`;
  return { key: d.replace(/\d+/g, 'N'), description: d };
}

/** The failures that make a run fail (empty: it passed). */
export function verdict(r: Omit<FuzzReport, 'failures' | 'ok'>, interrupted = false): string[] {
  const f: string[] = [];
  if (interrupted) {
    // Only what was found before the interruption counts; the end was never measured.
    if (r.crashes.length > 0) f.push(`${r.crashes.reduce((n, c) => n + c.occurrences, 0)} host crash(es), ${r.crashes.length} distinct`);
    if (r.hangs.length > 0) f.push(`${r.hangs.length} hang(s)`);
    f.push('interrupted');
    return f;
  }
  if (r.crashes.length > 0) f.push(`${r.crashes.reduce((n, c) => n + c.occurrences, 0)} host crash(es), ${r.crashes.length} distinct`);
  if (r.hangs.length > 0) f.push(`${r.hangs.length} hang(s)`);
  if (!r.vms.ok) f.push(`fixture VMs: ${r.vms.problems.slice(0, 3).join('; ')}`);
  if (!r.postcopy.ok) f.push(`post-copy: ${r.postcopy.problems.slice(0, 2).join('; ')}`);
  if (r.fixtureProblems.length > 0) f.push(`fixture: ${r.fixtureProblems.slice(0, 2).join('; ')}`);
  const res = r.resources;
  if (res.fdGrowth !== null && res.fdGrowth > res.thresholds.fds) {
    f.push(`descriptors grew by ${res.fdGrowth} (${res.baseline?.fds} -> ${res.end?.fds}; limit +${res.thresholds.fds})${r.idleConnections.openNow > 0 ? `, ${r.idleConnections.openNow} idle fuzz connection(s) still open after ${Math.round(res.settleMs / 1000)} s` : ''}`);
  }
  if (res.rssGrowthMiB !== null && res.rssGrowthMiB > res.thresholds.rssMiB) {
    f.push(`RSS grew by ${res.rssGrowthMiB.toFixed(1)} MiB since ${res.warmBaseline ? 'the warm-up' : 'the baseline'} (limit ${res.thresholds.rssMiB} MiB)`);
  }
  if ((res.baseline === undefined || res.end === undefined) && r.crashes.length === 0) f.push('no end measurement of host B (it was not running at the end)');
  return f;
}

function mib(kib: number | undefined): string {
  return kib === undefined ? '?' : `${(kib / 1024).toFixed(1)} MiB`;
}

/** The report for people. */
export function summary(r: FuzzReport): string {
  const out: string[] = [];
  out.push(`ferry fuzz: seed ${r.seed}${r.onlyCase !== null ? ` case ${r.onlyCase}` : ''}, ${r.token ? 'with' : 'without'} a token, surface ${r.surface}`);
  out.push(`  ${r.framesSent} frames in ${r.cases} cases (${r.casesSkipped} skipped, ${r.heavyCasesLeftOut} of them heavy ones left out), ${(r.durationMs / 1000).toFixed(1)} s, ${Math.round(r.framesPerSecond)} frames/s, fixture restarts ${r.fixtureRestarts}`);
  out.push('  strategies:');
  for (const [name, s] of Object.entries(r.strategies).sort()) {
    const anomalies = Object.entries(s.anomalies).map(([k, v]) => `${k}×${v}`).join(' ');
    const err = s.errorSamples[0] ? `  (${s.errorSamples[0].slice(0, 80)})` : '';
    out.push(`    ${name.padEnd(24)} ${String(s.cases).padStart(6)} cases ${String(s.frames).padStart(7)} frames ${String(Math.round(s.totalMs / Math.max(1, s.cases))).padStart(5)} ms/case${s.timeouts ? `, ${s.timeouts} timeouts` : ''}${s.errors ? `, ${s.errors} errors` : ''}${anomalies ? `  ${anomalies}` : ''}${err}`);
  }
  if (r.crashes.length === 0) out.push('  crashes: none');
  for (const c of r.crashes) {
    out.push(`  CRASH ×${c.occurrences}: ${c.description}`);
    out.push(`    case ${c.case ?? '?'} (${c.strategy ?? '?'})${c.confirmed ? ', reproduced alone' : ', not confirmed alone'}; exit ${c.exit.signal ?? c.exit.code}; at frame ${c.atFrames}`);
    out.push(`    repro: ${c.repro}`);
    out.push(`    suspects: ${c.suspects.slice(0, 6).map((s) => `${s.case}:${s.strategy}`).join(', ')}`);
    for (const m of c.otherMessages.slice(0, 4)) out.push(`    also: ${m}`);
    out.push(...c.stderrTail.split('\n').slice(-15).map((l) => `    | ${l.slice(0, 300)}`));
  }
  for (const h of r.hangs) {
    out.push(`  HANG: ${h.description} (${h.recoveredAfterMs === null ? 'did not recover; host restarted' : `recovered after ${h.recoveredAfterMs} ms`})`);
    out.push(`    suspects: ${h.suspects.slice(0, 6).map((s) => `${s.case}:${s.strategy}`).join(', ')}`);
  }
  const res = r.resources;
  out.push(`  host B fds: baseline ${res.baseline?.fds ?? '?'}, end ${res.end?.fds ?? '?'}, peak ${res.peak?.fds ?? '?'} (growth ${res.fdGrowth ?? '?'}, limit +${res.thresholds.fds})`);
  out.push(`  host B RSS: baseline ${mib(res.baseline?.rssKiB)}, after ${res.warmupFrames} frames of warm-up ${mib(res.warmBaseline?.rssKiB)}, end ${mib(res.end?.rssKiB)}, peak ${mib(res.peak?.rssKiB)} (growth since warm-up ${res.rssGrowthMiB?.toFixed(1) ?? '?'} MiB, limit ${res.thresholds.rssMiB} MiB; since the cold baseline ${res.rssGrowthFromColdMiB?.toFixed(1) ?? '?'} MiB); settled ${(res.settleMs / 1000).toFixed(1)} s`);
  const i = r.idleConnections;
  out.push(`  idle connections: ${i.parked} parked, ${i.closedByHost} closed by the host (slowest after ${(i.maxHostCloseMs / 1000).toFixed(1)} s), ${i.closedByFuzzer} by the fuzzer, ${i.lostWithHost} lost in host crashes, ${i.openNow} open at the end`
    + ` [${Object.entries(i.byKind).map(([k, v]) => `${k} ${v.closedByHost}/${v.parked} closed by the host`).join(', ')}]`);
  out.push(`  fixture VMs: ${r.vms.ok ? 'ok' : r.vms.problems.join('; ')}; post-copy: ${r.postcopy.ok ? `ok (${r.postcopy.lastStatus})` : r.postcopy.problems.join('; ')}`);
  if (r.strayVms.total > 0) out.push(`  VMs left by fuzz cases (destroyed): ${r.strayVms.total} ${JSON.stringify(r.strayVms.byState)}`);
  for (const p of r.fixtureProblems) out.push(`  fixture: ${p}`);
  if (r.stoppedEarly) out.push(`  stopped early: ${r.stoppedEarly}`);
  out.push(r.ok ? '  PASS' : `  FAIL: ${r.failures.join('; ')}`);
  return out.join('\n');
}
