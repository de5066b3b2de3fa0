// The dirty-log handshake (DESIGN §3): a host that copies only the pages each sync reports,
// while the vCPU keeps writing, ends with an exact copy of RAM once the vCPU is paused.
import { afterEach, describe, expect, it } from 'vitest';
import { GuestMemory } from '../../src/memory/guest-memory.ts';
import { PAGE_EVER_WRITTEN, PAGE_PRESENT, RAM_BASE } from '../../src/memory/layout.ts';
import { bootElf } from '../../src/vm/boot.ts';
import { Machine } from '../../src/vm/machine.ts';
import { StepExit } from '../../src/cpu/cpu.ts';
import { collectConsole, loadElf, MiB, PAGE, sleep, vmTracker, waitFor, waitInstret } from '../support/helpers.ts';

const vms = vmTracker();
afterEach(() => vms.destroyAll());

function copyPages(shadow: Uint8Array, ram: Uint8Array, pages: Uint32Array): void {
  for (const p of pages) shadow.set(ram.subarray(p * PAGE, (p + 1) * PAGE), p * PAGE);
}

/** Byte-for-byte equality of two RAM images; on mismatch, names the first differing page. */
function expectSameRam(shadow: Uint8Array, ram: Uint8Array): void {
  const a = Buffer.from(shadow.slice());
  const b = Buffer.from(ram.slice());
  if (Buffer.compare(a, b) !== 0) {
    let i = 0;
    while (a[i] === b[i]) i++;
    expect.fail(`shadow differs from RAM at offset 0x${i.toString(16)} (page ${Math.floor(i / PAGE)}): ${a[i]} vs ${b[i]}`);
  }
}

/** Parses memstress's first line: RAM offset of the working set and its page count. */
function memstressLayout(out: string): { baseOff: number; pages: number } {
  const m = /^memstress: ws_mib=(\d+) base=0x([0-9a-f]{8}) pages=(\d+)\n/.exec(out);
  expect(m, `memstress banner in ${JSON.stringify(out.slice(0, 80))}`).not.toBeNull();
  return { baseOff: parseInt(m![2]!, 16) - RAM_BASE, pages: Number(m![3]) };
}

/**
 * memstress invariant: the first byte of each working-set page equals the previous page's or
 * is one less (mod 256), and the "one less" step occurs at most once.
 */
function checkMemstressInvariant(ram: Uint8Array, baseOff: number, pages: number): void {
  let boundaries = 0;
  const bad: string[] = [];
  for (let i = 1; i < pages; i++) {
    const prev = ram[baseOff + (i - 1) * PAGE]!;
    const cur = ram[baseOff + i * PAGE]!;
    if (cur === prev) continue;
    if (cur === ((prev - 1) & 255)) boundaries++;
    else bad.push(`page ${i}: ${cur} after ${prev}`);
  }
  expect(bad).toEqual([]);
  expect(boundaries).toBeLessThanOrEqual(1);
  // and memstress really ran: the counters moved
  expect(ram[baseOff]).not.toBe(0);
}

describe('dirty log with a running vCPU (worker)', () => {
  it('memstress (real time): a shadow kept from synced pages equals RAM after the pause', async () => {
    const vm = vms.create({ elf: loadElf('memstress'), memory: 32 * MiB, args: ['ws_mib=8'] });
    const con = collectConsole(vm);
    vm.start();
    await waitFor(() => con.text().includes('\n'), 'memstress banner');
    await waitInstret(vm, 1_000_000);
    const { baseOff, pages: wsPages } = memstressLayout(con.text());
    expect(wsPages).toBe(2048);
    const ram = vm.memory.ram;

    await vm.syncDirty(); // from here on, every write is in a log we will harvest
    const shadow = ram.slice();
    const wsFirst = baseOff / PAGE;
    const seen = new Set<number>();
    let nonEmpty = 0;
    let copied = 0;
    const ROUNDS = 30;
    for (let r = 0; r < ROUNDS; r++) {
      const before = vm.instret();
      const pages = await vm.syncDirty();
      copyPages(shadow, ram, pages);
      copied += pages.length;
      if (pages.length > 0) nonEmpty++;
      for (const p of pages) {
        expect(p).toBeLessThan(vm.memory.pages);
        seen.add(p);
      }
      expect(vm.state).toBe('running');
      expect(vm.instret()).toBeGreaterThanOrEqual(before);
      if (r % 3 === 0) await sleep(2);
    }
    await vm.pause();
    const last = await vm.syncDirty();
    copyPages(shadow, ram, last);
    expect(vm.state).toBe('paused');

    expectSameRam(shadow, ram);
    // the log really logs: the rounds saw writes, and all of the working set got reported
    expect(nonEmpty).toBeGreaterThanOrEqual(ROUNDS - 2);
    expect(copied).toBeGreaterThan(wsPages);
    for (let p = wsFirst; p < wsFirst + wsPages; p++) {
      if (!seen.has(p)) expect.fail(`working-set page ${p} was never reported dirty`);
    }
    // nothing is written while paused: a further sync reports no pages
    expect((await vm.syncDirty()).length).toBe(0);
    checkMemstressInvariant(ram, baseOff, wsPages);
    checkMemstressInvariant(shadow, baseOff, wsPages);
  }, 60_000);
});

