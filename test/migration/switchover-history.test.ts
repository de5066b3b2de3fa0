import { describe, expect, it } from 'vitest';
import { MIN_RATE_SAMPLE_BYTES, SwitchoverHistory } from '../../src/migration/switchover-history.ts';

const MB = 1_000_000;

describe('SwitchoverHistory: a line fitted to the stop-and-copies to each destination', () => {
  it('has no estimate until two stop-and-copies of 4 MiB or more, half again apart in size, went there', () => {
    const h = new SwitchoverHistory();
    expect(h.estimate('ws://b')).toBeUndefined();
    h.record('ws://b', { bytes: 16_384, downtimeMs: 1.5 }); // an idle VM: not a sample
    h.record('ws://b', { bytes: 17 * MB, downtimeMs: 44 });
    expect(h.estimate('ws://b')).toBeUndefined();
    h.record('ws://b', { bytes: 20 * MB, downtimeMs: 50 }); // too close in size to fit a line
    expect(h.estimate('ws://b')).toBeUndefined();
    h.record('ws://b', { bytes: 67 * MB, downtimeMs: 97 });
    expect(h.estimate('ws://b')).toBeDefined();
    expect(h.estimate('ws://c')).toBeUndefined();
  });

  it('fits fixed cost and rate by least squares: big stop-and-copies move more per millisecond than small ones', () => {
    const h = new SwitchoverHistory();
    // Exactly on the line downtime = 20 ms + bytes / (1 GB/s).
    for (const mb of [16, 64, 48]) h.record('ws://b', { bytes: mb * MB, downtimeMs: 20 + mb });
    const e = h.estimate('ws://b')!;
    expect(e.bytesPerMs).toBeCloseTo(1 * MB, 3);
    expect(e.fixedMs).toBeCloseTo(20, 6);
    expect(e.samples).toBe(3);
    // 256 MB is expected at 276 ms, where the slowest sample's rate (16 MB in 36 ms) would say 576.
    expect(e.fixedMs + (256 * MB) / e.bytesPerMs).toBeCloseTo(276, 6);
  });

  it('keeps the last five, and believes no fit whose rate does not rise with size or passes 20 GB/s', () => {
    const h = new SwitchoverHistory();
    h.record('ws://b', { bytes: 10 * MB, downtimeMs: 50 });
    h.record('ws://b', { bytes: 40 * MB, downtimeMs: 40 }); // bigger, yet faster: noise
    expect(h.estimate('ws://b')).toBeUndefined();
    for (let i = 0; i < 5; i++) h.record('ws://b', { bytes: (10 + 10 * i) * MB, downtimeMs: 5 + 10 * i });
    expect(h.estimate('ws://b')!.samples).toBe(5);
    const flat = new SwitchoverHistory();
    flat.record('ws://b', { bytes: MIN_RATE_SAMPLE_BYTES, downtimeMs: 10 });
    flat.record('ws://b', { bytes: 10 * MIN_RATE_SAMPLE_BYTES, downtimeMs: 10.0001 }); // 377 GB/s
    expect(flat.estimate('ws://b')).toBeUndefined();
    const bad = new SwitchoverHistory();
    bad.record('ws://b', { bytes: 10 * MB, downtimeMs: Number.NaN });
    bad.record('ws://b', { bytes: 40 * MB, downtimeMs: -1 });
    expect(bad.estimate('ws://b')).toBeUndefined();
  });
});
