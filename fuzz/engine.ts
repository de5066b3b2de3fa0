/**
 * runFuzz: starts the fixture, runs cases in batches (a few at a time), checks the oracles
 * after every batch, records crashes (restarting the fixture after each) and hangs, measures
 * host B's descriptors and RSS against a baseline, and always cleans up what it started.
 */
import { CaseCancelled, CaseRun, type CaseEnv } from './case.ts';
import { Oracle, procStats, type OracleResult, type ProcStats } from './oracle.ts';
import { Parking } from './parking.ts';
import {
  crashSignature, summary, type CrashSignature, verdict, type CaseRef, type CrashRecord, type FuzzReport, type HangRecord, type StrategyStats,
} from './report.ts';
import { caseSeed, Rng } from './rng.ts';
import { settle } from './settle.ts';
import { Slot } from './slot.ts';
import { selectStrategies, type Strategy, type Surface } from './strategies/index.ts';
import { endpointHint, rankSuspects, type CaseActivity } from './suspects.ts';
import { startFixture, type Fixture } from './target.ts';

export interface FuzzOptions {
  seed: number;
  /** Frames to send in all (WebSocket messages and raw TCP writes). */
  frames: number;
  /** Run the fixture with a cluster token (fuzz both the unauthenticated and the authenticated surface). */
  token?: boolean;
  surface?: 'control' | 'migrate' | 'all';
  /** Run only this case (a reproduction). */
  onlyCase?: number;
  /** Cases in flight at once (default 6). */
  concurrency?: number;
  /** Frames between oracle checks (default 400). */
  batchFrames?: number;
  /** Allowed growth of host B's descriptors, end vs baseline (default 4). */
  fdThreshold?: number;
  /** Allowed growth of host B's RSS in MiB, end vs the baseline after warm-up (default 64). */
  rssThresholdMiB?: number;
  /**
   * Frames fuzzed before the RSS baseline is taken (default min(3000, frames/4)). A host's heap
   * and allocator arenas grow to their working size in the first few thousand frames and stay
   * there; measured from a cold host, that warm-up alone is ~90 MiB, which would hide a leak
   * behind a threshold or fail every run. Descriptors are compared with the cold baseline.
   */
  warmupFrames?: number;
  /** Longest wait at the end for idle connections to be closed and descriptors to settle (default 15000 ms). */
  settleMs?: number;
  /** Only these strategies / not these. */
  strategies?: string[];
  exclude?: string[];
  /** Replay the suspects of each new crash alone on a fresh fixture to find the case (default false). */
  triage?: boolean;
  /** At most this many crash signatures are triaged (default 8). */
  maxTriage?: number;
  /** Fixture restarts after crashes/hangs before the run stops early (default 20). */
  maxRestarts?: number;
  /** After a triaged crash, stop using its strategy for the rest of the run (default false). */
  quarantine?: boolean;
  /** Limit for a fresh client's connect + host.info (default 2000 ms). */
  hangMs?: number;
  /** Checkout to run the hosts from (default: this one). */
  root?: string;
  /** FERRY_LOG_LEVEL of the hosts (default warn). */
  logLevel?: string;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
  /** Aborting it stops the run (cleanly, with a report). */
  signal?: AbortSignal;
  /** How a reproduction is run, for repro lines (default `npm run fuzz --`). */
  reproCommand?: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function newStats(): StrategyStats {
  return { cases: 0, frames: 0, totalMs: 0, timeouts: 0, errors: 0, errorSamples: [], variants: {}, anomalies: {} };
}

function maxStats(a: ProcStats | undefined, b: ProcStats | undefined): ProcStats | undefined {
  if (!a) return b;
  if (!b) return a;
  return { rssKiB: Math.max(a.rssKiB, b.rssKiB), fds: Math.max(a.fds, b.fds) };
}

export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const o = {
    token: false, surface: 'all' as const, concurrency: 6, batchFrames: 400, fdThreshold: 4, rssThresholdMiB: 64, settleMs: 15_000,
    triage: false, maxTriage: 8, maxRestarts: 20, quarantine: false, hangMs: 2000, reproCommand: 'npm run fuzz --', ...options,
  };
  const log = o.log ?? (() => {});
  const t0 = Date.now();
  const surfaces: Surface[] = o.surface === 'all' ? ['control', 'migrate'] : [o.surface];
  const strategies = selectStrategies(surfaces, o.strategies, o.exclude);
  if (strategies.length === 0) throw new Error('no strategy left to run');
  const weighted = strategies.map((s) => [s, s.weight] as const);
  const stats: Record<string, StrategyStats> = Object.fromEntries(strategies.map((s) => [s.name, newStats()]));
  const quarantined = new Set<string>();

