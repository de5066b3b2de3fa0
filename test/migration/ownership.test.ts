// Never two copies, never a lost VM. A relay between the hosts breaks the link at a chosen
// message; whatever it does, exactly one copy of the guest runs (or, while the outcome cannot be
// learned, none runs and the source says so), and once the link heals the migration ends with
// exactly the digest of an unmigrated run.
import { afterEach, describe, expect, it } from 'vitest';
import type { MigrationInfo, MigrationStatus } from '../../src/migration/stats.ts';
import type { ControlClient } from '../../src/wire/control-client.ts';
import { eventually, restartablePort, MiB } from '../support/helpers.ts';
import { startMessageRelay, type MessageRelay } from '../support/message-relay.ts';
import { finalDigest, guestRunningOnA, hostTracker, oracleDigest, type GuestSpec, type Info } from '../support/migration-helpers.ts';

const hosts = hostTracker();
const relays: MessageRelay[] = [];
afterEach(async () => {
  await hosts.cleanup();
  await Promise.all(relays.splice(0).map((r) => r.close()));
});

// Long enough not to halt before the switch-over on a loaded machine (a halted source copy would also never run, but the cells are about a paused one).
/**
 * Still running when its migration switches over, however slow the machine: the tests need a
 * running guest there (at 600 M instructions a guest at 450 MIPS halted in pre-copy, with the
 * relay's link at 23 MB/s, and the source's copy read 'halted').
 */
const MEM8: GuestSpec = { program: 'memstress', memory: 32 * MiB, args: ['ws_mib=8'], insnLimit: 1_500_000_000 };

function status(c: ControlClient, name: string): Promise<MigrationInfo | undefined> {
  return c.request<MigrationInfo>('migrate.status', { name }).catch(() => undefined);
}

function reaches(c: ControlClient, name: string, ...st: MigrationStatus[]): Promise<MigrationInfo> {
  return eventually(async () => {
    const s = await status(c, name);
    return s && st.includes(s.status) ? s : undefined;
  }, `${name} to reach ${st.join('/')}`, 20_000);
}

/** VMs named `name` on a host, with their state ('running', 'paused', 'halted', 'incoming'...). */
async function copies(c: ControlClient, name: string): Promise<string[]> {
  const vms = await c.request<Info[]>('vm.list');
  return vms.filter((v) => v.name === name).map((v) => String(v.state));
}

/**
 * The guest runs on `a`, which other hosts reach (the destination, to check on or report to its
 * source) through a relay of its own, `back`: a partition can then cut both directions.
 */
async function withBackPath(g: GuestSpec, name: string) {
  const port = await restartablePort(); // the back relay may refuse, then listen on it again
  const ends = await guestRunningOnA(hosts, g, name, 0.1, { advertise: `ws://127.0.0.1:${port}` });
  const back = await startMessageRelay(ends.a.url, { port });
  relays.push(back);
  return { ...ends, back };
}

