// 'auto' page encoding takes the link's rate only from a round that carried enough to measure it
// (LINK_RATE_MIN_BYTES, src/migration/outgoing.ts). A round of a few pages measures the round
// trip and the threads' wake-ups: one of 819 bytes read as 1 Mbit/s on loopback and turned
// encoding on. Here a guest that dirties a few pages a round is held for two rounds by a policy
// (test/fixtures/two-rounds-policy.mjs):
// no round is a measurement, so the pool is never asked and the frames stay plain.
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import type * as EncodePool from '../../src/migration/encode-pool.ts';
import { convergencePolicies } from '../fixtures/two-rounds-policy.mjs';

let poolCalls = 0;
vi.mock('../../src/migration/encode-pool.ts', async (importOriginal) => {
  const real = await importOriginal<typeof EncodePool>();
  return {
    ...real,
    encodeOnPool: (task: Parameters<typeof real.encodeOnPool>[0]) => {
      poolCalls++;
      return real.encodeOnPool(task);
    },
  };
});

const { closeEncodePool } = await import('../../src/migration/encode-pool.ts');
const { guestVm, referenceDigest, startCluster } = await import('../../src/testing/index.ts');

let cluster: Awaited<ReturnType<typeof startCluster>>;
beforeAll(async () => {
  cluster = await startCluster({ hosts: ['a', 'b'], policies: { convergence: convergencePolicies } });
});
afterAll(async () => {
  await cluster?.stop();
  await closeEncodePool();
});

it('rounds of a few pages are no measurement of the link: the pool is not asked, and the frames stay plain', async () => {
  const guest = { program: 'counter', memory: 4 << 20, args: [], insnLimit: 50_000_000 };
  const reference = referenceDigest(guest);
  const a = cluster.host('a').client;
  await a.createVm(guestVm('few', guest));
  const m = await a.migrate('few', { to: cluster.host('b').url, convergencePolicy: 'two-rounds' });
  const final = await m.done;
  expect(final.status, final['error-desc']).toBe('completed');
  expect(final.rounds).toHaveLength(2);
  for (const r of final.rounds) expect(r.bytes).toBeLessThan(1024 * 1024);
  expect(final.encoding ?? 'none', final['encoding-reason']).toBe('none');
  expect(poolCalls).toBe(0);
  await cluster.host('b').client.waitHalted('few');
  expect(await cluster.host('b').client.digest('few')).toBe(await reference);
});
