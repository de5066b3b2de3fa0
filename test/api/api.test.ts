// Ferry as a library, through its package entry (src/index.ts): hosts in this process and as
// processes, VMs driven by a typed client, migrations followed through QEMU-style events, and the
// statistics they end with; every migration to the unmigrated digest.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FerryClient, spawnHost, startHost, type FerryHost, type MigrationEvent } from '../../src/index.ts';
import { MiB } from '../support/helpers.ts';
import { oracleDigest, type GuestSpec } from '../support/migration-helpers.ts';

const T = 60_000;
const guest: GuestSpec = { program: 'memstress', memory: 32 * MiB, args: ['ws_mib=8'], insnLimit: 800_000_000 };
let a: FerryHost;
let b: FerryHost;
let ca: FerryClient;
let cb: FerryClient;

beforeAll(async () => {
  [a, b] = await Promise.all([startHost({ name: 'api-a' }), startHost({ name: 'api-b' })]);
  [ca, cb] = await Promise.all([a.connect(), b.connect()]);
}, T);

afterAll(async () => {
  await Promise.all([ca?.close(), cb?.close()]);
  await Promise.all([a?.stop(), b?.stop()]);
}, T);

function create(name: string) {
  return ca.createVm({ name, program: guest.program, memory: guest.memory, args: guest.args, icount: true, insnLimit: guest.insnLimit, start: true });
}

describe('the library API', () => {
  it('pre-copy: setup, a pass per round, one switch-over, completed; the statistics; the unmigrated digest', async () => {
    const oracle = oracleDigest(guest);
    await create('p1');
    const m = await ca.migrate('p1', { to: b.url, downtimeLimitMs: 1, maxRounds: 3, switchoverAtMaxRounds: true, xbzrle: 'off', compress: 'off' });
    const final = await m.done;
    const events: MigrationEvent[] = m.history;
    expect(final.status).toBe('completed');
    expect(final['dirty-sync-count']).toBe(3);
    const types = events.map((e) => e.type);
    expect(types[0]).toBe('setup');
    expect(types.at(-1)).toBe('completed');
    expect(types.filter((t) => t === 'switchover')).toHaveLength(1);
    expect(types.indexOf('switchover')).toBeGreaterThan(types.lastIndexOf('pass'));
    const passes = events.filter((e): e is Extract<MigrationEvent, { type: 'pass' }> => e.type === 'pass');
    expect(passes.map((p) => p.pass)).toEqual([1, 2, 3]);
    expect(passes.every((p) => p.round.pages > 0)).toBe(true);
    expect(final['downtime-ms']).toBeGreaterThan(0);
    await cb.waitHalted('p1');
    expect(await cb.digest('p1')).toBe(await oracle);
    expect((await ca.listVms()).map((v) => v.name)).not.toContain('p1');
    await cb.destroyVm('p1');
  }, T);

  it('post-copy paused and recovered through the handle: postcopy-active, -paused, -recovered, completed; the unmigrated digest', async () => {
    const oracle = oracleDigest(guest);
    await create('p2');
    // At 4 MB/s the push of its pages takes seconds: time to pause the link and recover it.
    const m = await ca.migrate('p2', { to: b.url, mode: 'postcopy', maxBandwidth: 4_000_000, autoRecover: false });
    await m.until('postcopy-active');
    await m.pause();
    await m.until('postcopy-paused');
    await m.recover();
    const final = await m.done;
    const types = m.history.map((e) => e.type);
    expect(final.status).toBe('completed');
    expect(final['postcopy-recoveries']).toBe(1);
    expect(types).toEqual(['setup', 'switchover', 'postcopy-active', 'postcopy-paused', 'postcopy-recovered', 'completed']);
    await cb.waitHalted('p2');
    expect(await cb.digest('p2')).toBe(await oracle);
    await cb.destroyVm('p2');
  }, T);

  it('a refused migration ends failed with why, and the VM runs on; a start the host refuses rejects at once', async () => {
    await create('p3');
    await cb.createVm({ name: 'p3', program: 'hello', memory: 4 * MiB });
    const m = await ca.migrate('p3', { to: b.url });
    const final = await m.done;
    const types = m.history.map((e) => e.type);
    expect(final.status).toBe('failed');
    expect(final['error-desc']).toMatch(/already exists/);
    expect(types.at(-1)).toBe('failed');
    expect(types).not.toContain('switchover');
    expect((await ca.vmInfo('p3')).state).toMatch(/running|halted/);
    await expect(ca.migrate('nosuch', { to: b.url })).rejects.toThrow(/no VM named "nosuch"/);
    await Promise.all([ca.destroyVm('p3'), cb.destroyVm('p3')]);
  }, T);

  it('VM lifecycle through the client: create, pause, resume, stop, destroy', async () => {
    await ca.createVm({ name: 'lc', program: 'counter', memory: 4 * MiB });
    expect((await ca.vmInfo('lc')).state).toBe('created');
    expect((await ca.startVm('lc')).state).toBe('running');
    expect((await ca.pauseVm('lc')).state).toBe('paused');
    const at = (await ca.vmInfo('lc')).instret;
    await new Promise((r) => setTimeout(r, 100));
    expect((await ca.vmInfo('lc')).instret).toBe(at);
    expect((await ca.resumeVm('lc')).state).toBe('running');
    expect((await ca.stopVm('lc')).state).toBe('halted');
    await ca.destroyVm('lc');
    expect((await ca.listVms()).map((v) => v.name)).not.toContain('lc');
  }, T);

  it('a host as a process: driven the same way, and killed', async () => {
    const h = await spawnHost('api-proc');
    try {
      const c = await h.connect();
      await c.createVm({ name: 'h1', program: 'hello', memory: 4 * MiB, start: true });
      expect((await c.waitHalted('h1')).exitCode).toBe(0);
      await c.close();
    } finally {
      await h.kill();
    }
    expect(() => process.kill(h.pid, 0)).toThrow();
  }, T);
});
