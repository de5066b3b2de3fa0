// Pre-copy with page encoding (issue 12, point 3): re-sent pages as XBZRLE deltas against the
// version sent before, and frames compressed with LZ4, built on the page pool. Forced on, each
// alone and together, a migrated deterministic guest reaches the unmigrated digest (the deltas
// apply to exactly the versions the destination holds); on a link slower than the pool, 'auto'
// turns both on by itself and a working set that plain pre-copy cannot move within the downtime
// limit converges.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { closeEncodePool } from '../../src/migration/encode-pool.ts';
import type { MigrationInfo } from '../../src/migration/stats.ts';
import { MiB } from '../support/helpers.ts';
import { finalDigest, guestRunningOnA, hostTracker, migrate, oracleDigest, type GuestSpec, type Info } from '../support/migration-helpers.ts';

const hosts = hostTracker();

afterEach(async () => {
  await hosts.cleanup();
});
afterAll(async () => {
  await closeEncodePool();
});

/** Migrates `g` from A to B by pre-copy with `params` at `at` of its run; B must reach the unmigrated digest. */
async function migrateAndCompare(g: GuestSpec, name: string, params: Info, at = 0.3): Promise<MigrationInfo> {
  const oracle = oracleDigest(g);
  const { b, ca, cb } = await guestRunningOnA(hosts, g, name, at);
  const s = await migrate(ca, name, { to: b.url, ...params }, 60_000);
  expect(s.status).toBe('completed');
  expect(await finalDigest(cb, name, 60_000)).toBe(await oracle);
  return s;
}

const MEM16: GuestSpec = { program: 'memstress', memory: 32 * MiB, args: ['ws_mib=16'], insnLimit: 300_000_000 };
/** A guest whose pages hold real data that changes in place (the board of Conway's life). */
const LIFE: GuestSpec = { program: 'life', memory: 16 * MiB, args: [], insnLimit: 200_000_000 };

describe('pre-copy with forced page encoding reaches the unmigrated digest', () => {
  it('XBZRLE and LZ4 (memstress: every page re-sent each round, one byte changed): deltas carry the re-sent pages', async () => {
    // Capped, so the guest dirties its set again during the first round: the stop-and-copy re-sends it.
    const s = await migrateAndCompare(MEM16, 'both', { xbzrle: 'on', compress: 'on', maxBandwidth: 64 * MiB, maxRounds: 6 });
    console.log(`encoding both: ${s.encoding}, ${s['dirty-sync-count']} rounds, xbzrle ${s['xbzrle-pages']} pages (${s['xbzrle-cache-miss']} misses), `
      + `${s['encoded-wire-bytes']} of ${s['encoded-raw-bytes']} bytes, downtime ${s['downtime-ms']} ms`);
    expect(s.encoding).toBe('xbzrle+lz4');
    expect(s['encoding-reason']).toBe('forced');
    expect(s['xbzrle-pages']).toBeGreaterThan(0);
    expect(s['encoded-wire-bytes']!).toBeLessThan(s['encoded-raw-bytes']! / 10);
  }, 90_000);

  it('XBZRLE alone, its cache three quarters of the working set (a third of the pages evict each other from their slots)', async () => {
    const s = await migrateAndCompare(MEM16, 'xbz', { xbzrle: 'on', compress: 'off', maxBandwidth: 64 * MiB, maxRounds: 6, xbzrleCacheBytes: 12 * MiB });
    expect(s.encoding).toBe('xbzrle');
    expect(s['xbzrle-cache-bytes']).toBe(12 * MiB);
    expect(s['xbzrle-pages']).toBeGreaterThan(0);
    expect(s['xbzrle-cache-miss']).toBeGreaterThan(16 * 256); // more than the first sending of the set
  }, 90_000);

  it('LZ4 alone', async () => {
    const s = await migrateAndCompare(MEM16, 'lz4', { xbzrle: 'off', compress: 'on' });
    expect(s.encoding).toBe('lz4');
    expect(s['xbzrle-pages']).toBeUndefined();
    expect(s['encoded-wire-bytes']!).toBeLessThan(s['encoded-raw-bytes']!);
  }, 90_000);

  it('a guest whose pages change in place (life), with XBZRLE and LZ4', async () => {
    const s = await migrateAndCompare(LIFE, 'life', { xbzrle: 'on', compress: 'on', maxBandwidth: 16 * MiB, maxRounds: 6 });
    expect(s.encoding).toBe('xbzrle+lz4');
  }, 90_000);

  it('off: plain frames', async () => {
    const s = await migrateAndCompare(MEM16, 'plain', { xbzrle: 'off', compress: 'off' });
    expect(s.encoding).toBe('none');
    expect(s['encoded-raw-bytes']).toBeUndefined();
  }, 90_000);
});

describe("'auto' on a link slower than the pool", () => {
  it('turns XBZRLE and LZ4 on after the first round, and a working set plain pre-copy cannot move within the limit converges', async () => {
    // 32 MiB rewritten for ever over 16 MiB/s: plain, every round leaves 32 MiB dirty, 2 s of
    // sending against a 300 ms limit (bench/migration.ts shows plain pre-copy give up on it).
    const g: GuestSpec = { program: 'memstress', memory: 64 * MiB, args: ['ws_mib=32'], insnLimit: 3_000_000_000 };
    const s = await migrateAndCompare(g, 'capped', { maxBandwidth: 16 * MiB }, 0.1);
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