  let frames = 0;
  let cases = 0;
  let skipped = 0;
  let restarts = 0;
  let stoppedEarly: string | null = null;
  const crashes: CrashRecord[] = [];
  const hangs: HangRecord[] = [];
  const fixtureProblems: string[] = [];
  const vmProblems = new Set<string>();
  const postcopyProblems = new Set<string>();
  let lastPostcopy: string | undefined;
  const strays = { total: 0, byState: {} as Record<string, number>, samples: [] as string[] };
  let triaged = 0;
  const parking = new Parking();
  let fixture: Fixture | undefined;
  let oracle: Oracle | undefined;
  let baseline: ProcStats | undefined;
  let warmBaseline: ProcStats | undefined;
  let warmAt = Infinity;
  /** The highest RSS seen during the warm-up (the warm baseline: a working set, not a sample of its noise). */
  let warmPeak: ProcStats | undefined;
  const warmupFrames = o.warmupFrames ?? Math.min(3000, Math.floor(o.frames / 4));
  let peak: ProcStats | undefined;
  const recent: (CaseActivity & { endedAt: number })[] = [];
  const inflight = new Map<number, CaseRun>();
  /** Suspects taken the moment host B's exit was seen. */
  let crashSuspects: CaseRef[] | undefined;
  const aborted = () => o.signal?.aborted === true;

  const fixtureOptions = (tag?: string) => ({
    token: o.token, log, ...(o.logLevel !== undefined ? { logLevel: o.logLevel } : {}), ...(o.root !== undefined ? { root: o.root } : {}), ...(tag ? { tag } : {}),
  });
  const repro = (k: number) => `${o.reproCommand} --seed ${o.seed} --case ${k}${o.token ? ' --token' : ''}${o.surface !== 'all' ? ` --surface ${o.surface}` : ''}`
    + `${o.strategies?.length ? ` --strategies ${o.strategies.join(',')}` : ''}${o.exclude?.length ? ` --exclude ${o.exclude.join(',')}` : ''}`;

  const makeEnv = (fx: Fixture, pk: Parking, counting = true): CaseEnv => ({
    target: { url: fx.url, host: fx.host, port: fx.port, token: fx.token, vms: fx.vms, postcopyVm: fx.postcopyVm, sourceUrl: fx.a.url },
    surfaces, parking: pk, liveMigrationIds: new Set(), heavy: new Slot(), alive: () => fx.b.running(),
    countFrame: counting ? () => { frames++; } : () => {},
  });

  /** The strategy of case k (a pure function of seed and k), and its generator positioned after the pick. */
  const caseOf = (k: number): { strategy: Strategy; rng: Rng } => {
    const rng = new Rng(caseSeed(o.seed, k));
    return { strategy: rng.weighted(weighted), rng };
  };

  /** Runs case k against `env` to its end (or deadline, or cancellation). */
  const runCase = async (env: CaseEnv, k: number, track: boolean): Promise<void> => {
    const { strategy, rng } = caseOf(k);
    if (quarantined.has(strategy.name)) {
      skipped++;
      return;
    }
    // Triage replays (track false) stay out of the run's figures.
    const st = track ? stats[strategy.name]! : newStats();
    st.cases++;
    if (track) cases++;
    const run = new CaseRun(k, rng, strategy, env, st);
    const started = Date.now();
    if (track) inflight.set(k, run);
    const deadline = setTimeout(() => {
      st.timeouts++;
      run.cancel('deadline');
    }, strategy.deadlineMs ?? 8000);
    const running: Promise<void> = strategy.run(run).catch(async (e: unknown) => {
      if (e instanceof CaseCancelled || run.cancelled) return;
      // A case cut short by its host dying says nothing more than the crash does (its exit is seen a moment later).
      await sleep(300);
      if (!env.alive()) return;
      st.errors++;
      const msg = (e as Error)?.message ?? String(e);
      if (st.errorSamples.length < 5 && !st.errorSamples.includes(msg)) st.errorSamples.push(msg.slice(0, 200));
    });
    await Promise.race([running, run.whenCancelled]);
    clearTimeout(deadline);
    run.finish();
    st.totalMs += Date.now() - started;
    if (track) {
      inflight.delete(k);
      recent.push({ case: k, strategy: strategy.name, endedAt: Date.now(), lastSendAt: run.lastSendAt, endpoints: run.endpoints });
      if (recent.length > 32) recent.shift();
    }
  };

