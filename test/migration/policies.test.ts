// Pluggable policies (src/migration/policies.ts): the built-in alternatives decide differently
// from the defaults where they should and alike elsewhere; a host loads policies from a module
// (ferry host start --policy-module) and a migration names them from the CLI; a push order that
// loses or repeats a page is refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ASCENDING_PUSH, DEFAULT_CONVERGENCE, NEAR_PC_PUSH, PolicyRegistry, PREDICTIVE_CONVERGENCE } from '../../src/migration/policies.ts';
import type { ConvergenceParams, RoundResult } from '../../src/migration/convergence.ts';
import { FerryClient } from '../../src/index.ts';
import { MiB, runCli } from '../support/helpers.ts';
import { startHost, type StartedHost } from '../support/host-helpers.ts';
import { finalDigest, oracleDigest, type GuestSpec } from '../support/migration-helpers.ts';
import { ControlClient } from '../../src/wire/control-client.ts';

const HYBRID: ConvergenceParams = { mode: 'hybrid', downtimeLimitMs: 300, maxRounds: 30, autoConverge: false, postcopyAfterRounds: 30, switchoverAtMaxRounds: false };
const round = (over: Partial<RoundResult>): RoundResult => ({ rounds: 1, bytes: 100e6, ms: 1000, dirtyBytes: 90e6, stopped: false, postcopyRequested: false, ...over });

describe('the built-in policies', () => {
  it('predictive switches a hybrid migration to post-copy after one round that leaves 90 % dirty; the default runs another', () => {
    expect(DEFAULT_CONVERGENCE.create().afterRound(round({}), HYBRID).next).toBe('round');
    const d = PREDICTIVE_CONVERGENCE.create().afterRound(round({}), HYBRID);
    expect(d).toEqual({ next: 'postcopy', reason: expect.stringMatching(/^predicted not to converge: round 1 left 90 % of what it sent dirty/) });
  });

  it('predictive decides as the default where pre-copy converges, and in plain pre-copy', () => {
    const converging = round({ dirtyBytes: 10e6 });
    expect(PREDICTIVE_CONVERGENCE.create().afterRound(converging, HYBRID)).toEqual(DEFAULT_CONVERGENCE.create().afterRound(converging, HYBRID));
    const pre = { ...HYBRID, mode: 'precopy' as const };
    expect(PREDICTIVE_CONVERGENCE.create().afterRound(round({}), pre)).toEqual(DEFAULT_CONVERGENCE.create().afterRound(round({}), pre));
  });

  it('near-pc orders the pages by their distance from the pc\'s page; the default keeps page order', () => {
    const pc = 0x8000_0000 + 10 * 4096 + 12;
    const pages = Uint32Array.from([40, 0, 3, 9, 10, 11, 12]);
    expect([...NEAR_PC_PUSH.order(pages, { pc, ramPages: 64 })]).toEqual([10, 9, 11, 12, 3, 0, 40]);
    expect([...ASCENDING_PUSH.order(pages, { pc, ramPages: 64 })]).toEqual([...pages]);
  });

  it('a registry names what it has when asked for what it has not, and checks a module', () => {
    const r = new PolicyRegistry();
    expect(() => r.convergencePolicy('x')).toThrow('no convergence policy "x" on this host (it has: default, predictive)');
    expect(() => r.pushOrder('y')).toThrow('no push order "y" on this host (it has: default, near-pc)');
    expect(() => r.addModule({}, 'm.mjs')).toThrow('m.mjs exports neither convergencePolicies nor pushOrders');
    expect(() => r.addModule({ pushOrders: [{ name: 'bad' }] }, 'm.mjs')).toThrow('m.mjs: each of pushOrders needs a name and order()');
  });
});

describe('policies on real hosts', () => {
  let a: StartedHost;
  let b: StartedHost;
  beforeAll(async () => {
    [a, b] = await Promise.all([
      startHost({ name: 'pol-a', args: ['--policy-module', 'test/fixtures/two-rounds-policy.mjs'] }),
      startHost({ name: 'pol-b' }),
    ]);
  }, 60_000);
  afterAll(async () => {
    for (const h of [a, b]) if (h) expect(await h.stop('SIGTERM')).toBe(0);
  }, 60_000);

  it('a policy module loaded by the host, named from the CLI: two rounds, the unmigrated digest; an unknown name is refused', async () => {
    const guest: GuestSpec = { program: 'memstress', memory: 32 * MiB, args: ['ws_mib=8'], insnLimit: 800_000_000 };
    const oracle = oracleDigest(guest);
    const ca = await FerryClient.connect(a.url);
    const cb = await ControlClient.connect(b.url);
    try {
      await ca.createVm({ name: 'tr', program: guest.program, memory: guest.memory, args: guest.args, icount: true, insnLimit: guest.insnLimit, start: true });
      const bad = await runCli(['--host', a.url, 'migrate', 'tr', '--to', b.url, '--convergence-policy', 'nosuch']);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toBe('ferry: no convergence policy "nosuch" on this host (it has: default, predictive, two-rounds)\n');
      const r = await runCli(['--host', a.url, 'migrate', 'tr', '--to', b.url, '--convergence-policy', 'two-rounds', '--json']);
      expect(r.code, r.stderr).toBe(0);
      const s = JSON.parse(r.stdout) as Record<string, unknown>;
      expect(s).toMatchObject({ status: 'completed', 'dirty-sync-count': 2, 'convergence-policy': 'two-rounds', 'switchover-reason': 'two rounds done (two-rounds policy)' });
      expect(await finalDigest(cb, 'tr')).toBe(await oracle);

      // Post-copy with the module's push order (highest page first) and the built-in near-pc: both to the digest.
      for (const order of ['top-down', 'near-pc']) {
        const name = `po-${order}`;
        await cb.request('vm.destroy', { name: 'tr' }).catch(() => undefined);
        await ca.createVm({ name, program: guest.program, memory: guest.memory, args: guest.args, icount: true, insnLimit: guest.insnLimit, start: true });
        const p = await runCli(['--host', a.url, 'migrate', name, '--to', b.url, '--mode', 'postcopy', '--push-order', order, '--json']);
        expect(p.code, p.stderr).toBe(0);
        expect(JSON.parse(p.stdout)).toMatchObject({ status: 'completed', 'push-order': order });
        expect(await finalDigest(cb, name)).toBe(await oracle);
      }
    } finally {
      await ca.close();
      await cb.close();
    }
  }, 120_000);

  it('a module that does not load stops the host at start, saying why (exit 2)', async () => {
    const r = await runCli(['host', 'start', '--listen', '127.0.0.1:0', '--policy-module', 'test/fixtures/nosuch.mjs']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ferry: --policy-module test\/fixtures\/nosuch\.mjs: Cannot find module/);
  }, 60_000);
});
