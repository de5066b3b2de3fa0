// Two machines on one box (issue 11's test bed): host A and host B each in its own network
// namespace, bound to its own addresses, migrating over a veth pair with mutual TLS (certificates
// from scripts/make-certs.sh). Every mode reaches the unmigrated digest across the namespaces, and
// a post-copy survives the migration link being taken down and up again (a pulled cable).
// Skips, saying why, where namespaces cannot be made (not root, no `ip`) or openssl is missing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MigrationInfo } from '../../src/migration/stats.ts';
import { ControlClient } from '../../src/wire/control-client.ts';
import { eventually, MiB, sleep } from '../support/helpers.ts';
import { createParams, finalDigest, migrate, oracleDigest, waitInstret, type GuestSpec } from '../support/migration-helpers.ts';
import { createTestbed, netnsUnavailable, opensslMissing, setLink, startTlsHosts, stopHostIn, type Testbed } from '../support/netns.ts';

const why = netnsUnavailable() ?? opensslMissing();
if (why) console.warn(`two-machines.test.ts: SKIPPED, ${why}`);

const PORT = 7400;
const GUEST: GuestSpec = { program: 'memstress', memory: 32 * MiB, args: ['ws_mib=4'], insnLimit: 400_000_000 };
let bed: Testbed | undefined;
let dir = '';
let ca: ControlClient;
let cb: ControlClient;

beforeAll(async () => {
  if (why) return;
  bed = await createTestbed();
  dir = mkdtempSync(join(tmpdir(), 'ferry-2m-'));
  ({ ca, cb } = await startTlsHosts(bed, dir, PORT, 'two-machines'));
}, 60_000);

afterAll(async () => {
  await ca?.close().catch(() => undefined);
  await cb?.close().catch(() => undefined);
  if (bed) {
    await Promise.all([stopHostIn(bed.a), stopHostIn(bed.b)]);
    await bed.teardown();
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 30_000);

/**
 * The guest running on A (paused with `paused`), and its oracle. The oracle is computed first: an
 * async function returning the pending oracle would wait for it (a returned promise is adopted),
 * long enough for the guest to halt before it is migrated.
 */
async function runningOnA(name: string, paused = false): Promise<{ oracle: string }> {
  const oracle = await oracleDigest(GUEST);
  await ca.request('vm.create', createParams(name, GUEST));
  await waitInstret(ca, name, 30_000_000);
  if (paused) await ca.request('vm.pause', { name });
  return { oracle };
}

describe.skipIf(why !== undefined)('two hosts in two network namespaces, over mutual TLS', () => {
  const to = () => `wss://${bed!.b.linkAddr}:${PORT}`;

  it.each([
    ['precopy', {}],
    ['cold', { mode: 'cold' }],
    ['postcopy', { mode: 'postcopy' }],
    ['hybrid', { mode: 'hybrid', postcopyAfterRounds: 1 }],
  ] as const)('%s reaches the unmigrated digest across the namespaces', async (mode, params) => {
    const name = `m-${mode}`;
    const { oracle } = await runningOnA(name, mode === 'cold');
    const s = await migrate(ca, name, { to: to(), ...params }, 60_000);
    expect(s.status, s['error-desc']).toBe('completed');
    expect(s.peer).toBe(to());
    if (mode === 'cold') await cb.request('vm.resume', { name });
    expect(await finalDigest(cb, name, 60_000)).toBe(oracle);
    await cb.request('vm.destroy', { name });
  }, 90_000);

  it('post-copy with the migration link taken down and up again: both sides pause, recover, and reach the digest', async () => {
    const name = 'm-cut';
    const { oracle } = await runningOnA(name);
    await ca.request('migrate.start', { name, to: to(), mode: 'postcopy', pushDelayMs: 500 });
    await eventually(async () => ((await ca.request<MigrationInfo>('migrate.status', { name })).status === 'postcopy-active' ? true : undefined), 'post-copy to start', 20_000);
    setLink(bed!.a.ns, bed!.linkDev.a, false);
    // Nothing closes a pulled cable: each side notices the silence (5 s) and pauses.
    await eventually(async () => ((await ca.request<MigrationInfo>('migrate.status', { name })).status === 'postcopy-paused' ? true : undefined), 'the source to pause', 20_000);
    await eventually(async () => ((await cb.request<MigrationInfo>('migrate.status', { name })).status === 'postcopy-paused' ? true : undefined), 'the destination to pause', 20_000);
    await sleep(500);
    setLink(bed!.a.ns, bed!.linkDev.a, true);
    const end = await eventually(async () => {
      const s = await ca.request<MigrationInfo>('migrate.status', { name });
      return s.status === 'completed' || s.status === 'failed' ? s : undefined;
    }, 'the migration to end', 40_000);
    expect(end.status, end['error-desc']).toBe('completed');
    expect(end['postcopy-recoveries']).toBeGreaterThanOrEqual(1);
    expect(await finalDigest(cb, name, 60_000)).toBe(oracle);
  }, 90_000);
});