describe('dirty log, in-process', () => {
  it('harvestSwitched takes the inactive log, clears it, and reports host writes', async () => {
    const mem = GuestMemory.allocate(1 * MiB);
    expect(mem.pages).toBe(256);
    mem.hostWrite(3 * PAGE + 10, new Uint8Array([1, 2, 3]));
    mem.hostWrite(8 * PAGE - 1, new Uint8Array([9, 9])); // straddles pages 7 and 8
    mem.hostWrite(255 * PAGE, new Uint8Array(PAGE));
    expect(mem.everWritten(3)).toBe(true);
    expect(mem.everWritten(4)).toBe(false);
    expect(Atomics.load(mem.pageState, 8)).toBe(PAGE_PRESENT | PAGE_EVER_WRITTEN);

    // both sides of a sync in this thread: the host requests, the vCPU switches to log 1 and acknowledges
    const log = mem.dirtyLog;
    const round = log.sync(() => expect(log.serveSwitch((l) => expect(l).toBe(mem.dirtyLogs[1]))).toBe(true), () => {});
    expect(Array.from(await round)).toEqual([3, 7, 8, 255]);
    expect(log.serveSwitch(() => expect.fail('no request is pending'))).toBe(false);
    mem.hostWrite(100 * PAGE, new Uint8Array([7])); // after the switch: lands in log 1
    expect(Array.from(log.harvestSwitched())).toEqual([]); // cleared

    expect(Array.from(await log.sync(() => log.serveSwitch(() => {}), () => {}))).toEqual([100]);
    expect(mem.dirtyLogs[0].every((b) => b === 0)).toBe(true);
    expect(mem.dirtyLogs[1].every((b) => b === 0)).toBe(true);
  });

  it('vCPU writes after a log switch go to the new log (slice-boundary switches, icount memstress)', async () => {
    const mem = GuestMemory.allocate(16 * MiB);
    const boot = bootElf(mem, loadElf('memstress'), ['ws_mib=4']);
    let out = '';
    const m = new Machine(mem, boot.cpuState, { ramSize: mem.size, clock: 'icount', tohost: boot.tohost }, {
      transmit: (c) => { out += String.fromCharCode(c); },
      input: { available: () => false, take: () => 0 },
    });
    // The vCPU's switch, at this thread's slice boundaries (between runToHalt calls).
    const sync = (): Promise<Uint32Array> => mem.dirtyLog.sync(() => mem.dirtyLog.serveSwitch((log) => m.cpu.setDirtyLog(log)), () => {});
    expect(m.runToHalt(200_000)).toBe(StepExit.Budget);
    await sync();
    const shadow = mem.ram.slice();
    let total = 0;
    // odd slice lengths so switches land in the middle of a pass
    for (const n of [12_345, 100_003, 7, 54_321, 250_001, 1, 99_999, 31_337]) {
      expect(m.runToHalt(n)).toBe(StepExit.Budget);
      const pages = await sync();
      total += pages.length;
      copyPages(shadow, mem.ram, pages);
      expectSameRam(shadow, mem.ram);
    }
    expect(total).toBeGreaterThan(1024);
    const { baseOff, pages } = memstressLayout(out);
    expect(pages).toBe(1024);
    checkMemstressInvariant(mem.ram, baseOff, pages);
  });
});

describe('post-copy switch-over bookkeeping', () => {
  it('harvestBothStoppedExcept returns the dirty pages outside a bitmap, from both logs, and clears them', () => {
    const mem = GuestMemory.allocate(MiB); // 256 pages
    const known = new Uint8Array(32);
    for (let p = 0; p < 64; p++) known[p >>> 3]! |= 1 << (p & 7); // pages 0..63 are known
    const [a, b] = mem.dirtyLogs;
    for (const p of [3, 40, 64, 65, 200]) a[p] = 1;
    for (const p of [5, 65, 130, 255]) b[p] = 1;
    expect(mem.dirtyLog.harvestBothStoppedExcept(known)).toEqual([64, 65, 130, 200, 255]);
    expect(a.every((v) => v === 0) && b.every((v) => v === 0)).toBe(true);
    expect(mem.dirtyLog.harvestBothStoppedExcept(known)).toEqual([]);
  });

  it('the first-write ring lists each page once, when it first becomes ever-written', () => {
    const mem = GuestMemory.allocate(MiB);
    mem.pageState.fill(0);
    const since = mem.firstWriteCount();
    for (const p of [7, 9, 7, 200, 9]) mem.markEverWritten(p);
    expect([...mem.firstWritesSince(since)!]).toEqual([7, 9, 200]);
    expect(mem.pageState[7]! & PAGE_EVER_WRITTEN).toBe(PAGE_EVER_WRITTEN);
    expect([...mem.firstWritesSince(mem.firstWriteCount())!]).toEqual([]);
  });
});
