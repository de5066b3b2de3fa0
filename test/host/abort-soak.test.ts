// Leak-free aborts: a few hundred incoming migrations aborted at setup, after page frames, at a
// garbage state section and after a post-copy advice, against one host process. Its open
// descriptors come back to where they started and its resident memory stays at its working
// size (bench/abort-soak.ts runs thousands). FERRY_FUZZ_ROOT runs the host from another checkout.
import { describe, expect, it } from 'vitest';
import { runAbortSoak } from '../../fuzz/soak.ts';

describe('aborted incoming migrations leak nothing', () => {
  it('300 aborts of 16 MiB VMs, four ways: descriptors back to baseline, resident memory flat after warm-up', async () => {
    const r = await runAbortSoak({ aborts: 300, ...(process.env.FERRY_FUZZ_ROOT ? { root: process.env.FERRY_FUZZ_ROOT } : {}) });
    const why = JSON.stringify({ baseline: r.baseline, warm: r.warm, end: r.end, peak: r.peak, samples: r.samples.map((s) => [s.aborts, s.rssMiB, s.fds]) });
    expect(r.unexpected, why).toEqual([]);
    expect(r.kinds).toEqual({ setup: 75, frames: 75, state: 75, advised: 75 });
    expect(r.fdGrowth, why).toBeLessThanOrEqual(2);
    // 300 x 16 MiB of guest RAM went through the host (75 x 4 MiB written): a leak of a tenth of it shows.
    expect(r.rssGrowthMiB, why).toBeLessThanOrEqual(64);
    expect(r.peak.rssMiB - r.baseline.rssMiB, why).toBeLessThanOrEqual(256);
  }, 120_000);
});
