// VMs in real worker threads (src/vm/vm.ts): instruction limits, stepping, the digest oracle
// across pauses and manual migrations, console output, real-time guests, idle cost.
import { afterEach, describe, expect, it } from 'vitest';
import { FerryError } from '../../src/errors.ts';
import type { Vm, VmCreateOptions } from '../../src/vm/vm.ts';
import { collectConsole, loadElf, MiB, migrateByHand, sleep, vmTracker, waitFor, waitInstret } from '../support/helpers.ts';

const vms = vmTracker();
afterEach(() => vms.destroyAll());

const MEMSTRESS: VmCreateOptions = {
  elf: loadElf('memstress'), memory: 32 * MiB, icount: true, insnLimit: 20_000_000, args: ['ws_mib=8'],
};
const SIEVE: VmCreateOptions = { elf: loadElf('sieve'), memory: 32 * MiB, icount: true, args: ['n=200000'] };
const LIFE: VmCreateOptions = { elf: loadElf('life'), memory: 32 * MiB, icount: true, insnLimit: 15_000_000, args: ['gens=0'] };

/** Runs a fresh VM to its halt; returns the digest, the halt and the console output. */
async function baseline(o: VmCreateOptions): Promise<{ digest: string; exitCode: number; reason: string; instret: number; out: string }> {
  const vm = vms.create(o);
  const con = collectConsole(vm);
  vm.start();
  const h = await vm.waitHalted();
  const digest = await vm.digest();
  const instret = vm.instret();
  await vm.destroy();
  return { digest, ...h, instret, out: con.text() };
}

function isHex64(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}

describe('instruction limit and stepping', () => {
  it('insnLimit halts at exactly N retired instructions', async () => {
    const vm = vms.create({ ...MEMSTRESS, insnLimit: 1_234_567 });
    vm.start();
    const h = await vm.waitHalted();
    expect(h).toEqual({ exitCode: 0, reason: 'insn-limit' });
    expect(vm.instret()).toBe(1_234_567);
    expect(vm.retired).toBe(1_234_567);
    expect(vm.state).toBe('halted');
    expect(vm.info()).toMatchObject({ state: 'halted', instret: 1_234_567, haltReason: 'insn-limit', exitCode: 0, insnLimit: 1_234_567 });
  }, 30_000);

  it('step(n) advances instret by exactly n, from boot and from a mid-run pause', async () => {
    const vm = vms.create({ ...MEMSTRESS, insnLimit: 0 });
    await vm.step(1000);
    expect(vm.state).toBe('paused');
    expect(vm.instret()).toBe(1000);
    await vm.step(1);
    expect(vm.instret()).toBe(1001);
    await vm.step(0);
    expect(vm.instret()).toBe(1001);
    await vm.step(123_457);
    expect(vm.instret()).toBe(124_458);
    expect(vm.retired).toBe(124_458);

    vm.resume();
    await waitInstret(vm, 2_000_000);
    await vm.pause();
    const at = vm.instret();
    expect(at).toBeGreaterThan(2_000_000);
    await vm.step(777);
    expect(vm.instret()).toBe(at + 777);
    expect(vm.state).toBe('paused');
  }, 30_000);

  it('step(n) past the limit stops at the limit', async () => {
    const vm = vms.create({ ...MEMSTRESS, insnLimit: 5000 });
    await vm.step(4000);
    expect(vm.instret()).toBe(4000);
    await vm.step(4000);
    expect(await vm.waitHalted()).toEqual({ exitCode: 0, reason: 'insn-limit' });
    expect(vm.instret()).toBe(5000);
  }, 30_000);

  it('exportState refuses a running VM', async () => {
    const vm = vms.create({ ...MEMSTRESS, insnLimit: 0 });
    vm.start();
    await waitInstret(vm, 100_000);
    expect(() => vm.exportState()).toThrow(FerryError);
    await vm.pause();
    expect(vm.exportState().cpu).toHaveLength(vm.cpuState.length);
  }, 30_000);
});

