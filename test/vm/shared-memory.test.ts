// Interleaving stress for the shared-memory handshakes (docs/shared-memory.md): a real Vm with a
// real vCPU thread, driven through thousands of commands, dirty-log rounds and post-copy fills
// from both threads. Every check is on what the handshakes promise, never on how long they take.
import { afterEach, describe, expect, it } from 'vitest';
import { createCpuState } from '../../src/cpu/state.ts';
import { GuestMemory } from '../../src/memory/guest-memory.ts';
import { PAGE_EVER_WRITTEN, PAGE_PRESENT, RAM_BASE } from '../../src/memory/layout.ts';
import { encodePages } from '../../src/memory/page-frame.ts';
import { Vm, type VmCreateOptions } from '../../src/vm/vm.ts';
import { collectConsole, loadElf, MiB, PAGE, vmTracker, waitFor, waitInstret } from '../support/helpers.ts';

const vms = vmTracker();
afterEach(() => vms.destroyAll());

/** A deterministic generator, so a failing run can be replayed (FERRY_SHM_SEED). */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}
const SEED = Number(process.env.FERRY_SHM_SEED ?? Date.now() % 1_000_000);
/** FERRY_SHM_VERBOSE=1 prints what each stress test went through. */
function report(what: string, figures: Record<string, number>): void {
  if (process.env.FERRY_SHM_VERBOSE) console.log(`${what}: ${JSON.stringify(figures)}`);
}

/** Busy-waits a few microseconds: lands the next host store at a random point of the vCPU's wake-up. */
function spinMicros(us: number): void {
  const end = performance.now() + us / 1000;
  while (performance.now() < end);
}

function expectSameRam(shadow: Uint8Array, ram: Uint8Array, what: string): void {
  const a = Buffer.from(shadow.buffer, shadow.byteOffset, shadow.byteLength);
  const b = Buffer.from(ram.slice());
  if (Buffer.compare(a, b) !== 0) {
    let i = 0;
    while (a[i] === b[i]) i++;
    expect.fail(`${what}: shadow differs from RAM at page ${Math.floor(i / PAGE)} (offset 0x${i.toString(16)}): ${a[i]} vs ${b[i]}`);
  }
}

/** memstress's invariant: page counters equal, but for one step down by one (mod 256). */
function checkMemstress(ram: Uint8Array, baseOff: number, pages: number): void {
  let steps = 0;
  for (let i = 1; i < pages; i++) {
    const prev = ram[baseOff + (i - 1) * PAGE]!;
    const cur = ram[baseOff + i * PAGE]!;
    if (cur === prev) continue;
    if (cur === ((prev - 1) & 255)) steps++;
    else expect.fail(`memstress page ${i}: ${cur} after ${prev}`);
  }
  expect(steps).toBeLessThanOrEqual(1);
}

function memstressLayout(out: string): { baseOff: number; pages: number } {
  const m = /^memstress: ws_mib=\d+ base=0x([0-9a-f]{8}) pages=(\d+)\n/.exec(out);
  if (!m) expect.fail(`no memstress banner in ${JSON.stringify(out.slice(0, 80))}`);
  return { baseOff: parseInt(m[1]!, 16) - RAM_BASE, pages: Number(m[2]) };
}

