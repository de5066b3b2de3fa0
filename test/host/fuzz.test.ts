// A short fixed-seed fuzz pass against a real host (fuzz/): host B runs VMs and receives a
// post-copy migration from host A, and a few thousand structure-aware hostile frames hit its
// /control and /migrate endpoints, without and with a cluster token. Nothing may crash or hang,
// the fixture's VMs and the post-copy must be fine afterwards, and descriptors and RSS must come
// back within the fuzzer's thresholds. FERRY_FUZZ_ROOT runs the hosts from another checkout.
import { describe, expect, it } from 'vitest';
import { runFuzz, summary, type FuzzReport } from '../../fuzz/index.ts';

const ROOT = process.env.FERRY_FUZZ_ROOT;

function pass(token: boolean): Promise<FuzzReport> {
  return runFuzz({
    seed: token ? 0xfe22_0002 : 0xfe22_0001,
    frames: 4000,
    token,
    warmupFrames: 1500,
    settleMs: 12_000,
    // One crash is enough to fail; a second fixture shows whether it was a fluke.
    maxRestarts: 1,
    // A wedged host does not answer in 10 s either; a loaded CI machine may well take over 2 s.
    hangMs: 10_000,
    ...(ROOT !== undefined ? { root: ROOT } : {}),
  });
}

function check(r: FuzzReport): void {
  const why = `\n${summary(r)}\n`;
  expect(r.crashes.map((c) => `${c.description} (case ${c.case}, ${c.strategy})`), why).toEqual([]);
  expect(r.hangs.map((h) => h.description), why).toEqual([]);
  expect(r.fixtureProblems, why).toEqual([]);
  expect(r.vms.problems, why).toEqual([]);
  expect(r.postcopy.problems, why).toEqual([]);
  expect(r.framesSent, why).toBeGreaterThanOrEqual(4000);
  expect(r.resources.fdGrowth, why).not.toBeNull();
  expect(r.resources.fdGrowth!, why).toBeLessThanOrEqual(r.resources.thresholds.fds);
  expect(r.resources.rssGrowthMiB, why).not.toBeNull();
  expect(r.resources.rssGrowthMiB!, why).toBeLessThanOrEqual(r.resources.thresholds.rssMiB);
  expect(r.failures, why).toEqual([]);
}

describe('fuzzing a host with VMs and a post-copy in flight', () => {
  it('survives a fixed-seed pass without a token', async () => {
    check(await pass(false));
  }, 120_000);

  it('survives a fixed-seed pass with a token (unauthenticated and authenticated surfaces)', async () => {
    check(await pass(true));
  }, 120_000);
});
