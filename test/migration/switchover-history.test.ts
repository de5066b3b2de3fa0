// The stop-and-copy rate learned from earlier switch-overs (issue 12, point 4): the line fitted
// through their sending times, the multiple of the round's rate that follows a changed link, and
// the bounds on what is kept.
import { describe, expect, it } from 'vitest';
import { decide, expectedDowntimeMs, INITIAL_CONVERGENCE, type ConvergenceParams, type RoundResult } from '../../src/migration/convergence.ts';
import { EXTRAPOLATE_UP_TO, fitLine, MAX_DESTINATIONS, MAX_MARGIN, MIN_MARGIN, MIN_RATE_SAMPLE_BYTES, SAMPLES_KEPT, SwitchoverHistory } from '../../src/migration/switchover-history.ts';

const MB = 1_000_000;

describe('the switch-over history', () => {
  it('knows nothing before a stop-and-copy that moved at least a megabyte', () => {
    const h = new SwitchoverHistory();
    expect(h.estimate('ws://b none', 100_000, MB)).toBeUndefined();
    h.record('ws://b none', { bytes: MIN_RATE_SAMPLE_BYTES - 1, pauseMs: 1, sendMs: 2, roundRate: 100_000 });
    expect(h.estimate('ws://b none', 100_000, MB)).toBeUndefined();
    h.record('ws://b none', { bytes: 8 * MB, pauseMs: 3, sendMs: 10, roundRate: 400_000 });
    // One size only: all of the sending counted as rate (800 kB/ms = 2x its round's), the median
    // pause; both slowed by the margin for the stop-and-copy's own spread.
    const e = h.estimate('ws://b none', 400_000, MB)!;
    expect(e.rate).toBeCloseTo(800_000 / MIN_MARGIN, 6);
    expect(e.fixedMs).toBeCloseTo(2 * MIN_MARGIN, 9);
    expect(e).toMatchObject({ samples: 1, margin: MIN_MARGIN });
    expect(h.estimate('ws://b xbzrle', 400_000, MB)).toBeUndefined();
    expect(h.estimate('ws://c none', 400_000, MB)).toBeUndefined();
  });

  it('fits a fixed part and a rate through samples of different sizes', () => {
    // 20 ms to start, then 1 GB/s (1 MB per ms), as a pipeline that fills and then streams.
    expect(fitLine([[16 * MB, 36], [64 * MB, 84], [256 * MB, 276]])).toEqual({ msPerByte: 1 / MB, fixedMs: 20, sloped: true });
    // One odd sample does not move the median slope.
    const odd = fitLine([[16 * MB, 36], [64 * MB, 84], [256 * MB, 276], [32 * MB, 300]]);
    expect(odd.msPerByte).toBeCloseTo(1 / MB, 12);
    const h = new SwitchoverHistory();
    for (const [bytes, ms] of [[16 * MB, 36], [64 * MB, 84], [256 * MB, 276]] as const) h.record('k', { bytes, pauseMs: 1, sendMs: ms, roundRate: 400_000 });
    const e = h.estimate('k', 400_000, MB)!;
    expect(e.rate * MIN_MARGIN).toBeCloseTo(MB, 6); // 2.5x the round, and exactly the fitted rate
    expect(e.fixedMs / MIN_MARGIN).toBeCloseTo(21, 9); // the pause, then the pipeline's start
  });

  it('follows a slower link through the multiple (the lowest seen); samples of one size give no rate apart from it', () => {
    const h = new SwitchoverHistory();
    h.record('k', { bytes: 10 * MB, pauseMs: 0, sendMs: 10, roundRate: 500_000 }); // 1 MB/ms, 2x its round
    h.record('k', { bytes: 10 * MB, pauseMs: 0, sendMs: 20, roundRate: 200_000 }); // 0.5 MB/ms, 2.5x its round
    expect(fitLine([[10 * MB, 10], [10 * MB, 20]]).sloped).toBe(false);
    expect(h.estimate('k', 100_000, MB)!.rate * MIN_MARGIN).toBeCloseTo(200_000, 6); // the link is slower now: 2x
    // Faster: 2x would be 4 MB/ms, but no stop-and-copy there went faster than 1 MB/ms yet (the
    // downtime limit is a promise: a faster link shows in the next sample, not in a guess).
    expect(h.estimate('k', 2_000_000, MB)!.rate * MIN_MARGIN).toBeCloseTo(MB, 6);
    h.record('k', { bytes: 10 * MB, pauseMs: 0, sendMs: 2.5, roundRate: 2_000_000 }); // measured: 4 MB/ms
    expect(h.estimate('k', 2_000_000, MB)!.rate * MIN_MARGIN).toBeCloseTo(4_000_000, 6);
  });

  it('never expects more than the rate fitted through samples of several sizes', () => {
    const h = new SwitchoverHistory();
    h.record('k', { bytes: 10 * MB, pauseMs: 0, sendMs: 30, roundRate: 100_000 }); // 20 ms to start, then 1 MB/ms
    h.record('k', { bytes: 40 * MB, pauseMs: 0, sendMs: 60, roundRate: 400_000 });
    expect(h.estimate('k', 400_000, MB)!.rate * MIN_MARGIN).toBeCloseTo(MB, 6); // 2.5x the round, and the fitted rate
    expect(h.estimate('k', 2_000_000, MB)!.rate * MIN_MARGIN).toBeCloseTo(MB, 6); // not 5 MB/ms
  });

  it(`does not extrapolate beyond ${EXTRAPOLATE_UP_TO}x the largest size measured`, () => {
    const h = new SwitchoverHistory();
    h.record('k', { bytes: 10 * MB, pauseMs: 0, sendMs: 10, roundRate: 500_000 });
    h.record('k', { bytes: MB / 2, pauseMs: 0, sendMs: 1, roundRate: 500_000 }); // too small to time a rate
    expect(h.measuredUpTo('k')).toBe(10 * MB);
    expect(h.estimate('k', 500_000, 15 * MB)).toBeDefined();
    expect(h.estimate('k', 500_000, 15 * MB + 1)).toBeUndefined();
    expect(h.measuredUpTo('nothing')).toBe(0);
  });

  it('widens the margin where a measured estimate was beaten by more, up to a bound', () => {
    const h = new SwitchoverHistory();
    h.record('k', { bytes: 10 * MB, pauseMs: 1, sendMs: 19, roundRate: 500_000, expectedMs: 16 }); // beaten by 1.25x: no wider
    expect(h.estimate('k', 500_000, MB)!.margin).toBe(MIN_MARGIN);
    h.record('k', { bytes: 10 * MB, pauseMs: 1, sendMs: 19, roundRate: 500_000, expectedMs: 10 }); // took 20 ms: 2x
    expect(h.estimate('k', 500_000, MB)!.margin).toBeCloseTo(2, 9);
    h.record('k', { bytes: 10 * MB, pauseMs: 1, sendMs: 99, roundRate: 500_000, expectedMs: 10 }); // 10x: bounded
    expect(h.estimate('k', 500_000, MB)!.margin).toBe(MAX_MARGIN);
    h.record('k', { bytes: 10 * MB, pauseMs: 1, sendMs: 19, roundRate: 500_000, expectedMs: NaN }); // refused
    expect(h.estimate('k', 500_000, MB)!.samples).toBe(3);
  });

  it(`keeps the last ${SAMPLES_KEPT} samples per key and ${MAX_DESTINATIONS} keys, and ignores nonsense`, () => {
    const h = new SwitchoverHistory();
    for (let i = 0; i < SAMPLES_KEPT; i++) h.record('k', { bytes: 10 * MB, pauseMs: 0, sendMs: 100, roundRate: 100_000 });
    for (let i = 0; i < SAMPLES_KEPT; i++) h.record('k', { bytes: 10 * MB, pauseMs: 0, sendMs: 10, roundRate: 100_000 });
    expect(h.estimate('k', 100_000, MB)!.rate * MIN_MARGIN).toBeCloseTo(MB, 6); // the slow ones are gone
    for (const bad of [NaN, -1, Infinity]) h.record('k', { bytes: 10 * MB, pauseMs: 0, sendMs: bad, roundRate: 100_000 });
    h.record('k', { bytes: 10 * MB, pauseMs: 0, sendMs: 10, roundRate: 0 });
    expect(h.estimate('k', 100_000, MB)!.rate * MIN_MARGIN).toBeCloseTo(MB, 6);
    expect(h.estimate('k', 100_000, MB)).toMatchObject({ fixedMs: 0, samples: SAMPLES_KEPT });
    for (let d = 0; d < MAX_DESTINATIONS; d++) h.record(`d${d}`, { bytes: 10 * MB, pauseMs: 0, sendMs: 10, roundRate: 100_000 });
    expect(h.estimate('k', 100_000, MB)).toBeUndefined(); // the least recently used went first
    expect(h.estimate('d0', 100_000, MB)).toBeDefined();
  });
});

