// An example to copy: a post-copy migration whose source host is killed (SIGKILL) just after the
// switch-over, when the destination has acknowledged it. The guest runs on the destination but
// part of its memory died with the source: the destination holds it paused, refuses to guess, and
// once the source host answers again as a new incarnation it reports the VM lost. Nothing runs
// twice: the restarted source has no copy either. (Ferry's own tests run this file.)
import { afterAll, beforeAll, expect, it } from 'vitest';
import { guestVm, startCluster, type Guest, type TestCluster } from 'ferry/testing';

const guest: Guest = { program: 'memstress', memory: 32 << 20, args: ['ws_mib=8'], insnLimit: 1_000_000_000 };
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster({ hosts: ['a', 'b'], processes: ['a'] }); // a can be killed
});

afterAll(async () => {
  await cluster?.stop();
});

it('post-copy with the source killed at the switch-over: the destination waits, then reports the VM lost; no copy runs', async () => {
  const src = cluster.host('a');
  const b = cluster.host('b').client;
  const link = await cluster.link('b');
  await src.client.createVm(guestVm('m', guest));

  let killed: Promise<void> | undefined;
  link.at('resumed', () => { killed = src.kill(); }, { dir: 'down' }); // the destination's "the guest runs here"
  const m = await src.client.migrate('m', { to: link.url, mode: 'postcopy', pushDelayMs: 60_000 });
  await expect.poll(() => killed !== undefined, { timeout: 20_000 }).toBe(true);
  await killed;
  await m.done.catch(() => undefined); // (its connection died with the host)

  await expect.poll(async () => (await b.migrationStatus('m')).status, { timeout: 20_000 }).toBe('postcopy-paused');
  await src.restart();
  await expect.poll(async () => (await b.migrationStatus('m')).status, { timeout: 30_000 }).toBe('failed');
  expect((await b.migrationStatus('m'))['error-desc']).toMatch(/lost/);
  await expect.poll(async () => (await b.listVms()).map((v) => v.name), { timeout: 20_000 }).toEqual([]);
  expect(await src.client.listVms()).toEqual([]);
});
