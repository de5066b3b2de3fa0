// Pre-copy page encoding chosen by 'auto' (issue 12, point 3): on a link slower than the page
// pool, XBZRLE and LZ4 turn on by themselves and a working set that plain pre-copy cannot move
// within the downtime limit converges. The choice compares measured rates (the link's, the
// pool's), so this file runs alone, after the suite (vitest.config.ts): with other test files
// loading both cores the pool measured 14 MB/s once and 'auto' rightly kept plain frames.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { closeEncodePool } from '../../src/migration/encode-pool.ts';
import { MiB } from '../support/helpers.ts';
import { hostTracker, migrateAndCompare, type GuestSpec } from '../support/migration-helpers.ts';

const hosts = hostTracker();

afterEach(async () => {
  await hosts.cleanup();
});
afterAll(async () => {
  await closeEncodePool();
});

describe("'auto' on a link slower than the pool", () => {
  it('turns XBZRLE and LZ4 on after the first round, and a working set plain pre-copy cannot move within the limit converges', async () => {
    // 32 MiB rewritten for ever over 16 MiB/s: plain, every round leaves 32 MiB dirty, 2 s of
    // sending against a 300 ms limit (bench/migration.ts shows plain pre-copy give up on it).
    const g: GuestSpec = { program: 'memstress', memory: 64 * MiB, args: ['ws_mib=32'], insnLimit: 3_000_000_000 };
    const s = await migrateAndCompare(hosts, g, 'capped', { maxBandwidth: 16 * MiB }, 0.1);
    console.log(`encoding auto: ${s.encoding} (${s['encoding-reason']}), ${s['dirty-sync-count']} rounds, downtime ${s['downtime-ms']} ms, `
      + `xbzrle ${s['xbzrle-pages']} pages, cache ${s['xbzrle-cache-bytes']} bytes, ${s['transferred-bytes']} bytes`);
    expect(s.encoding).toBe('xbzrle+lz4');
    expect(s['encoding-reason']).toMatch(/^auto: the link \(\d+ MB\/s\) is the bottleneck/);
    expect(s.rounds[0]!['expected-downtime-ms']).toBeGreaterThan(1000); // plain: out of reach
    expect(s['downtime-ms']).toBeLessThanOrEqual(300);
    expect(s['xbzrle-cache-bytes']).toBeGreaterThanOrEqual(32 * MiB);
    expect(s['transferred-bytes']).toBeLessThan(40 * MiB); // the set once, then deltas
    // The cap holds on the wire, encoded frames included.
    expect(s['transferred-bytes'] / ((s['total-time-ms'] - s['setup-time-ms']) / 1000)).toBeLessThan(16 * MiB * 1.1);
  }, 120_000);
});