  /** Cases in flight and those that ended in the last 2 s, most likely culprit first. */
  const suspects = (hint?: '/control' | '/migrate'): CaseRef[] => {
    const now = Date.now();
    return rankSuspects([
      ...[...inflight.values()].map((r) => ({ case: r.index, strategy: r.strategy.name, lastSendAt: r.lastSendAt, endpoints: r.endpoints })),
      ...recent.filter((r) => now - r.endedAt < 2000),
    ], hint);
  };

  /**
   * Heavy cases (their host starts a vCPU thread) run at most HEAVY_LANES at a time; one drawn
   * while the lanes are full waits in `deferred` (a few) or is left out, and light cases go on.
   */
  const HEAVY_LANES = 2;
  let heavyInFlight = 0;
  const deferred: number[] = [];
  let skippedHeavy = 0;
  let nextCase = 0;
  const laneFreed: (() => void)[] = [];
  const pickCase = async (): Promise<number> => {
    let leftOut = 0;
    for (;;) {
      if (heavyInFlight < HEAVY_LANES && deferred.length > 0) return deferred.shift()!;
      const k = nextCase++;
      if (caseOf(k).strategy.heavy !== true || heavyInFlight < HEAVY_LANES) return k;
      if (deferred.length < 4) {
        deferred.push(k);
        continue;
      }
      // The heavy lanes are behind: this one is left out rather than hold up the light cases...
      skipped++;
      skippedHeavy++;
      // ...unless nearly everything is heavy (a run of heavy strategies only): then wait for a lane.
      if (++leftOut >= 8) {
        await new Promise<void>((resolve) => laneFreed.push(resolve));
        leftOut = 0;
      }
    }
  };

  const startOne = async (): Promise<void> => {
    fixture = await startFixture(fixtureOptions());
    oracle = new Oracle({ url: fixture.url, token: fixture.token, pid: fixture.b.pid, vms: fixture.vms, postcopyVm: fixture.postcopyVm }, { hangMs: o.hangMs });
    // Let the post-copy guest fault its working set in before the baseline is taken.
    await sleep(1000);
    await oracle.check({ destroyStrays: false });
    await sleep(300);
    baseline = procStats(fixture.b.pid);
    warmBaseline = undefined;
    warmPeak = baseline;
    warmAt = frames + warmupFrames;
    peak = maxStats(peak, baseline);
    log(`baseline: ${baseline?.fds} fds, ${((baseline?.rssKiB ?? 0) / 1024).toFixed(1)} MiB RSS (RSS baseline again after ${warmupFrames} frames of warm-up)`);
  };

  /** Replays the suspects of a crash one by one on a fresh fixture until one kills host B. */
  const triage = async (sus: CaseRef[]): Promise<{ ref: CaseRef; signature: CrashSignature } | undefined> => {
    let fx: Fixture | undefined;
    try {
      for (const s of sus.slice(0, 6)) {
        if (aborted()) return undefined;
        fx ??= await startFixture(fixtureOptions('triage'));
        const pk = new Parking();
        log(`triage: replaying case ${s.case} (${s.strategy}) alone`);
        await runCase(makeEnv(fx, pk, false), s.case, false);
        const died = await Promise.race([fx.b.exited.then(() => true), sleep(2000).then(() => false)]);
        pk.closeAll();
        if (died) {
          const exit = await fx.b.exited;
          const signature = crashSignature(fx.b.stderrTail(60), { code: exit.code, signal: exit.signal });
          await fx.stop();
          fx = undefined;
          return { ref: s, signature };
        }
      }
      return undefined;
    } finally {
      await fx?.stop();
    }
  };

