// Post-copy recovery (DESIGN §5): a link lost after the switch-over pauses both hosts, each
// keeping its state; a new link (automatic retry, or `migrate recover`) carries the
// destination's received-page bitmap, the source sends what never arrived, and the guest
// reaches exactly the digest of an unmigrated run. Links are cut by a TCP proxy in between.
import { afterEach, describe, expect, it } from 'vitest';
import type { ControlClient } from '../../src/wire/control-client.ts';
import type { MigrationInfo, MigrationStatus } from '../../src/migration/stats.ts';
import { MiB } from '../support/helpers.ts';
import { type LinkProxy, startLinkProxy } from '../support/link-proxy.ts';
import {
  createParams, finalDigest, guestRunningOnA, hostTracker, type GuestSpec, incomingDone, oracleDigest, waitInfo, waitInstret, waitMigrationEnd,
} from '../support/migration-helpers.ts';

const hosts = hostTracker();
const proxies: LinkProxy[] = [];
afterEach(async () => {
  await hosts.cleanup();
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

const MEM8: GuestSpec = { program: 'memstress', memory: 32 * MiB, args: ['ws_mib=8'], insnLimit: 200_000_000 };
const MEM64: GuestSpec = { program: 'memstress', memory: 128 * MiB, args: ['ws_mib=64'], insnLimit: 300_000_000 };

async function statusOf(c: ControlClient, name: string): Promise<MigrationInfo> {
  return c.request<MigrationInfo>('migrate.status', { name });
}

async function waitStatus(c: ControlClient, name: string, pred: (s: MigrationInfo) => boolean, what: string, timeoutMs = 20_000): Promise<MigrationInfo> {
  const t0 = Date.now();
  for (;;) {
    const s = await statusOf(c, name).catch(() => undefined);
    if (s && pred(s)) return s;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${name}: no ${what} within ${timeoutMs} ms (status ${s?.status})`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const is = (...st: MigrationStatus[]) => (s: MigrationInfo) => st.includes(s.status);

/**
 * Two hosts with a cuttable proxy in front of b, a guest started on a and run to `at` of its
 * instructions; `migrate(params)` starts its migration through the proxy and resolves at its end.
 */
async function setup(g: GuestSpec, name: string, at: number) {
  const oracle = oracleDigest(g);
  const { a, b, ca, cb } = await guestRunningOnA(hosts, g, name, at);
  const proxy = await startLinkProxy(b.url);
  proxies.push(proxy);
  const migrate = async (params: Record<string, unknown>): Promise<{ end: Promise<MigrationInfo> }> => {
    const end = waitMigrationEnd(ca, name, 60_000).promise;
    await ca.request('migrate.start', { name, to: proxy.url, ...params });
    return { end };
  };
  return { a, b, ca, cb, proxy, oracle, migrate };
}

/** Both sides completed, every page arrived once, and the guest ends on b with the oracle digest. */
async function expectRecovered(
  ca: ControlClient, cb: ControlClient, name: string, end: Promise<MigrationInfo>, oracle: Promise<string>, minRecoveries = 1,
): Promise<{ out: MigrationInfo; inc: MigrationInfo }> {
  const out = await end;
  expect(out.status, out['error-desc']).toBe('completed');
  const inc = await incomingDone(cb, name);
  expect(inc.status, inc['error-desc']).toBe('completed');
  expect(out['postcopy-recoveries']).toBeGreaterThanOrEqual(minRecoveries);
  expect(inc['postcopy-recoveries']).toBeGreaterThanOrEqual(minRecoveries);
  // The destination filled each page it lacked exactly once: nothing lost, nothing torn.
  expect(inc['pages-sent']).toBe(out['touched-pages']);
  // The source sent each page once, plus at most the ones a cut swallowed.
  expect(out['pages-sent']).toBeLessThanOrEqual(out['touched-pages']! + (out['postcopy-resent-pages'] ?? 0));
  await expect(ca.request('vm.info', { name })).rejects.toMatchObject({ code: 'ENOVM' });
  await waitInfo(cb, name, (i) => i.migrating !== true, 'settled on the destination');
  expect(await finalDigest(cb, name)).toBe(await oracle);
  return { out, inc };
}

describe('post-copy recovers a lost link and reaches the unmigrated digest', () => {
  it('migrate.pause, then migrate.recover (as QEMU migrate-pause / migrate-recover), during demand paging', async () => {
    const { ca, cb, oracle, migrate } = await setup(MEM8, 'rc-pause', 0.3);
    const { end } = await migrate({ mode: 'postcopy', pushDelayMs: 400 });
    await waitStatus(ca, 'rc-pause', is('postcopy-active'), 'postcopy-active');
    await waitStatus(cb, 'rc-pause', (s) => s['postcopy-requests'] > 0, 'a fault');
    const paused = await ca.request<MigrationInfo>('migrate.pause', { name: 'rc-pause' });
    expect(paused.status).toBe('postcopy-active');
    await waitStatus(ca, 'rc-pause', is('postcopy-paused'), 'postcopy-paused at the source');
    await waitStatus(cb, 'rc-pause', is('postcopy-paused'), 'postcopy-paused at the destination');
    // Paused by command: no automatic retry.
    await new Promise((r) => setTimeout(r, 300));
    expect((await statusOf(ca, 'rc-pause')).status).toBe('postcopy-paused');
    // recover is for the source host; paused twice is refused.
    await expect(cb.request('migrate.recover', { name: 'rc-pause' })).rejects.toMatchObject({ code: 'ENOMIGRATION', message: /source host/ });
    await expect(ca.request('migrate.pause', { name: 'rc-pause' })).rejects.toMatchObject({ code: 'ESTATE' });
    await ca.request('migrate.recover', { name: 'rc-pause' });
    const { out } = await expectRecovered(ca, cb, 'rc-pause', end, oracle);
    expect(out['postcopy-recoveries']).toBe(1);
  });

  it('the link cut during demand paging, recovered by the automatic retry', async () => {
    const { ca, cb, proxy, oracle, migrate } = await setup(MEM8, 'rc-demand', 0.5);
    const { end } = await migrate({ mode: 'postcopy', pushDelayMs: 500 });
    await waitStatus(cb, 'rc-demand', (s) => s.status === 'postcopy-active' && s['postcopy-requests'] > 20, 'faults');
    proxy.cut();
    await expectRecovered(ca, cb, 'rc-demand', end, oracle);
  });

  it('the link cut twice during the background push (64 MiB working set), pages in flight sent again', async () => {
    const { ca, cb, proxy, oracle, migrate } = await setup(MEM64, 'rc-push', 0.3);
    // Capped so the push lasts long enough (about 2 s) to be cut twice.
    const { end } = await migrate({ mode: 'postcopy', maxBandwidth: 40_000_000 });
    await waitStatus(ca, 'rc-push', (s) => s.status === 'postcopy-active' && s['postcopy-bytes'] > 8 * MiB, '8 MiB pushed');
    proxy.cut();
    await waitStatus(ca, 'rc-push', (s) => s.status === 'postcopy-active' && (s['postcopy-recoveries'] ?? 0) >= 1 && s['postcopy-bytes'] > 24 * MiB, 'a recovery and 24 MiB pushed');
    proxy.cut();
    const { out } = await expectRecovered(ca, cb, 'rc-push', end, oracle, 2);
    expect(out['postcopy-paused-ms']).toBeGreaterThan(0);
  });

  it('a link that stays down: both sides stay paused with their state until migrate.recover, then complete', async () => {
    const { ca, cb, proxy, oracle, migrate } = await setup(MEM8, 'rc-down', 0.3);
    const { end } = await migrate({ mode: 'postcopy', pushDelayMs: 300, autoRecover: false });
    await waitStatus(ca, 'rc-down', is('postcopy-active'), 'postcopy-active');
    proxy.cut({ down: true });
    await waitStatus(ca, 'rc-down', is('postcopy-paused'), 'paused at the source');
    await waitStatus(cb, 'rc-down', is('postcopy-paused'), 'paused at the destination');
    // A recovery while the path is still broken fails, and the migration stays paused.
    await ca.request('migrate.recover', { name: 'rc-down' });
    await waitStatus(ca, 'rc-down', (s) => s.status === 'postcopy-paused' && /attempt 1 failed/.test(s['error-desc'] ?? ''), 'a failed attempt');
    // Meanwhile the guest waits on b (a missing page), and the copy on a cannot be resumed.
    await expect(ca.request('vm.resume', { name: 'rc-down' })).rejects.toMatchObject({ code: 'ESTATE' });
    proxy.up();
    await ca.request('migrate.recover', { name: 'rc-down' });
    await expectRecovered(ca, cb, 'rc-down', end, oracle);
  });

  it('a silent partition (no FIN, no RST): both sides notice within seconds, pause, and recover', async () => {
    const { ca, cb, proxy, oracle, migrate } = await setup(MEM8, 'rc-silent', 0.3);
    const { end } = await migrate({ mode: 'postcopy', pushDelayMs: 300 });
    await waitStatus(cb, 'rc-silent', (s) => s.status === 'postcopy-active' && s['postcopy-requests'] > 0, 'faults');
    proxy.freeze();
    // Nothing closes: the first side to give the link up does so because it heard nothing (the
    // source's pings go unanswered; the destination gets no pings); the other then sees a close.
    const t0 = Date.now();
    let reasons: string[] = [];
    while (reasons.length === 0 && Date.now() - t0 < 15_000) {
      const both = await Promise.all([statusOf(ca, 'rc-silent'), statusOf(cb, 'rc-silent')]);
      reasons = both.filter((st) => st.status === 'postcopy-paused').map((st) => st['error-desc'] ?? '');
      if (reasons.length === 0) await new Promise((r) => setTimeout(r, 5));
    }
    expect(reasons.some((r) => /no word from/.test(r)), reasons.join(' | ')).toBe(true);
    await expectRecovered(ca, cb, 'rc-silent', end, oracle);
  });

  it('hybrid: cut after switching to post-copy, recovered automatically', async () => {
    const { ca, cb, proxy, oracle, migrate } = await setup(MEM8, 'rc-hybrid', 0.3);
    const { end } = await migrate({ mode: 'hybrid', postcopyAfterRounds: 1, downtimeLimitMs: 1, pushDelayMs: 300 });
    await waitStatus(ca, 'rc-hybrid', is('postcopy-active'), 'postcopy-active');
    proxy.cut();
    const out = await end;
    expect(out.status, out['error-desc']).toBe('completed');
    expect(out['postcopy-recoveries']).toBe(1);
    await incomingDone(cb, 'rc-hybrid');
    await waitInfo(cb, 'rc-hybrid', (i) => i.migrating !== true, 'settled');
    expect(await finalDigest(cb, 'rc-hybrid')).toBe(await oracle);
  });

  it('cut at the switch-over: the guest ends up running on exactly one host, with the oracle digest', async () => {
    const { ca, cb, proxy, oracle, migrate } = await setup(MEM8, 'rc-switch', 0.3);
    const { end } = await migrate({ mode: 'postcopy', pushDelayMs: 300 });
    await waitStatus(ca, 'rc-switch', is('device', 'postcopy-active'), 'the switch-over', 20_000);
    proxy.cut();
    const out = await end;
    if (out.status === 'completed') {
      await incomingDone(cb, 'rc-switch');
      await expect(ca.request('vm.info', { name: 'rc-switch' })).rejects.toMatchObject({ code: 'ENOVM' });
      await waitInfo(cb, 'rc-switch', (i) => i.migrating !== true, 'settled');
      expect(await finalDigest(cb, 'rc-switch')).toBe(await oracle);
    } else {
      // The destination never resumed it: the source runs it on, and b has no copy.
      expect(out.status, out['error-desc']).toBe('failed');
      await expect(cb.request('vm.info', { name: 'rc-switch' })).rejects.toMatchObject({ code: 'ENOVM' });
      expect(await finalDigest(ca, 'rc-switch')).toBe(await oracle);
    }
  });
});

describe('giving a paused post-copy up', () => {
  it('vm destroy on the source while paused: the VM is lost on both sides, said so, and nothing runs', async () => {
    const { ca, cb, proxy, migrate } = await setup(MEM8, 'rc-give-src', 0.3);
    const { end } = await migrate({ mode: 'postcopy', pushDelayMs: 60_000, autoRecover: false });
    await waitStatus(cb, 'rc-give-src', is('postcopy-active'), 'post-copy on b');
    // While the link is up the VM cannot be destroyed: its memory is split.
    await expect(ca.request('vm.destroy', { name: 'rc-give-src' })).rejects.toMatchObject({ code: 'ESTATE' });
    proxy.cut({ down: true });
    await waitStatus(ca, 'rc-give-src', is('postcopy-paused'), 'paused at the source');
    await ca.request('vm.destroy', { name: 'rc-give-src' });
    const out = await end;
    expect(out.status).toBe('failed');
    expect(out['error-code']).toBe('EABANDONED');
    expect(out['error-desc']).toMatch(/VM is lost.*given up by the user/);
    await expect(ca.request('vm.info', { name: 'rc-give-src' })).rejects.toMatchObject({ code: 'ENOVM' });
    // The destination learns it from the source's control API (its migration link stays down).
    const inc = await waitStatus(cb, 'rc-give-src', is('failed'), 'the destination giving up', 20_000);
    expect(inc['error-desc']).toMatch(/VM is lost.*gave the migration up/);
    await expect(cb.request('vm.info', { name: 'rc-give-src' })).rejects.toMatchObject({ code: 'ENOVM' });
  });

  it('vm destroy on the destination while paused: the source, recovering, learns the VM is gone', async () => {
    const { ca, cb, proxy, migrate } = await setup(MEM8, 'rc-give-dst', 0.3);
    const { end } = await migrate({ mode: 'postcopy', pushDelayMs: 60_000, autoRecover: false });
    await waitStatus(cb, 'rc-give-dst', is('postcopy-active'), 'post-copy on b');
    proxy.cut({ down: true });
    await waitStatus(cb, 'rc-give-dst', is('postcopy-paused'), 'paused at the destination');
    await cb.request('vm.destroy', { name: 'rc-give-dst' });
    const inc = await statusOf(cb, 'rc-give-dst');
    expect(inc.status).toBe('failed');
    expect(inc['error-desc']).toMatch(/VM is lost.*given up by the user/);
    await expect(cb.request('vm.info', { name: 'rc-give-dst' })).rejects.toMatchObject({ code: 'ENOVM' });
    proxy.up();
    await waitStatus(ca, 'rc-give-dst', is('postcopy-paused'), 'paused at the source');
    await ca.request('migrate.recover', { name: 'rc-give-dst' });
    const out = await end;
    expect(out.status).toBe('failed');
    // The destination says it had resumed the guest and lost it (not ENOMIGRATION: that would mean it never resumed it).
    expect(out['error-code']).toBe('ELOST');
    expect(out['error-desc']).toMatch(/VM is lost/);
    await expect(ca.request('vm.info', { name: 'rc-give-dst' })).rejects.toMatchObject({ code: 'ENOVM' });
  });
});

describe('a host process dying in post-copy: both sides say the VM is lost', () => {
  it('the source SIGKILLed: refused connections are no proof, a restarted source host is; then the destination drops the VM, saying it is lost', async () => {
    const { startHostProcess } = await import('../../src/host/spawn.ts');
    const a = await startHostProcess('src-killed');
    let again: Awaited<ReturnType<typeof startHostProcess>> | undefined;
    try {
      const b = await hosts.start('b');
      const cb = await hosts.connect(b.url);
      await a.client.request('vm.create', createParams('rc-srcdead', { ...MEM8, insnLimit: 0 }));
      await waitInstret(a.client, 'rc-srcdead', 20_000_000);
      // The push held back: the guest on b needs pages only the source has.
      await a.client.request('migrate.start', { name: 'rc-srcdead', to: b.url, mode: 'postcopy', pushDelayMs: 60_000 });
      await waitStatus(cb, 'rc-srcdead', (s) => s.status === 'postcopy-active' && s['postcopy-requests'] > 0, 'post-copy faults on b');
      a.proc.kill('SIGKILL');
      await waitStatus(cb, 'rc-srcdead', is('postcopy-paused'), 'the destination to pause', 20_000);
      // Nothing listens at the source's address: that may be a firewall or a proxy; b waits.
      await new Promise((r) => setTimeout(r, 3000));
      expect((await statusOf(cb, 'rc-srcdead')).status).toBe('postcopy-paused');
      // A new incarnation of the source host at the same address: the old process is gone, and the pages with it.
      again = await startHostProcess('src-killed', ['--listen', new URL(a.url).host]);
      const inc = await waitStatus(cb, 'rc-srcdead', is('failed'), 'the destination giving up', 20_000);
      expect(inc['error-desc']).toMatch(/VM is lost/);
      expect(inc['error-desc']).toMatch(/source host .* was restarted/);
      await expect(cb.request('vm.info', { name: 'rc-srcdead' })).rejects.toMatchObject({ code: 'ENOVM' });
    } finally {
      await a.stop();
      await again?.stop();
    }
  }, 60_000);

  it('the source host stopping: it reports the VM lost at once, and the destination follows', async () => {
    const a = await hosts.start('a');
    const b = await hosts.start('b');
    const ca = await hosts.connect(a.url);
    const cb = await hosts.connect(b.url);
    await ca.request('vm.create', createParams('rc-srcstop', { ...MEM8, insnLimit: 0 }));
    await waitInstret(ca, 'rc-srcstop', 20_000_000);
    await ca.request('migrate.start', { name: 'rc-srcstop', to: b.url, mode: 'postcopy', pushDelayMs: 60_000 });
    await waitStatus(cb, 'rc-srcstop', is('postcopy-active'), 'post-copy on b');
    await a.host.stop();
    const out = a.host.migrations.status('rc-srcstop');
    expect(out.status).toBe('failed');
    expect(out['error-desc']).toMatch(/VM is lost.*host shutting down/);
    const inc = await waitStatus(cb, 'rc-srcstop', is('failed'), 'the destination giving up', 20_000);
    expect(inc['error-desc']).toMatch(/VM is lost/);
    await expect(cb.request('vm.info', { name: 'rc-srcstop' })).rejects.toMatchObject({ code: 'ENOVM' });
  });
});