describe('the expected downtime at the measured stop-and-copy rate', () => {
  const p: ConvergenceParams = { mode: 'precopy', downtimeLimitMs: 100, maxRounds: 30, autoConverge: false, postcopyAfterRounds: 30, switchoverAtMaxRounds: false };
  // A round of 100 MB in 1 s (100 kB/ms) left 15 MB dirty: 150 ms at that rate.
  const r: RoundResult = { rounds: 1, bytes: 100 * MB, ms: 1000, rttMs: 0, dirtyBytes: 15 * MB, stateBytes: 0, stopped: false, postcopyRequested: false };

  it('switches over where the last round\'s rate alone would have sent another round', () => {
    expect(expectedDowntimeMs(r)).toBeCloseTo(150, 6);
    expect(decide(p, INITIAL_CONVERGENCE, r).decision.next).toBe('round');
    const measured = { ...r, switchover: { rate: 250_000, fixedMs: 2 } }; // 2.5x the round, as loopback measures
    expect(expectedDowntimeMs(measured)).toBeCloseTo(62, 6);
    expect(decide(p, INITIAL_CONVERGENCE, measured).decision).toEqual({ next: 'stop-and-copy', reason: 'converged: expected downtime 62 ms, limit 100 ms' });
  });

  it('never expects less than the pause and a round trip', () => {
    expect(expectedDowntimeMs({ ...r, dirtyBytes: 0, rttMs: 20, switchover: { rate: 1e9, fixedMs: 3 } })).toBeCloseTo(23, 6);
  });
});