describe('control block: commands', () => {
  it('a step retires exactly N, thousands of times, with the vCPU woken at random points as the command lands', async () => {
    const random = rng(SEED);
    const vm = vms.create({ elf: loadElf('sieve'), memory: 16 * MiB, icount: true, args: ['n=4000000', 'reps=100000'] });
    await vm.step(1);
    const CYCLES = 12_000;
    const wrong: string[] = [];
    for (let i = 0; i < CYCLES; i++) {
      // A real Pause first (a step right after a step writes the same command kind), so each
      // step is a change of kind, as in the command word's history that tore.
      vm.resume();
      await vm.pause();
      const before = vm.instret();
      const n = 1 + Math.floor(random() * 3000);
      vm.wakeVcpu();
      spinMicros(random() * 60);
      await vm.step(n);
      const after = vm.instret();
      if (after - before !== n || vm.retired !== after) wrong.push(`cycle ${i}: step(${n}) retired ${after - before} (state says ${vm.retired - before})`);
      if (wrong.length >= 5) break;
    }
    expect(wrong, `seed ${SEED}`).toEqual([]);
    expect(vm.state).toBe('paused');
    report('steps', { seed: SEED, cycles: CYCLES, instret: vm.instret() });
  }, 60_000);

  it('a paused guest stays put: pause/resume cycles on a wfi guest (counter) and a busy one (sieve), each pause followed by a round trip', async () => {
    const random = rng(SEED + 1);
    const idle = vms.create({ elf: loadElf('counter'), memory: 16 * MiB, args: ['period_ms=2'] });
    const busy = vms.create({ elf: loadElf('sieve'), memory: 16 * MiB, args: ['n=4000000', 'reps=100000'] });
    const idleOut = collectConsole(idle);
    for (const vm of [idle, busy]) vm.start();
    await waitFor(() => idleOut.text().includes('tick 1\n'), 'counter tick 1');
    await waitInstret(busy, 100_000);
    for (let i = 0; i < 1500; i++) {
      const vm = i % 2 === 0 ? idle : busy;
      await vm.pause();
      expect(vm.state).toBe('paused');
      const at = vm.instret();
      const pc = vm.info().pc;
      // Two dirty-log rounds while paused: the first takes what was written before the pause; the
      // vCPU answered both, so it has been awake since, and it ran nothing.
      await vm.syncDirty();
      expect((await vm.syncDirty()).length, 'a paused vCPU writes nothing').toBe(0);
      expect(vm.instret()).toBe(at);
      expect(vm.info().pc).toBe(pc);
      expect(vm.retired).toBe(at);
      if (random() < 0.3) await vm.step(1 + Math.floor(random() * 100));
      vm.resume();
    }
    // the counter ticked on across 750 pauses, in order (the last line may not be complete yet)
    const ticks = idleOut.text().split('\n').slice(0, -1);
    expect(ticks.length).toBeGreaterThan(1);
    ticks.forEach((t, k) => expect(t).toBe(`tick ${k + 1}`));
    report('pauses', { seed: SEED, pauses: 1500, ticks: ticks.length });
  }, 60_000);
});

describe('dirty log', () => {
  it('memstress: thousands of rounds, some concurrent, across pauses and steps; a shadow kept from harvested pages equals RAM at every pause', async () => {
    const random = rng(SEED + 2);
    const vm = vms.create({ elf: loadElf('memstress'), memory: 16 * MiB, args: ['ws_mib=4'] });
    const con = collectConsole(vm);
    vm.start();
    await waitFor(() => con.text().includes('\n'), 'memstress banner');
    await waitInstret(vm, 500_000);
    const { baseOff, pages: wsPages } = memstressLayout(con.text());
    const ram = vm.memory.ram;
    await vm.syncDirty(); // a fresh epoch: from here every write is in a log a round will harvest
    const shadow = ram.slice();
    const copy = (pages: Uint32Array | number[]): void => {
      for (const p of pages) shadow.set(ram.subarray(p * PAGE, (p + 1) * PAGE), p * PAGE);
    };
    const ROUNDS = 2500;
    let reported = 0;
    let checks = 0;
    for (let r = 0; r < ROUNDS; r++) {
      if (random() < 0.2) {
        // Two rounds at once: they must run one after the other (a second switch while the first
        // log is being cleared would lose pages).
        const [a, b] = await Promise.all([vm.syncDirty(), vm.syncDirty()]);
        copy(a);
        copy(b);
        reported += a.length + b.length;
      } else {
        const pages = await vm.syncDirty();
        copy(pages);
        reported += pages.length;
      }
      if (r % 100 === 99) {
        await vm.pause();
        // Stopped: either one more round or both logs directly, whichever; nothing may be missing.
        copy(random() < 0.5 ? await vm.syncDirty() : vm.dirtyWhileStopped());
        expectSameRam(shadow, ram, `pause after round ${r} (seed ${SEED})`);
        checkMemstress(ram, baseOff, wsPages);
        checks++;
        if (random() < 0.5) await vm.step(1 + Math.floor(random() * 200_000));
        vm.resume();
      }
    }
    await vm.pause();
    copy(await vm.syncDirty());
    expectSameRam(shadow, ram, `the end (seed ${SEED})`);
    expect(checks).toBe(ROUNDS / 100);
    expect(reported, 'the log logs: the working set was reported many times over').toBeGreaterThan(wsPages * 10);
    report('dirty log', { seed: SEED, rounds: ROUNDS, pagesReported: reported, ramChecks: checks });
  }, 60_000);
});

