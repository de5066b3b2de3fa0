// The migration engine's pure parts, without VMs, threads or sockets: the ownership table and
// transitions, the destination's step, the pre-copy convergence policy (checked against random
// rounds: it never switches over above the limit unless allowed), and the post-copy push queue.
import { describe, expect, it } from 'vitest';
import {
  decide, expectedDowntimeMs, INITIAL_CONVERGENCE, ROUNDS_AT_MAX_THROTTLE, THROTTLE_INITIAL, THROTTLE_MAX, type ConvergenceParams, type ConvergenceState, type RoundResult,
} from '../../src/migration/convergence.ts';
import { destinationStep, SOURCE_OWNER, SOURCE_TRANSITIONS, type SourcePhase } from '../../src/migration/ownership.ts';
import { PushQueue } from '../../src/migration/postcopy-push.ts';
import { Backoff, giveUpLeftMs, recoveryAttemptIsFinal } from '../../src/migration/recovery.ts';

describe('ownership', () => {
  const phases = Object.keys(SOURCE_TRANSITIONS) as SourcePhase[];

  it('once the state section may have been acted on, the source never owns the guest again, except by a failed ending the destination (or the operator) decided', () => {
    for (const from of phases) {
      if (SOURCE_OWNER[from] === 'source') continue;
      for (const to of SOURCE_TRANSITIONS[from]) {
        if (SOURCE_OWNER[to] === 'source') expect([from, to]).toEqual([from, 'failed']);
      }
    }
    // Terminal phases have no way out; every phase is reachable from setup.
    for (const p of ['completed', 'failed', 'cancelled', 'lost'] as SourcePhase[]) expect(SOURCE_TRANSITIONS[p]).toEqual([]);
    const seen = new Set<SourcePhase>(['setup']);
    for (let grew = true; grew;) {
      grew = false;
      for (const p of [...seen]) for (const q of SOURCE_TRANSITIONS[p]) if (!seen.has(q)) { seen.add(q); grew = true; }
    }
    expect([...seen].sort()).toEqual([...phases].sort());
  });

  it('a cancel (source-owned phases) can never reach a phase where the destination may run the guest without the switch-over', () => {
    for (const p of phases) {
      if (SOURCE_OWNER[p] !== 'source' || p === 'failed' || p === 'cancelled') continue;
      expect(SOURCE_TRANSITIONS[p]).toContain('failed');
      if (p !== 'stop-and-copy') expect(SOURCE_TRANSITIONS[p]).not.toContain('switching');
    }
  });

  it('the destination accepts each message only in its phase', () => {
    expect(destinationStep('setup', 'setup')).toBeUndefined();
    expect(destinationStep('setup', 'page-frame')).toBe('a page frame before the setup');
    expect(destinationStep('precopy', 'setup')).toBe('unexpected "setup" in phase precopy');
    expect(destinationStep('advised', 'page-frame')).toBe('a page frame in phase advised');
    expect(destinationStep('advised', 'state')).toBeUndefined();
    expect(destinationStep('postcopy', 'round-end')).toBe('unexpected "round-end" in phase postcopy');
    expect(destinationStep('done', 'postcopy-done')).toBe('unexpected "postcopy-done" in phase done');
  });
});