describe('digest oracle (deterministic mode)', () => {
  it('memstress: equal across two runs, differs with a different limit or different args', async () => {
    const a = await baseline(MEMSTRESS);
    const b = await baseline(MEMSTRESS);
    expect(isHex64(a.digest)).toBe(true);
    expect(a.reason).toBe('insn-limit');
    expect(a.instret).toBe(20_000_000);
    expect(b.digest).toBe(a.digest);
    expect(b.out).toBe(a.out);
    expect(a.out).toMatch(/^memstress: ws_mib=8 base=0x[0-9a-f]{8} pages=2048\n/);

    const c = await baseline({ ...MEMSTRESS, insnLimit: 20_000_001 });
    expect(c.digest).not.toBe(a.digest);
    const d = await baseline({ ...MEMSTRESS, args: ['ws_mib=4'] });
    expect(d.digest).not.toBe(a.digest);
  }, 60_000);

  it('memstress: pausing and resuming several times mid-run does not change the digest', async () => {
    const ref = await baseline(MEMSTRESS);
    const vm = vms.create(MEMSTRESS);
    const con = collectConsole(vm);
    vm.start();
    const points: number[] = [];
    for (const at of [1_000_000, 4_000_000, 7_500_000, 11_000_000, 14_000_000]) {
      await waitInstret(vm, at);
      await vm.pause();
      expect(vm.state).toBe('paused');
      points.push(vm.instret());
      await sleep(5);
      vm.resume();
    }
    const h = await vm.waitHalted();
    expect(h.reason).toBe('insn-limit');
    // every pause really was mid-run
    for (const p of points) expect(p).toBeLessThan(20_000_000);
    expect(await vm.digest()).toBe(ref.digest);
    expect(con.text()).toBe(ref.out);
  }, 60_000);

  it('memstress: a manual migration (export → import into fresh memory) mid-run gives the same digest, at three points', async () => {
    const ref = await baseline(MEMSTRESS);
    for (const at of [2_000_000, 9_000_000, 15_000_000]) {
      const src = vms.create(MEMSTRESS);
      const out1 = collectConsole(src);
      src.start();
      await waitInstret(src, at);
      const dst = vms.track(await migrateByHand(src));
      expect(src.state).toBe('destroyed');
      const movedAt = dst.retired;
      expect(movedAt).toBeGreaterThan(at);
      expect(movedAt, 'migrated mid-run').toBeLessThan(20_000_000);
      const out2 = collectConsole(dst);
      dst.start();
      expect(await dst.waitHalted()).toEqual({ exitCode: 0, reason: 'insn-limit' });
      expect(dst.instret()).toBe(20_000_000);
      expect(await dst.digest(), `migrated at instret ${movedAt}`).toBe(ref.digest);
      expect(out1.text() + out2.text()).toBe(ref.out);
      await dst.destroy();
    }
  }, 90_000);

  it('sieve n=200000: migrated at exact instruction counts, same digest and same output', async () => {
    const ref = await baseline(SIEVE);
    expect(ref).toMatchObject({ exitCode: 0, reason: 'poweroff', out: 'sieve: n=200000 primes=17984\n' });
    for (const at of [400_000, 1_700_000, 3_000_000]) {
      expect(at).toBeLessThan(ref.instret);
      const src = vms.create(SIEVE);
      const out1 = collectConsole(src);
      await src.step(at);
      expect(src.instret()).toBe(at);
      const dst = vms.track(await migrateByHand(src));
      expect(dst.retired).toBe(at);
      const out2 = collectConsole(dst);
      dst.start();
      expect(await dst.waitHalted()).toEqual({ exitCode: 0, reason: 'poweroff' });
      expect(dst.instret()).toBe(ref.instret);
      expect(await dst.digest(), `migrated at instret ${at}`).toBe(ref.digest);
      expect(out1.text() + out2.text()).toBe(ref.out);
      await dst.destroy();
    }
  }, 90_000);

  it('life gens=0 with a limit: migrated mid-run (twice in a row), same digest', async () => {
    const ref = await baseline(LIFE);
    expect(ref.reason).toBe('insn-limit');
    expect(ref.out).toMatch(/^life: w=256 h=256 seed=1 base=0x[0-9a-f]{8}\n/);
    let vm = vms.create(LIFE);
    const outs = [collectConsole(vm)];
    vm.start();
    const points: number[] = [];
    for (const at of [2_500_000, 9_000_000]) {
      await waitInstret(vm, at);
      vm = vms.track(await migrateByHand(vm));
      points.push(vm.retired);
      outs.push(collectConsole(vm));
      vm.start();
    }
    for (const p of points) expect(p).toBeLessThan(15_000_000);
    expect(await vm.waitHalted()).toEqual({ exitCode: 0, reason: 'insn-limit' });
    expect(await vm.digest(), `migrated at ${points.join(', ')}`).toBe(ref.digest);
    expect(outs.map((o) => o.text()).join('')).toBe(ref.out);
  }, 90_000);
});

