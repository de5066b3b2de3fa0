// An example to copy: a pre-copy migration over a shaped link that is cut in its second round.
// The migration fails, the guest runs on at the source and nothing is left on the destination;
// over the restored link a second migration completes, and the guest ends with the digest of a
// run nothing migrated. (Ferry's own tests run this file; in a project of yours, install `ferry`.)
import { afterAll, beforeAll, expect, it } from 'vitest';
import { guestVm, referenceDigest, startCluster, type Guest, type TestCluster } from 'ferry/testing';

const guest: Guest = { program: 'memstress', memory: 32 << 20, args: ['ws_mib=8'], insnLimit: 1_000_000_000 };
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster({ hosts: ['a', 'b'] });
});

afterAll(async () => {
  await cluster?.stop();
});

it('pre-copy under a cut link: fails cleanly, the guest runs on; over the restored link it completes to the reference digest', async () => {
  const reference = referenceDigest(guest);
  const a = cluster.host('a').client;
  const b = cluster.host('b').client;
  // 1 Gbit/s, 0.25 ms each way: a datacenter link.
  const link = await cluster.link('b', { bandwidth: 125_000_000, delayMs: 0.25 });
  await a.createVm(guestVm('m', guest));

  link.at('round-end', 'cut', { dir: 'up', times: 1 }); // the first round's end: the link goes, and refuses new connections
  const first = await a.migrate('m', { to: link.url, downtimeLimitMs: 1, maxRounds: 4, switchoverAtMaxRounds: true });
  const failed = await first.done;
  expect(failed.status).toBe('failed');
  expect(first.history.map((e) => e.type)).not.toContain('switchover');
  expect((await a.vmInfo('m')).state).toMatch(/running|halted/);
  await expect.poll(async () => (await b.listVms()).length, { timeout: 20_000 }).toBe(0);

  await link.restore();
  const second = await a.migrate('m', { to: link.url, downtimeLimitMs: 1, maxRounds: 4, switchoverAtMaxRounds: true });
  const done = await second.done;
  expect(done.status).toBe('completed');
  expect(second.history.filter((e) => e.type === 'pass')).toHaveLength(4);
  expect(done['downtime-ms']).toBeGreaterThan(0);
  await b.waitHalted('m');
  expect(await b.digest('m')).toBe(await reference);
});