describe('pre-copy convergence', () => {
  const base: ConvergenceParams = { mode: 'precopy', downtimeLimitMs: 100, maxRounds: 3, autoConverge: false, postcopyAfterRounds: 30, switchoverAtMaxRounds: false };
  const round = (rounds: number, dirtyBytes: number, o: Partial<RoundResult> = {}): RoundResult => ({
    rounds, bytes: 100_000_000, ms: 1000, dirtyBytes, stopped: false, postcopyRequested: false, ...o,
  });

  it('switches over once the rest fits, saying so', () => {
    const { decision } = decide(base, INITIAL_CONVERGENCE, round(1, 5_000_000)); // 50 ms at 100 MB/s
    expect(decision).toEqual({ next: 'stop-and-copy', reason: 'converged: expected downtime 50 ms, limit 100 ms' });
  });

  it('the expected downtime counts the state section, and never less than the round trip of its acknowledgement', () => {
    // A 20 ms link, a round of 5 pages that took 25 ms: 3 dirty pages and 17 KiB of state are not 12 ms away.
    const small = { rounds: 1, bytes: 5 * 4096, ms: 25, rttMs: 20, dirtyBytes: 3 * 4096, stateBytes: 17_000, stopped: false, postcopyRequested: false };
    expect(expectedDowntimeMs({ ...small, rttMs: 0, stateBytes: 0 })).toBeCloseTo(15, 5); // the old estimate: 3/5 of the round
    expect(expectedDowntimeMs(small)).toBeCloseTo(((3 * 4096 + 17_000) * 25) / (5 * 4096), 5); // as that round sent its bytes: 35.7 ms
    expect(decide({ ...base, downtimeLimitMs: 30 }, INITIAL_CONVERGENCE, small).decision.next).toBe('round');
    // A big round on the same link: the round trip, then the rest at the round's sending rate.
    const big = { ...small, bytes: 100_000_000, ms: 1020, dirtyBytes: 1_000_000, stateBytes: 0 };
    expect(expectedDowntimeMs(big)).toBeCloseTo(20 + 1_000_000 / (100_000_000 / 1000), 5);
  });

  it('at max rounds without converging it throttles (20 %, then +10 %) rather than switch over, and gives up at 99 % after a few rounds', () => {
    let s: ConvergenceState = INITIAL_CONVERGENCE;
    const throttles: number[] = [];
    for (let r = 1; ; r++) {
      const { decision, state } = decide(base, s, round(r, 60_000_000));
      s = state;
      if (decision.next === 'give-up') {
        expect(decision.reason).toMatch(/^pre-copy cannot converge: expected downtime 600 ms against a limit of 100 ms/);
        break;
      }
      expect(decision.next).toBe('round');
      if (decision.next === 'round') throttles.push(decision.throttle);
      expect(r).toBeLessThan(100);
    }
    expect(throttles.slice(0, 4)).toEqual([0, 0, THROTTLE_INITIAL, 30]);
    expect(throttles.filter((t) => t === THROTTLE_MAX).length).toBe(ROUNDS_AT_MAX_THROTTLE);
  });

  it('pre-copy says it is not converging from the second round in a row that leaves over half dirty, and what comes next', () => {
    const p = { ...base, maxRounds: 30 };
    const first = decide(p, INITIAL_CONVERGENCE, round(1, 60_000_000));
    expect(first.decision).toEqual({ next: 'round', throttle: 0 });
    const second = decide(p, first.state, round(2, 60_000_000));
    expect(second.decision.next).toBe('round');
    if (second.decision.next !== 'round') return;
    expect(second.decision.notConverging).toMatch(/^pre-copy is not converging: round 2 left 57\.2 MiB dirty of 95\.4 MiB sent .* expected downtime 600 ms against a limit of 100 ms; it throttles the vCPU from round 30/);
    // Throttled (auto-converge), it says so; a round that converges says nothing.
    const auto = decide({ ...p, autoConverge: true }, first.state, round(2, 60_000_000)).decision;
    expect(auto.next === 'round' && auto.notConverging).toMatch(/the vCPU is throttled 20 %$/);
    const calm = decide(p, second.state, round(3, 20_000_000));
    expect(calm.decision).toEqual({ next: 'round', throttle: 0 });
  });

  it('--switchover-at-max-rounds switches over there, saying it was allowed above the limit', () => {
    const { decision } = decide({ ...base, switchoverAtMaxRounds: true }, INITIAL_CONVERGENCE, round(3, 60_000_000));
    expect(decision).toEqual({ next: 'stop-and-copy', reason: 'max rounds (3), allowed above the limit: expected downtime 600 ms' });
  });

  it('hybrid goes to post-copy: asked for, after N rounds, at max rounds, or when two rounds in a row leave over half dirty again', () => {
    const h = { ...base, mode: 'hybrid' as const, postcopyAfterRounds: 5 };
    expect(decide(h, INITIAL_CONVERGENCE, round(1, 20_000_000, { postcopyRequested: true })).decision).toEqual({ next: 'postcopy', reason: 'requested' });
    expect(decide({ ...h, maxRounds: 30 }, INITIAL_CONVERGENCE, round(5, 20_000_000)).decision).toEqual({ next: 'postcopy', reason: 'after 5 rounds' });
    expect(decide(h, INITIAL_CONVERGENCE, round(3, 20_000_000)).decision).toEqual({ next: 'postcopy', reason: 'max rounds (3)' });
    const first = decide({ ...h, maxRounds: 30 }, INITIAL_CONVERGENCE, round(1, 60_000_000));
    expect(first.decision.next).toBe('round');
    expect(decide({ ...h, maxRounds: 30 }, first.state, round(2, 60_000_000)).decision).toEqual({ next: 'postcopy', reason: 'pre-copy is not converging' });
  });

  it('over 20,000 random round sequences, never a switch-over above the limit unless allowed or the guest stopped', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let run = 0; run < 20_000; run++) {
      const p: ConvergenceParams = {
        mode: rnd() < 0.5 ? 'precopy' : 'hybrid', downtimeLimitMs: 1 + Math.floor(rnd() * 500), maxRounds: 1 + Math.floor(rnd() * 10),
        autoConverge: rnd() < 0.5, postcopyAfterRounds: 1 + Math.floor(rnd() * 20), switchoverAtMaxRounds: rnd() < 0.2,
      };
      let s = INITIAL_CONVERGENCE;
      for (let r = 1; r <= 60; r++) {
        const result = round(r, Math.floor(rnd() * 200_000_000), {
          ms: 1 + rnd() * 3000, rttMs: rnd() < 0.5 ? 0 : rnd() * 100, stateBytes: Math.floor(rnd() * 20_000), stopped: rnd() < 0.01, postcopyRequested: rnd() < 0.01,
          ...(rnd() < 0.3 ? { switchover: { rate: 1 + rnd() * 1_000_000, fixedMs: rnd() * 10 } } : {}),
        });
        const { decision, state } = decide(p, s, result);
        s = state;
        if (decision.next === 'stop-and-copy') {
          const expected = expectedDowntimeMs(result);
          const rate = result.switchover?.rate ?? result.bytes / result.ms; // measured at a stop-and-copy, or the round's
          expect(expected).toBeGreaterThanOrEqual((result.dirtyBytes + (result.stateBytes ?? 0)) / rate - 1e-9);
          expect(expected).toBeGreaterThanOrEqual(Math.min(result.rttMs ?? 0, result.ms));
          const allowed = result.stopped || (p.switchoverAtMaxRounds && r >= p.maxRounds);
          if (!allowed) expect(expected).toBeLessThanOrEqual(p.downtimeLimitMs);
        }
        if (decision.next === 'postcopy') expect(p.mode).toBe('hybrid');
        if (decision.next !== 'round') break;
        expect(decision.throttle).toBeLessThanOrEqual(THROTTLE_MAX);
      }
    }
  });
});