  const recordOracle = (r: OracleResult): void => {
    peak = maxStats(peak, r.stats);
    lastPostcopy = r.postcopyStatus ?? lastPostcopy;
    for (const p of r.vmProblems) vmProblems.add(p);
    if (r.postcopyProblem) postcopyProblems.add(r.postcopyProblem);
    for (const s of r.strays) {
      strays.total++;
      strays.byState[s.state] = (strays.byState[s.state] ?? 0) + 1;
      if (strays.samples.length < 10) strays.samples.push(`${s.name} (${s.state})`);
    }
  };

  /** Host B died: record it (triage if asked), and bring up a fresh fixture unless too many. */
  const onCrash = async (): Promise<void> => {
    const fx = fixture!;
    const exit = await fx.b.exited;
    const sus = crashSuspects ?? suspects(endpointHint(fx.b.stderrTail(80)));
    crashSuspects = undefined;
    const tail = fx.b.stderrTail(40);
    const sig = crashSignature(fx.b.stderrTail(80), { code: exit.code, signal: exit.signal });
    const description = sig.description;
    log(`CRASH at frame ${frames}: ${description}`);
    parking.closeAll();
    await fx.stop();
    fixture = undefined;
    const known = crashes.find((c) => c.key === sig.key);
    if (known) {
      known.occurrences++;
      if (description !== known.description && !known.otherMessages.includes(description) && known.otherMessages.length < 10) known.otherMessages.push(description);
    } else {
      const rec: CrashRecord = {
        case: sus[0]?.case ?? null, strategy: sus[0]?.strategy ?? null, confirmed: false, suspects: sus, description, key: sig.key, otherMessages: [],
        exit: { code: exit.code, signal: exit.signal }, stderrTail: tail, atFrames: frames, atMs: Date.now() - t0,
        repro: sus[0] ? repro(sus[0].case) : '', occurrences: 1,
      };
      crashes.push(rec);
      if (o.onlyCase !== undefined) {
        // It ran alone: that is the confirmation.
        rec.case = o.onlyCase;
        rec.strategy = caseOf(o.onlyCase).strategy.name;
        rec.repro = repro(o.onlyCase);
        rec.confirmed = true;
      } else if (o.triage && triaged < o.maxTriage && sus.length > 0) {
        triaged++;
        const found = await triage(sus);
        if (found) {
          rec.case = found.ref.case;
          rec.strategy = found.ref.strategy;
          rec.repro = repro(found.ref.case);
          rec.confirmed = found.signature.key === sig.key;
          if (!rec.confirmed) rec.description += ` (replayed alone, case ${found.ref.case} died of: ${found.signature.description})`;
          if (o.quarantine) quarantined.add(found.ref.strategy);
          log(`triage: case ${found.ref.case} (${found.ref.strategy}) reproduces it`);
        }
      }
    }
  };

  /** VMs named by a case still in flight (their names carry the case index) are its own business. */
  const ownedByInflight = (name: string): boolean => {
    const m = /^[a-z]+-(\d+)-/.exec(name);
    return m !== null && inflight.has(Number(m[1]));
  };

  /**
   * One oracle check; a hang is recorded and given 10 s to clear. 'hung' when it did not (the
   * fixture must go). `drained`: no case is in flight, every stray VM may go.
   */
  const check = async (fx: Fixture, drained: boolean): Promise<'ok' | 'hung'> => {
    const t = Date.now();
    const sus = suspects();
    const r = await oracle!.check({ destroyStrays: true, keep: drained ? () => false : ownedByInflight });
    // Interrupted (Ctrl-C reaches the hosts too): what the oracles see now says nothing.
    if (aborted()) return 'ok';
    // A host that is dying refuses clients a moment before its exit is seen: that is a crash,
    // and this check says nothing more than the crash does.
    if (r.hang !== undefined || r.vmProblems.length > 0 || r.postcopyProblem !== undefined) await Promise.race([fx.b.exited, sleep(1000)]);
    if (!fx.b.running()) return 'ok';
    recordOracle(r);
    if (r.hang) {
      log(`HANG at frame ${frames}: ${r.hang}`);
      const h: HangRecord = { description: r.hang, suspects: sus, recoveredAfterMs: null, stderrTail: fx.b.stderrTail(40), atFrames: frames };
      hangs.push(h);
      const h0 = Date.now();
      while (Date.now() - h0 < 10_000 && fx.b.running() && !aborted()) {
        await sleep(1000);
        const again = await oracle!.check({ destroyStrays: false });
        if (!again.hang) {
          h.recoveredAfterMs = Date.now() - h0;
          break;
        }
      }
      if (!fx.b.running()) {
        // It died hung: the crash is the finding.
        hangs.splice(hangs.indexOf(h), 1);
        h.description += ' (then the host exited)';
        return 'ok';
      }
      if (h.recoveredAfterMs === null) return 'hung';
    }
    log(`check in ${Date.now() - t} ms: frames ${frames}, cases ${cases}, crashes ${crashes.reduce((n, c) => n + c.occurrences, 0)}, hangs ${hangs.length}, fds ${r.stats?.fds ?? '?'}, rss ${((r.stats?.rssKiB ?? 0) / 1024).toFixed(0)} MiB, idle open ${parking.openCount}, post-copy ${r.postcopyStatus}`);
    return 'ok';
  };

