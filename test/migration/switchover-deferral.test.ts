// The downtime promise at the pause itself: a guest that dirties its memory in a burst between the
// last round's harvest and the pause (as a throttled vCPU does, in slices) must not be switched
// over above the limit. Two fake hosts (fakes.ts), fake time, and a guest that runs a burst when
// it is first asked to pause.
import { describe, expect, it, vi } from 'vitest';
import { MIGRATE_DEFAULTS } from '../../src/migration/outgoing.ts';
import { PAGE_SIZE } from '../../src/memory/layout.ts';
import { FakeNetwork, FakeVm, modelLogger, referenceGuest, useEngineFakeTimers } from './fakes.ts';

/** Runs `burst` guest steps each time it is asked to pause, for the first `bursts` pauses. */
class BurstyVm extends FakeVm {
  pauses = 0;
  constructor(seed: number, private readonly burst: number, private readonly bursts: number) {
    super(seed, 'source');
  }

  override async pause(): Promise<void> {
    if (this.state === 'running' && this.pauses++ < this.bursts) this.runGuest(this.burst);
    return super.pause();
  }
}

async function settle(net: FakeNetwork, until: () => boolean): Promise<void> {
  for (let i = 0; i < 100_000 && !until(); i++) {
    const ready = net.ready();
    const x = ready[0];
    // Each delivery takes 1 ms of fake time: a round's rate is its bytes over the deliveries it took.
    if (x === undefined) await vi.advanceTimersByTimeAsync(5);
    else if (x.kind === 'socket') x.s.deliverOne();
    else net.completeDial(x.d);
    await vi.advanceTimersByTimeAsync(1);
    for (let k = 0; k < 3; k++) {
      await vi.advanceTimersByTimeAsync(0);
      await new Promise<void>((r) => setImmediate(r));
    }
  }
}

const LIMIT_MS = 4.5;

describe('switch-over at the pause', () => {
  useEngineFakeTimers();

  for (const bursts of [1, 5]) {
    it(bursts === 1
      ? 'a burst of dirtying between the last harvest and the pause defers the switch-over (the guest runs on), then it switches over within the limit'
      : 'a guest that bursts at every pause: pre-copy gives up (ENOCONVERGE) and the guest runs on at the source', async () => {
      const net = new FakeNetwork(modelLogger());
      const a = net.addHost('a');
      const b = net.addHost('b');
      const vm = new BurstyVm(7, 1000, bursts);
      a.vms.set('m', { vm, incoming: false });
      vm.start();
      vm.runGuest(50);
      // Nothing is dirty at a round's harvest (the guest runs only in its bursts), so every round
      // converges on paper; the burst's pages at that round's rate take more than the limit.
      // Every pause bursts: capped at 100 kB/s, the burst's pages never fit 50 ms.
      const limits = bursts === 1 ? { downtimeLimitMs: LIMIT_MS } : { downtimeLimitMs: 50, maxBandwidth: 100_000 };
      const mig = a.migrate('m', { ...MIGRATE_DEFAULTS, to: b.url, mode: 'precopy', maxRounds: 30, ...limits });
      await settle(net, () => mig.stats.final);
      const s = mig.stats.snapshot();
      if (bursts === 1) {
        expect(s.status).toBe('completed');
        expect(s['switchover-deferrals']).toBe(1);
        // What crossed in the downtime fits the limit at the rate the rounds measured.
        const last = s.rounds.at(-1)!;
        expect(s['expected-downtime-ms']).toBeLessThanOrEqual(LIMIT_MS);
        expect(last.pages).toBeGreaterThan(10); // the round after the deferral carried the burst's pages
        // The destination holds exactly the unmigrated guest after as many steps.
        const there = b.vms.get('m')!.vm;
        const ref = referenceGuest(7, there.regs.steps);
        expect(there.regs.steps).toBe(1050);
        expect(Buffer.compare(Buffer.from(there.memory.ram), Buffer.from(ref.ram))).toBe(0);
        expect(s['downtime-bytes']).toBeLessThan(4 * PAGE_SIZE + 64 * 1024);
      } else {
        expect(s.status).toBe('failed');
        expect(s['error-code']).toBe('ENOCONVERGE');
        expect(s['error-desc']).toMatch(/^pre-copy cannot converge: 5 times the guest had dirtied more by the pause than the last round left/);
        expect(s['switchover-deferrals']).toBe(5);
        expect(vm.state).toBe('running');
        await settle(net, () => net.ready().length === 0); // the cancel reaches the destination
        expect(b.vms.get('m')?.vm.restored ?? false).toBe(false); // no copy ever resumed there
      }
    });
  }

  for (const allowed of ['switchover-at-max-rounds', 'hybrid'] as const) {
    it(`a guest that bursts at every pause, with ${allowed === 'hybrid' ? 'post-copy allowed (hybrid)' : '--switchover-at-max-rounds'}: `
      + `the deferrals do not fail it; ${allowed === 'hybrid' ? 'it switches to post-copy' : 'it switches over at max rounds'} and the destination holds the unmigrated guest`, async () => {
      const net = new FakeNetwork(modelLogger());
      const a = net.addHost('a');
      const b = net.addHost('b');
      const vm = new BurstyVm(7, 1000, 1_000);
      a.vms.set('m', { vm, incoming: false });
      vm.start();
      vm.runGuest(50);
      const mode = allowed === 'hybrid' ? 'hybrid' : 'precopy';
      const mig = a.migrate('m', {
        ...MIGRATE_DEFAULTS, to: b.url, mode, maxRounds: 8, postcopyAfterRounds: 30, downtimeLimitMs: 50, maxBandwidth: 100_000,
        switchoverAtMaxRounds: allowed === 'switchover-at-max-rounds',
      });
      await settle(net, () => mig.stats.final);
      const s = mig.stats.snapshot();
      expect(s.status).toBe('completed');
      if (allowed === 'hybrid') {
        expect(s['switchover-deferrals']).toBe(5);
        expect(s['postcopy-switch']).toMatch(/^pre-copy is not converging: 5 times the guest had dirtied more by the pause than the last round left/);
      } else {
        expect(s['switchover-deferrals']).toBeGreaterThanOrEqual(5);
        expect(s['dirty-sync-count']).toBe(8);
        expect(s['switchover-reason']).toMatch(/^max rounds \(8\), allowed above the limit: expected downtime [\d.]+ ms at the pause$/);
      }
      await settle(net, () => b.vms.get('m')?.vm.restored === true && net.ready().length === 0);
      const there = b.vms.get('m')!.vm;
      await there.pause();
      const ref = referenceGuest(7, there.regs.steps);
      expect(Buffer.compare(Buffer.from(there.memory.ram), Buffer.from(ref.ram))).toBe(0);
    });
  }
});