describe('dirty log taken while stopped', () => {
  it('a log harvested directly while paused misses nothing written after the resume (the vCPU forgets which pages it had marked)', async () => {
    const vm = vms.create({ elf: loadElf('memstress'), memory: 16 * MiB, args: ['ws_mib=1'] });
    const con = collectConsole(vm);
    vm.start();
    await waitFor(() => con.text().includes('\n'), 'memstress banner');
    const ram = vm.memory.ram;
    await vm.pause();
    vm.dirtyWhileStopped();
    const shadow = ram.slice();
    for (let k = 0; k < 40; k++) {
      // The working set has been written (and marked) since the last switch; take both logs
      // without a switch, as a stop-and-copy does, then let it run a little and look again.
      vm.resume();
      await waitInstret(vm, vm.instret() + 300_000);
      await vm.pause();
      const pages = vm.dirtyWhileStopped();
      for (const p of pages) shadow.set(ram.subarray(p * PAGE, (p + 1) * PAGE), p * PAGE);
      expectSameRam(shadow, ram, `stop ${k}`);
    }
  }, 60_000);
});

/**
 * A post-copy destination built by hand from a paused source, as an incoming migration builds it:
 * a VM that has not run, whose pages the source ever wrote are either sent ahead (a `precopied`
 * share of them, posted as pre-copy frames, present) or missing (not present, RAM zero); every
 * other page is present and zero. Restore it to run it.
 */
function postcopyDestination(src: Vm, precopied: number, random: () => number): { dst: Vm; missing: number[] } {
  const mem = GuestMemory.allocate(src.memory.size);
  const missing: number[] = [];
  const sent: number[] = [];
  for (let p = 0; p < mem.pages; p++) {
    if (!src.memory.everWritten(p)) continue;
    if (random() < precopied) {
      mem.pageState[p] = PAGE_PRESENT | PAGE_EVER_WRITTEN;
      sent.push(p);
    } else {
      mem.pageState[p] = PAGE_EVER_WRITTEN;
      missing.push(p);
    }
  }
  const st = src.exportState();
  const dst = vms.track(new Vm(mem, createCpuState(), { ...st.config }, st.insnLimit));
  for (let k = 0; k < sent.length; k += 64) dst.postPageFrame(new Uint8Array(encodePages(src.memory.ram, sent, k, Math.min(k + 64, sent.length)).frame));
  return { dst, missing };
}