describe('post-copy push queue', () => {
  it('every page goes out exactly once, however faults steer it; a recovery resends what the destination lacks', () => {
    const pages = 4096;
    const order = Uint32Array.from({ length: 1000 }, (_, i) => (i * 7) % pages);
    const indexOf = new Int32Array(pages).fill(-1);
    order.forEach((p, i) => { indexOf[p] = i; });
    const q = new PushQueue(order, indexOf, pages);
    const sent: number[] = [];
    let seed = 3;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (;;) {
      if (rnd() < 0.3) {
        const p = order[Math.floor(rnd() * order.length)]!;
        if (q.fault(p)) sent.push(p);
        continue;
      }
      const chunk = q.nextChunk();
      if (chunk.length === 0) break;
      sent.push(...chunk);
    }
    expect(q.left).toBe(0);
    expect([...sent].sort((a, b) => a - b)).toEqual([...order].sort((a, b) => a - b));
    // The destination got only the first half: the rest goes again.
    const received = new Uint8Array(pages / 8);
    for (const p of sent.slice(0, 500)) received[p >>> 3]! |= 1 << (p & 7);
    expect(q.resync(received)).toBe(500);
    const again: number[] = [];
    for (let c = q.nextChunk(); c.length > 0; c = q.nextChunk()) again.push(...c);
    expect(again.sort((a, b) => a - b)).toEqual(sent.slice(500).sort((a, b) => a - b));
  });
});

describe('recovery', () => {
  it('backs off doubling to its ceiling, and says what comes next', () => {
    const b = new Backoff(100, 1000);
    expect(b.peek()).toBe(100);
    expect([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('--give-up-after counts from the pause; without it nothing ends the wait but an answer or the operator', () => {
    expect(giveUpLeftMs(1000, 5000, 3000)).toBe(3000);
    expect(giveUpLeftMs(1000, 5000, 7000)).toBe(-1000);
    expect(giveUpLeftMs(1000, undefined, 1e12)).toBe(Infinity);
    expect(giveUpLeftMs(1000, 0, 1e12)).toBe(Infinity);
  });

  it('only an answer from a peer that is there ends a recovery: refused, timed out, reset or garbled never does', () => {
    for (const code of ['ENOMIGRATION', 'ELOST', 'EHOSTGONE']) expect(recoveryAttemptIsFinal(code), code).toBe(true);
    for (const code of ['ECONNREFUSED', 'ETIMEDOUT', 'ELINK', 'EPROTO', 'EHOSTUNREACH', 'ECONNRESET']) expect(recoveryAttemptIsFinal(code), code).toBe(false);
  });
});