  const sampler = setInterval(() => {
    if (!fixture) return;
    const now = procStats(fixture.b.pid);
    peak = maxStats(peak, now);
    if (warmBaseline === undefined) warmPeak = maxStats(warmPeak, now);
  }, 250);
  sampler.unref();
  let settleMs = 0;
  let end: ProcStats | undefined;
  /** The idle pool as the end measurement saw it (before the fuzzer closes what is left). */
  let idleAtEnd: ReturnType<Parking['stats']> | undefined;
  try {
    await startOne();
    let next = o.onlyCase ?? 0;
    while (!aborted() && !stoppedEarly) {
      if (o.onlyCase !== undefined ? next > o.onlyCase : frames >= o.frames) break;
      const fx = fixture!;
      const env = makeEnv(fx, parking);
      // Why this fixture's run ends early: host B or A exited, or B hung for good.
      let stop: 'b' | 'a' | 'hang' | undefined;
      const cancelAll = (why: string) => { for (const r of inflight.values()) r.cancel(why); };
      void fx.b.exited.then(() => {
        stop ??= 'b';
        // Who was at it when the host died, before the cancellations below end their cases.
        crashSuspects = suspects(endpointHint(fx.b.stderrTail(80)));
        cancelAll('host B exited');
      });
      void fx.a.exited.then(() => { stop ??= 'a'; });
      const onAbort = () => cancelAll('interrupted');
      o.signal?.addEventListener('abort', onAbort);
      let workersDone = false;
      const workers = Array.from({ length: o.onlyCase !== undefined ? 1 : o.concurrency }, async () => {
        while (!stop && !aborted()) {
          if (o.onlyCase !== undefined) {
            if (next > o.onlyCase) return;
            await runCase(env, next++, true);
            continue;
          }
          if (frames >= o.frames) return;
          const k = await pickCase();
          const heavy = caseOf(k).strategy.heavy === true;
          if (heavy) heavyInFlight++;
          try {
            await runCase(env, k, true);
          } finally {
            if (heavy) {
              heavyInFlight--;
              for (const w of laneFreed.splice(0)) w();
            }
          }
        }
      });
      // The oracles run every batchFrames frames, while cases go on (a legit client must get in under load).
      const checker = (async () => {
        let nextCheck = frames + o.batchFrames;
        while (!stop && !aborted() && !workersDone) {
          await sleep(50);
          if (warmBaseline === undefined && frames >= warmAt) {
            warmBaseline = maxStats(warmPeak, procStats(fx.b.pid));
            log(`RSS baseline after warm-up (its high-water mark): ${((warmBaseline?.rssKiB ?? 0) / 1024).toFixed(1)} MiB`);
          }
          if (frames < nextCheck || workersDone || stop) continue;
          nextCheck = frames + o.batchFrames;
          if ((await check(fx, false)) === 'hung') {
            stop ??= 'hang';
            cancelAll('host B hung');
          }
        }
      })();
      await Promise.all(workers);
      workersDone = true;
      await checker;
      o.signal?.removeEventListener('abort', onAbort);
      if (o.onlyCase !== undefined) {
        // A crash may come a moment after the case.
        await Promise.race([fx.b.exited, sleep(2000)]);
      }
      if (aborted()) {
        break;
      } else if (!fx.b.running()) {
        await onCrash();
      } else if (!fx.a.running()) {
        fixtureProblems.push(`host A (the post-copy source) exited: ${fx.a.stderrTail(5).replace(/\n/g, ' | ')}`);
        parking.closeAll();
        await fx.stop();
        fixture = undefined;
      } else if (stop === 'hang' || (await check(fx, true)) === 'hung') {
        parking.closeAll();
        await fx.stop(1000);
        fixture = undefined;
      }
      if (!fixture && !aborted()) {
        // Nothing left to run on a fresh fixture: the report says the host was gone at the end.
        if (o.onlyCase !== undefined || frames >= o.frames) break;
        if (restarts >= o.maxRestarts) {
          stoppedEarly = `the fixture was restarted ${restarts} times (limit ${o.maxRestarts})`;
          break;
        }
        restarts++;
        try {
          await startOne();
        } catch (e) {
          fixtureProblems.push(`restart failed: ${(e as Error).message.split('\n')[0]}`);
          stoppedEarly = 'the fixture could not be restarted';
          break;
        }
      }
    }

    // The end: a last oracle check, then wait for the host to settle (idle connections closed, fds stable).
    if (fixture && fixture.b.running() && !aborted()) {
      const fx = fixture;
      const first = await oracle!.check({ destroyStrays: true });
      await Promise.race([fx.b.exited, sleep(first.hang !== undefined ? 1000 : 0)]);
      if (fx.b.running()) {
        recordOracle(first);
        if (first.hang) hangs.push({ description: first.hang, suspects: suspects(), recoveredAfterMs: null, stderrTail: fx.b.stderrTail(40), atFrames: frames });
      }
      const settled = await settle({
        pid: fx.b.pid, idleOpen: () => parking.openCount, baseline, maxMs: o.settleMs, running: () => fx.b.running(), stop: aborted,
      });
      peak = maxStats(peak, settled.peak);
      settleMs = settled.ms;
      end = settled.end;
      for (let i = 0; i < 15 && parking.closingCount > 0; i++) await sleep(50);
      idleAtEnd = parking.stats();
      if (fx.b.running()) {
        const last = await oracle!.check({ destroyStrays: true });
        recordOracle(last);
        if (last.hang) hangs.push({ description: last.hang, suspects: [], recoveredAfterMs: null, stderrTail: fx.b.stderrTail(40), atFrames: frames });
      } else {
        await onCrash();
      }
    }
  } finally {
    clearInterval(sampler);
    for (const r of inflight.values()) r.cancel('run over');
    parking.closeAll();
    await fixture?.stop();
    // Closes seen in the last moments are put down to the host or its death before the report.
    for (let i = 0; i < 15 && parking.closingCount > 0; i++) await sleep(50);
  }

