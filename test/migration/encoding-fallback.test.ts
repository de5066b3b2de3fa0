// Page encoding when its pool cannot start (here: the directory its threads' code is written to
// cannot be made, as on a host with a read-only or missing temporary directory). 'auto' says so
// and migrates with plain frames; forced on, the migration fails with EPOOL and the guest runs on
// at the source. Its own file: the pool is per process, and this one must never have started.
import { afterEach, describe, expect, it } from 'vitest';
import { MiB } from '../support/helpers.ts';
import { finalDigest, guestRunningOnA, hostTracker, migrate, oracleDigest, type GuestSpec } from '../support/migration-helpers.ts';

const hosts = hostTracker();
const TMPDIR = process.env.TMPDIR;

afterEach(async () => {
  if (TMPDIR === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = TMPDIR;
  await hosts.cleanup();
});

/** From here on os.tmpdir() is a path under a file: nothing can be made there. */
function breakTmpdir(): void {
  process.env.TMPDIR = '/dev/null/ferry-no-tmp';
}

const G: GuestSpec = { program: 'memstress', memory: 64 * MiB, args: ['ws_mib=32'], insnLimit: 3_000_000_000 };

describe('no page-encoding pool', () => {
  it("'auto' on a slow link: plain frames, the reason in the statistics, and the unmigrated digest", async () => {
    const oracle = oracleDigest(G);
    const { b, ca, cb } = await guestRunningOnA(hosts, G, 'nopool', 0.1);
    breakTmpdir();
    const s = await migrate(ca, 'nopool', { to: b.url, maxBandwidth: 16 * MiB, downtimeLimitMs: 300, maxRounds: 2, switchoverAtMaxRounds: true }, 60_000);
    expect(s.status, s['error-desc']).toBe('completed');
    expect(s.encoding).toBe('none');
    expect(s['encoding-reason']).toMatch(/^auto: page encoding failed: .*: plain frames$/);
    expect(s['encoded-raw-bytes']).toBeUndefined();
    expect(await finalDigest(cb, 'nopool', 60_000)).toBe(await oracle);
  }, 120_000);

  it('forced on: the migration fails with EPOOL, and the guest runs on at the source', async () => {
    const { b, ca } = await guestRunningOnA(hosts, { ...G, insnLimit: 0 }, 'forced', 0);
    breakTmpdir();
    const s = await migrate(ca, 'forced', { to: b.url, xbzrle: 'on', compress: 'on' }, 60_000);
    expect(s.status).toBe('failed');
    expect(s['error-code']).toBe('EPOOL');
    expect(s['error-desc']).toMatch(/^page encoding failed: /);
    expect((await ca.request<{ state: string }>('vm.info', { name: 'forced' })).state).toBe('running');
  }, 120_000);
});