describe('post-copy pager', () => {
  const GUEST: VmCreateOptions = { elf: loadElf('memstress'), memory: 16 * MiB, icount: true, insnLimit: 12_000_000, args: ['ws_mib=4'] };

  it('fills from two threads: each missing page filled exactly once, requested at most once, no page-state bit lost, the unmigrated digest', async () => {
    const random = rng(SEED + 3);
    const ref = vms.create(GUEST);
    ref.start();
    await ref.waitHalted();
    const oracle = await ref.digest();
    await ref.destroy();

    let pagesMoved = 0;
    for (const at of [300_000, 600_000, 3_000_000, 5_000_000, 7_000_000, 10_000_000]) {
      const src = vms.create(GUEST);
      await src.step(at);
      // Pre-copy frames go first; the restore writes every one of them before the guest runs.
      const { dst, missing } = postcopyDestination(src, 0.3, random);
      const srcRam = src.memory.ram;
      const frameOf = (pages: number[]): Uint8Array => new Uint8Array(encodePages(srcRam, pages, 0, pages.length).frame);

      const filledHere: number[] = [];
      const faults = new Map<number, number>();
      let faulted: () => void = () => {};
      const someFaults = new Promise<void>((resolve) => { faulted = resolve; });
      dst.acceptPostcopyPages();
      dst.on('fault', (page: number) => {
        faults.set(page, (faults.get(page) ?? 0) + 1);
        if (faults.size === 50) faulted();
        // Served from the host thread, as the priority channel's page would be.
        filledHere.push(...dst.fillMissingPages(frameOf([page])));
      });
      await dst.restore(src.exportState(), 'running');
      // Demand paging alone first, then the push while the guest keeps faulting.
      await someFaults;

      // The background push, in shuffled chunks posted to the vCPU thread, while this thread fills
      // pages of the same and the previous chunk itself: both threads claim the same pages.
      const order = [...missing];
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      let previous: number[] = [];
      for (let k = 0; k < order.length; k += 16) {
        const chunk = order.slice(k, k + 16);
        dst.postPageFrame(frameOf(chunk));
        const mine = [...chunk, ...previous].filter(() => random() < 0.4);
        if (mine.length > 0) filledHere.push(...dst.fillMissingPages(frameOf(mine)));
        previous = chunk;
        await new Promise((r) => setImmediate(r)); // faults are served between chunks
      }
      // Every pushed frame is written by the vCPU thread, however it runs (waits on its done counter).
      for (let seen = dst.pageFramesDone(); dst.pageFramesPending() > 0; seen = dst.pageFramesDone()) await dst.pageFramesDoneAfter(seen, 1000);

      const ps = dst.memory.pageState;
      const bad = missing.filter((p) => Atomics.load(ps, p) !== (PAGE_PRESENT | PAGE_EVER_WRITTEN)).slice(0, 5);
      expect(bad.map((p) => `page ${p}: state ${Atomics.load(ps, p)}`), `seed ${SEED}`).toEqual([]);
      expect(new Set(filledHere).size, 'no page filled twice on the host thread').toBe(filledHere.length);
      // Each missing page became present exactly once: host fills plus vCPU fills add up to them.
      expect(filledHere.length + dst.pagesFilled(), `seed ${SEED}`).toBe(missing.length);
      expect([...faults.values()].every((n) => n === 1), 'each page requested at most once').toBe(true);
      expect(dst.traps()).toBeGreaterThanOrEqual(faults.size);

      expect(await dst.waitHalted()).toEqual({ exitCode: 0, reason: 'insn-limit' });
      expect(await dst.digest(), `post-copy at instret ${at} (seed ${SEED})`).toBe(oracle);
      pagesMoved += missing.length;
      report('post-copy', { seed: SEED, at, missing: missing.length, filledByHost: filledHere.length, filledByVcpu: dst.pagesFilled(), faults: faults.size, traps: dst.traps() });
      await Promise.all([src.destroy(), dst.destroy()]);
    }
    expect(pagesMoved).toBeGreaterThan(3000);
  }, 60_000);

  it('a guest faulting on page after page answers its host between faults: progress is published and a pause lands after the fault in hand', async () => {
    const src = vms.create(GUEST);
    await src.step(5_000_000); // the 4 MiB working set written: every page of it will be missing
    const { dst, missing } = postcopyDestination(src, 0, Math.random);
    expect(missing.length).toBeGreaterThan(1000);
    const frameOf = (page: number): Uint8Array => new Uint8Array(encodePages(src.memory.ram, [page], 0, 1).frame);
    let served = 0;
    const instretAtFault: number[] = [];
    let paused: Promise<void> | undefined;
    let servedAtPause = -1;
    dst.acceptPostcopyPages();
    // Each fault is served a millisecond or more later, as a network round trip would be (a slice,
    // SLICE_MS, is 1 ms: the slice that waited for it ends after the access).
    dst.on('fault', (page: number) => {
      instretAtFault.push(dst.instret());
      if (instretAtFault.length === 20) {
        servedAtPause = served;
        paused = dst.pause();
      }
      setTimeout(() => {
        dst.fillMissingPages(frameOf(page));
        served++;
      }, 1);
    });
    const at = src.instret();
    await dst.restore(src.exportState(), 'running');
    await waitFor(() => paused !== undefined, '20 faults');
    await paused;
    // What retired between faults is published as it retires, not after a whole budget of faults.
    expect(instretAtFault.slice(2, 20).every((n) => n > at), `instret at each fault: ${instretAtFault.slice(0, 20).join(' ')}`).toBe(true);
    // The fault in hand is finished (it may need one more page: an access that crosses into one), then it stops.
    expect(served - servedAtPause, 'faults served between the pause request and the pause').toBeLessThanOrEqual(2);
    expect(dst.state).toBe('paused');
    const pausedAt = dst.instret();
    await new Promise((r) => setTimeout(r, 50));
    expect(dst.instret()).toBe(pausedAt);
    await Promise.all([src.destroy(), dst.destroy()]);
  }, 30_000);

  it('a vCPU blocked on a page that never comes: destroy ends its wait, and later rounds fail with EDESTROYED', async () => {
    const src = vms.create(GUEST);
    await src.step(2_000_000);
    const { dst } = postcopyDestination(src, 0, Math.random);
    const errors: Error[] = [];
    dst.on('error', (e: Error) => errors.push(e));
    const faulted = new Promise<number>((resolve) => dst.once('fault', resolve));
    dst.acceptPostcopyPages();
    await dst.restore(src.exportState(), 'running');
    const page = await faulted;
    expect(Atomics.load(dst.memory.pageState, page) & PAGE_PRESENT).toBe(0);
    await dst.destroy();
    expect(dst.state).toBe('destroyed');
    expect(errors).toEqual([]);
    await expect(dst.syncDirty()).rejects.toMatchObject({ code: 'EDESTROYED' });
  }, 30_000);
});
