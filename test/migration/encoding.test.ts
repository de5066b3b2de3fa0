// Pre-copy with page encoding (issue 12, point 3): re-sent pages as XBZRLE deltas against the
// version sent before, and frames compressed with LZ4, built on the page pool. Forced on, each
// alone and together, a migrated deterministic guest reaches the unmigrated digest (the deltas
// apply to exactly the versions the destination holds). 'auto' on a slow link: encoding-auto.test.ts.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { closeEncodePool } from '../../src/migration/encode-pool.ts';
import { MiB } from '../support/helpers.ts';
import { hostTracker, migrateAndCompare as migrateAndCompareOn, type GuestSpec, type Info } from '../support/migration-helpers.ts';

const hosts = hostTracker();
const migrateAndCompare = (g: GuestSpec, name: string, params: Info, at?: number) => migrateAndCompareOn(hosts, g, name, params, at);

afterEach(async () => {
  await hosts.cleanup();
});
afterAll(async () => {
  await closeEncodePool();
});

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