describe('pre-copy: the switch-over is a commit the source learns the outcome of', () => {
  it('the destination resumed and its acknowledgement is lost with the link: the source stays paused, never resumes, and releases once it learns', async () => {
    const oracle = oracleDigest(MEM8);
    const { b, ca, cb, back } = await withBackPath(MEM8, 'vm1');
    const relay = await startMessageRelay(b.url);
    relays.push(relay);
    // A partition: the destination cannot reach the source either.
    relay.on({ match: (m) => m.dir === 'down' && m.t === 'completed', action: 'cut-refuse', then: () => back.cut('refuse') });
    await ca.request('migrate.start', { name: 'vm1', to: relay.url });
    const unknown = await reaches(ca, 'vm1', 'outcome-unknown', 'completed', 'failed');
    expect(unknown.status).toBe('outcome-unknown');
    // The guest runs at the destination; the source holds a paused copy it must not run.
    expect(await copies(cb, 'vm1')).not.toEqual([]);
    expect(await copies(ca, 'vm1')).toEqual(['paused']);
    // Still so a while later: the source keeps asking, and never guesses.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await copies(ca, 'vm1')).toEqual(['paused']);
    // The source's own path heals (the way back stays cut): it asks, and learns.
    await relay.heal();
    const done = await reaches(ca, 'vm1', 'completed', 'failed');
    expect(done.status).toBe('completed');
    expect(done['error-desc']).toBeUndefined();
    expect(await copies(ca, 'vm1')).toEqual([]);
    expect(await finalDigest(cb, 'vm1')).toBe(await oracle);
  }, 60_000);

  it('the same, but only the way back heals: the destination, which can reach the source, tells it, and the source releases while its own path still refuses', async () => {
    const oracle = oracleDigest(MEM8);
    const { b, ca, cb, back } = await withBackPath(MEM8, 'vm1b');
    const relay = await startMessageRelay(b.url);
    relays.push(relay);
    relay.on({ match: (m) => m.dir === 'down' && m.t === 'completed', action: 'cut-refuse', then: () => back.cut('refuse') });
    await ca.request('migrate.start', { name: 'vm1b', to: relay.url });
    expect((await reaches(ca, 'vm1b', 'outcome-unknown', 'completed', 'failed')).status).toBe('outcome-unknown');
    expect(await copies(ca, 'vm1b')).toEqual(['paused']);
    await back.heal();
    const done = await reaches(ca, 'vm1b', 'completed', 'failed');
    expect(done.status).toBe('completed');
    expect(relay.seen.filter((m) => m.t === 'query'), 'the source never got through on its own path').toEqual([]);
    expect(back.seen.some((m) => m.path.startsWith('/control')), 'the destination reported on the control API').toBe(true);
    expect(await copies(ca, 'vm1b')).toEqual([]);
    expect(await finalDigest(cb, 'vm1b')).toBe(await oracle);
  }, 60_000);

  it('the link is lost with the state section in flight and the destination never got it: once reachable it says so, and the source resumes', async () => {
    const oracle = oracleDigest(MEM8);
    const { b, ca, cb } = await guestRunningOnA(hosts, MEM8, 'vm2', 0.1);
    const relay = await startMessageRelay(b.url);
    relays.push(relay);
    relay.on({ match: (m) => m.dir === 'up' && m.t === 'state', action: 'cut-refuse' });
    await ca.request('migrate.start', { name: 'vm2', to: relay.url });
    expect((await reaches(ca, 'vm2', 'outcome-unknown', 'completed', 'failed')).status).toBe('outcome-unknown');
    expect(await copies(ca, 'vm2')).toEqual(['paused']);
    await relay.heal();
    const end = await reaches(ca, 'vm2', 'completed', 'failed');
    expect(end.status).toBe('failed');
    expect(await copies(cb, 'vm2')).toEqual([]);
    expect(await finalDigest(ca, 'vm2')).toBe(await oracle);
  }, 60_000);

  it('a link gone silent during the rounds is noticed: the migration fails and the VM runs on at the source', async () => {
    const oracle = oracleDigest(MEM8);
    const { b, ca, cb } = await guestRunningOnA(hosts, MEM8, 'vm3', 0.1);
    const relay = await startMessageRelay(b.url);
    relays.push(relay);
    relay.on({ match: (m) => m.dir === 'up' && m.t === 'round-end', action: 'freeze' });
    await ca.request('migrate.start', { name: 'vm3', to: relay.url, maxBandwidth: 40 * MiB, downtimeLimitMs: 1 });
    const s = await reaches(ca, 'vm3', 'completed', 'failed');
    expect(s.status).toBe('failed');
    expect(String(s['error-desc'])).toMatch(/no word from/);
    const here = await copies(ca, 'vm3');
    expect(here.length).toBe(1);
    expect(['running', 'halted']).toContain(here[0]);
    // The destination dropped its half-built VM on its own side as well, having heard no ping for as long.
    await eventually(async () => (await copies(cb, 'vm3')).length === 0, 'the destination to drop its half', 40_000);
    const inc = await status(cb, 'vm3');
    expect(inc?.status).toBe('failed');
    expect(String(inc?.['error-desc'])).toMatch(/no word from .* for 5000 ms/);
    await relay.heal();
    expect(await finalDigest(ca, 'vm3')).toBe(await oracle);
  }, 90_000);
});

describe('post-copy: a refused reconnect is not a dead host', () => {
  it('the port refuses for a while during the push: both sides pause, and the migration recovers once it listens again', async () => {
    const oracle = oracleDigest(MEM8);
    const { b, ca, cb } = await guestRunningOnA(hosts, MEM8, 'pc1', 0.1);
    const relay = await startMessageRelay(b.url);
    relays.push(relay);
    let frames = 0;
    relay.on({ match: (m) => m.dir === 'up' && m.t === 'page-frame' && ++frames === 8, action: 'cut-refuse' });
    await ca.request('migrate.start', { name: 'pc1', to: relay.url, mode: 'postcopy' });
    await reaches(ca, 'pc1', 'postcopy-paused', 'failed');
    // Refused reconnects for 3 s: the source keeps its half and keeps trying.
    await new Promise((r) => setTimeout(r, 3000));
    expect((await status(ca, 'pc1'))?.status).toBe('postcopy-paused');
    expect((await status(cb, 'pc1'))?.status).toBe('postcopy-paused');
    await relay.heal();
    expect((await reaches(ca, 'pc1', 'completed', 'failed')).status).toBe('completed');
    expect(await finalDigest(cb, 'pc1')).toBe(await oracle);
  }, 60_000);
});

describe('post-copy: faults outstanding when the link drops', () => {
  it('are asked again right behind the new link\'s ready, and served: the guest runs on after the recovery', async () => {
    const { b, ca, cb } = await guestRunningOnA(hosts, { ...MEM8, insnLimit: 0 }, 'pc2', 0);
    await eventually(async () => ((await ca.request<Info>('vm.info', { name: 'pc2' })).instret as number) > 20_000_000, 'the guest to write its pages');
    const relay = await startMessageRelay(b.url);
    relays.push(relay);
    // The push held back: pages move only when the guest faults on them.
    await ca.request('migrate.start', { name: 'pc2', to: relay.url, mode: 'postcopy', pushDelayMs: 600_000 });
    await eventually(async () => ((await status(cb, 'pc2'))?.['postcopy-requests'] ?? 0) > 50, 'faults served on b');
    for (let outage = 0; outage < 3; outage++) {
      relay.cut('refuse');
      await reaches(cb, 'pc2', 'postcopy-paused');
      await relay.heal();
      await reaches(ca, 'pc2', 'postcopy-active');
      // A guest blocked on a page whose request went unanswered would stay blocked: the push is held back.
      const before = (await cb.request<Info>('vm.info', { name: 'pc2' })).instret as number;
      await eventually(async () => ((await cb.request<Info>('vm.info', { name: 'pc2' })).instret as number) > before + 5_000_000, `the guest to run on after recovery ${outage + 1}`, 10_000);
    }
    await cb.request('vm.destroy', { name: 'pc2' }).catch(() => undefined);
  }, 90_000);
});
