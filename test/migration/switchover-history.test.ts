import { describe, expect, it } from 'vitest';
import { MIN_RATE_SAMPLE_BYTES, SwitchoverHistory } from '../../src/migration/switchover-history.ts';

const MB = 1_000_000;

describe('SwitchoverHistory: what stop-and-copies to each destination measured', () => {
  it('knows nothing of a destination until a stop-and-copy big enough to time its rate went there', () => {
    const h = new SwitchoverHistory();
    expect(h.estimate('ws://b')).toBeUndefined();
    h.record('ws://b', { bytes: 16_384, sendMs: 0.1, fixedMs: 1.5 }); // an idle VM: fixed cost only
    expect(h.estimate('ws://b')).toBeUndefined();
    h.record('ws://b', { bytes: MIN_RATE_SAMPLE_BYTES, sendMs: 4, fixedMs: 2.5 });
    expect(h.estimate('ws://b')).toEqual({ bytesPerMs: MIN_RATE_SAMPLE_BYTES / 4, fixedMs: 2.5, samples: 1 });
    expect(h.estimate('ws://c')).toBeUndefined();
  });

  it('takes the slowest of the last three rates and the median fixed cost of the last five', () => {
    const h = new SwitchoverHistory();
    const rates = [50, 900, 700, 1100, 800]; // bytes per ms ÷ 1000 (MB/s): the slow first one ages out
    rates.forEach((r, i) => h.record('ws://b', { bytes: 100 * MB, sendMs: (100 * MB) / (r * 1000), fixedMs: [9, 1, 2, 3, 8][i]! }));
    const e = h.estimate('ws://b')!;
    expect(e.bytesPerMs).toBeCloseTo(700 * 1000, 6);
    expect(e.fixedMs).toBe(3);
    expect(e.samples).toBe(3);
    h.record('ws://b', { bytes: 100 * MB, sendMs: 100, fixedMs: 4 }); // 1 GB/s: 700 MB/s ages out, 800 is the slowest left
    expect(h.estimate('ws://b')!.bytesPerMs).toBeCloseTo(800 * 1000, 6);
  });

  it('ignores a sample that is not a measurement (negative or NaN)', () => {
    const h = new SwitchoverHistory();
    h.record('ws://b', { bytes: 100 * MB, sendMs: Number.NaN, fixedMs: 1 });
    h.record('ws://b', { bytes: 100 * MB, sendMs: 10, fixedMs: -1 });
    expect(h.estimate('ws://b')).toBeUndefined();
  });
});