  const durationMs = Date.now() - t0;
  const fdGrowth = baseline && end ? end.fds - baseline.fds : null;
  // A run too short to warm up compares with the cold baseline.
  const rssFrom = warmBaseline ?? baseline;
  const rssGrowthMiB = rssFrom && end ? (end.rssKiB - rssFrom.rssKiB) / 1024 : null;
  const partial: Omit<FuzzReport, 'failures' | 'ok'> = {
    seed: o.seed, token: o.token, surface: o.surface, onlyCase: o.onlyCase ?? null, framesTarget: o.frames, framesSent: frames,
    cases, casesSkipped: skipped, heavyCasesLeftOut: skippedHeavy, durationMs, framesPerSecond: frames / (durationMs / 1000),
    strategies: stats, crashes, hangs, fixtureRestarts: restarts, fixtureProblems,
    resources: {
      baseline, warmBaseline, warmupFrames, end, peak, fdGrowth, rssGrowthMiB,
      rssGrowthFromColdMiB: baseline && end ? (end.rssKiB - baseline.rssKiB) / 1024 : null, thresholds: { fds: o.fdThreshold, rssMiB: o.rssThresholdMiB }, settleMs,
      ok: fdGrowth !== null && rssGrowthMiB !== null && fdGrowth <= o.fdThreshold && rssGrowthMiB <= o.rssThresholdMiB,
    },
    vms: { ok: vmProblems.size === 0, problems: [...vmProblems] },
    postcopy: { ok: postcopyProblems.size === 0, lastStatus: lastPostcopy, problems: [...postcopyProblems] },
    strayVms: strays, idleConnections: idleAtEnd ?? parking.stats(), stoppedEarly: aborted() ? 'interrupted' : stoppedEarly,
  };
  const failures = verdict(partial, aborted());
  return { ...partial, failures, ok: failures.length === 0 };
}

export { summary };