describe('console and real-time guests', () => {
  it('hello prints exactly "hello from ferry\\n" and powers off with 0', async () => {
    const vm = vms.create({ elf: loadElf('hello'), memory: 16 * MiB });
    const con = collectConsole(vm);
    const states: string[] = [];
    vm.on('state', (s: string) => states.push(s));
    vm.start();
    expect(await vm.waitHalted()).toEqual({ exitCode: 0, reason: 'poweroff' });
    expect(con.text()).toBe('hello from ferry\n');
    expect(states).toEqual(['running', 'halted']);
  }, 30_000);

  it('counter (20 ms, 5 ticks) prints tick 1..5 exactly, across a 100 ms pause; nothing is printed while paused', async () => {
    const vm = vms.create({ elf: loadElf('counter'), memory: 16 * MiB, args: ['period_ms=20', 'ticks=5'] });
    const con = collectConsole(vm);
    vm.start();
    await waitFor(() => con.text().includes('tick 2\n'), 'tick 2');
    await vm.pause();
    const during = con.text();
    const at = vm.instret();
    await sleep(100);
    expect(con.text()).toBe(during);
    expect(vm.instret()).toBe(at);
    vm.resume();
    expect(await vm.waitHalted()).toEqual({ exitCode: 0, reason: 'poweroff' });
    expect(con.text()).toBe('tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n');
  }, 30_000);

  it('an idle guest (counter waiting 1 s in wfi) costs under 25 % of one core', async () => {
    const vm = vms.create({ elf: loadElf('counter'), memory: 16 * MiB, args: ['period_ms=1000'] });
    const con = collectConsole(vm);
    vm.start();
    await waitFor(() => con.text().includes('tick 1\n'), 'tick 1');
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await sleep(1000);
    const c = process.cpuUsage(c0);
    const wallUs = (performance.now() - t0) * 1000;
    const share = (c.user + c.system) / wallUs;
    expect(share, `CPU share while the guest idles: ${(share * 100).toFixed(1)} %`).toBeLessThan(0.25);
    expect(vm.state).toBe('running');
    expect(con.text()).toMatch(/^tick 1\n(tick 2\n)?$/);
  }, 30_000);

  it('pause lands: afterwards instret stays constant and the state is paused', async () => {
    const vm = vms.create({ ...MEMSTRESS, insnLimit: 0 });
    vm.start();
    await waitInstret(vm, 1_000_000);
    await vm.pause();
    expect(vm.state).toBe('paused');
    const a = vm.instret();
    const pc = vm.info().pc;
    await sleep(50);
    expect(vm.instret()).toBe(a);
    expect(vm.retired).toBe(a);
    expect(vm.info()).toMatchObject({ state: 'paused', instret: a, pc });
    // a digest of a paused VM is stable too
    const d1 = await vm.digest();
    await sleep(10);
    expect(await vm.digest()).toBe(d1);
  }, 30_000);

  it('console input: bytes sent to a running guest come back from echo, in order', async () => {
    const vm = vms.create({ elf: loadElf('echo'), memory: 16 * MiB });
    const con = collectConsole(vm);
    vm.start();
    await waitFor(() => con.text().includes('echo: ready\n'), 'echo ready');
    const text = 'the quick brown fox '.repeat(300); // larger than the 4 KiB input ring
    vm.sendInput(Buffer.from(text, 'latin1'));
    await waitFor(() => con.text().length >= 'echo: ready\n'.length + text.length, 'echoed text', 20_000);
    vm.sendInput(Uint8Array.of(4));
    expect(await vm.waitHalted()).toEqual({ exitCode: 0, reason: 'poweroff' });
    expect(con.text()).toBe(`echo: ready\n${text}echo: bye\n`);
  }, 30_000);

  it('stop halts a running guest for good; its state stays readable', async () => {
    const vm = vms.create({ ...MEMSTRESS, insnLimit: 0 });
    vm.start();
    await waitInstret(vm, 100_000);
    await vm.stop();
    expect(vm.state).toBe('halted');
    expect(vm.info().haltReason).toBe('stopped');
    const n = vm.instret();
    await sleep(30);
    expect(vm.instret()).toBe(n);
    expect(isHex64(await vm.digest())).toBe(true);
    vm.start(); // a halted guest does not run again
    await sleep(30);
    expect(vm.instret()).toBe(n);
  }, 30_000);

  it('destroy ends the VM: later commands fail with EDESTROYED', async () => {
    const vm: Vm = vms.create({ ...MEMSTRESS, insnLimit: 0 });
    vm.start();
    await waitInstret(vm, 10_000);
    await vm.destroy();
    expect(vm.state).toBe('destroyed');
    let err: unknown;
    try {
      vm.start();
    } catch (e) {
      err = e;
    }
    expect((err as FerryError).code).toBe('EDESTROYED');
  }, 30_000);
});
