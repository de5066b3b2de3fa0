// An example to copy: a pre-copy convergence policy of your own, passed to the hosts of a test
// cluster and named by the migration. This one switches over after exactly three rounds whatever
// they measured (a protocol variant a test wants to pin down); the migration takes three passes,
// says which policy decided, and the guest still ends with the digest of a run nothing migrated.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ConvergencePolicyFactory } from 'ferry';
import { guestVm, referenceDigest, startCluster, type Guest, type TestCluster } from 'ferry/testing';

const threeRounds: ConvergencePolicyFactory = {
  name: 'three-rounds',
  description: 'switch over after the third pre-copy round',
  create: () => ({
    afterRound: (r) => (r.rounds >= 3 ? { next: 'stop-and-copy', reason: `round ${r.rounds}: three-rounds policy` } : { next: 'round', throttle: 0 }),
  }),
};

const guest: Guest = { program: 'memstress', memory: 32 << 20, args: ['ws_mib=8'], insnLimit: 800_000_000 };
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster({ hosts: ['a', 'b'], policies: { convergence: [threeRounds] } });
});

afterAll(async () => {
  await cluster?.stop();
});

it('a custom convergence policy decides the switch-over: three passes, then the reference digest', async () => {
  const reference = referenceDigest(guest);
  const a = cluster.host('a').client;
  const b = cluster.host('b').client;
  await a.createVm(guestVm('m', guest));
  // The engine keeps the downtime limit whatever the policy says: at the pause it defers a
  // switch-over that would break it, for another round. This policy pins rounds, not downtime, so
  // the limit here is one no round of this guest comes near (8 MiB took up to 0.4 s on loopback).
  const m = await a.migrate('m', { to: cluster.host('b').url, convergencePolicy: 'three-rounds', downtimeLimitMs: 10_000 });
  const final = await m.done;
  expect(final.status).toBe('completed');
  expect(m.history.filter((e) => e.type === 'pass')).toHaveLength(3);
  expect(final['convergence-policy']).toBe('three-rounds');
  expect(final['switchover-reason']).toBe('round 3: three-rounds policy');
  await b.waitHalted('m');
  expect(await b.digest('m')).toBe(await reference);

  // A name the source host does not know is refused before anything moves.
  await a.createVm({ name: 'n', program: 'counter', memory: 4 << 20, start: true });
  await expect(a.migrate('n', { to: cluster.host('b').url, convergencePolicy: 'nosuch' }))
    .rejects.toThrow('no convergence policy "nosuch" on this host (it has: default, predictive, three-rounds)');
});
