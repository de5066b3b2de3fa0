// The machine state beyond RAM and the general registers (issue 15): the PMP registers in the CPU
// words, the PLIC and the goldfish RTC among the devices. Each is exported with the guest's
// values, counted by the digest, checked on import, and carried by a migration, by hand at exact
// instruction counts (the alarm's own instruction among them) and between hosts in every mode.
import { afterEach, describe, expect, it } from 'vitest';
import { PMP_ENTRIES, readInstret, S_PMPADDR0, S_PMPCFG0 } from '../../src/cpu/state.ts';
import { GuestMemory } from '../../src/memory/guest-memory.ts';
import { vmStateSchema } from '../../src/vm/state-schema.ts';
import { Vm, type VmCreateOptions, type VmStateExport } from '../../src/vm/vm.ts';
import { collectConsole, loadElf, MiB, migrateByHand, vmTracker, waitFor } from '../support/helpers.ts';
import {
  finalDigest, guestRunningOnA, hostTracker, migrate, migrateAndCompare, oracleDigest, type GuestSpec,
} from '../support/migration-helpers.ts';

const vms = vmTracker();
const hosts = hostTracker();
afterEach(async () => {
  await vms.destroyAll();
  await hosts.cleanup();
});

const LIMIT = 3_000_000;
/** An alarm every 100 µs: under --icount an interrupt every 1000 instructions. */
const PLATFORM: VmCreateOptions = {
  elf: loadElf('platform'), memory: 16 * MiB, icount: true, insnLimit: LIMIT, args: ['period_us=100', 'every=200', 'limit=0'],
};

/** RTC time 2024-01-01T00:00:00Z, as the guest sets it: its high word. */
const RTC_HIGH_2024 = 0x17a6dc78;

async function baseline(): Promise<{ digest: string; out: string }> {
  const vm = vms.create(PLATFORM);
  const con = collectConsole(vm);
  vm.start();
  expect(await vm.waitHalted()).toEqual({ exitCode: 0, reason: 'insn-limit' });
  const digest = await vm.digest();
  await vm.destroy();
  return { digest, out: con.text() };
}

async function exportedAt(at: number): Promise<VmStateExport> {
  const vm = vms.create(PLATFORM);
  await vm.step(at);
  const st = vm.exportState();
  await vm.destroy();
  return st;
}

const u64 = (hi: number, lo: number): bigint => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);

/** The instruction count at which the running RTC alarm of `st` fires (mtime = instret + a fixed offset). */
function alarmInstret(st: VmStateExport): number {
  const r = st.devices.rtc;
  expect(r.alarmRunning).toBe(1);
  const offset = BigInt.asIntN(64, u64(r.offsetHi, r.offsetLo));
  const mtime = Number((u64(r.alarmHi, r.alarmLo) - offset + 99n) / 100n);
  return readInstret(Int32Array.from(st.cpu)) + (mtime - st.devices.clock.mtime);
}

async function digestOfImported(st: VmStateExport, ramFrom: Vm): Promise<string> {
  const mem = GuestMemory.allocate(ramFrom.memory.size);
  mem.ram.set(ramFrom.memory.ram);
  mem.pageState.set(ramFrom.memory.pageState);
  const vm = vms.track(Vm.importState(mem, structuredClone(st)));
  return vm.digest();
}

describe('the PMP, PLIC and RTC state of a running guest', () => {
  it('is exported with the values the guest wrote', async () => {
    const st = await exportedAt(1_000_000);
    const cpu = st.cpu;
    expect(cpu.length).toBe(S_PMPADDR0 + PMP_ENTRIES);
    expect(cpu[S_PMPCFG0]! >>> 0).toBe(0x0b00001f);
    expect(cpu[S_PMPCFG0 + 2]! >>> 0).toBe(0x00001900);
    expect(cpu[S_PMPADDR0]! >>> 0).toBe(0xffffffff);
    expect(cpu[S_PMPADDR0 + 3]! >>> 0).toBe(0x20000400);
    expect(cpu[S_PMPADDR0 + 9]! >>> 0).toBe(0x2000ffff);
    const { plic, rtc } = st.devices;
    expect(plic.priority.slice(0, 13)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4]);
    expect(plic.enable).toEqual([(1 << 11) | 2, 0, 0x80000001, 1 << 10, 0, 0]);
    expect(plic.threshold).toEqual([1, 5]);
    expect(rtc).toMatchObject({ irqEnabled: 1, alarmRunning: 1 });
    // a million instructions are 100 ms of deterministic time after the guest set 2024-01-01
    const now = u64(rtc.offsetHi, rtc.offsetLo) + BigInt(st.devices.clock.mtime) * 100n;
    expect(Number(BigInt.asUintN(64, now) >> 32n)).toBe(RTC_HIGH_2024);
    expect(vmStateSchema.safeParse(st).success).toBe(true);
  });

  it('is in the digest: changing any one of them changes it', async () => {
    const vm = vms.create(PLATFORM);
    await vm.step(700_000);
    const st = vm.exportState();
    const same = await digestOfImported(st, vm);
    expect(same).toBe(await vm.digest());
    const edits: [string, (s: VmStateExport) => void][] = [
      ['pmpaddr9', (s) => { s.cpu[S_PMPADDR0 + 9] = 0x1234; }],
      ['pmpcfg3', (s) => { s.cpu[S_PMPCFG0 + 3] = 0x18; }],
      ['a PLIC priority', (s) => { s.devices.plic.priority[40] = 1; }],
      ['a PLIC enable word', (s) => { s.devices.plic.enable[4] = 1; }],
      ['the S-context threshold', (s) => { s.devices.plic.threshold[1] = 4; }],
      ['a claimed source', (s) => { s.devices.plic.claimed[0] = 1 << 11; }],
      ['the RTC offset', (s) => { s.devices.rtc.offsetLo = (s.devices.rtc.offsetLo + 1) >>> 0; }],
      ['the RTC alarm', (s) => { s.devices.rtc.alarmHi = 0x7fff_0000; }],
      ['the RTC interrupt enable', (s) => { s.devices.rtc.irqEnabled = 0; }],
      ['the RTC latched high word', (s) => { s.devices.rtc.timeHigh = 7; }],
    ];
    for (const [what, edit] of edits) {
      const changed = structuredClone(st);
      edit(changed);
      expect(await digestOfImported(changed, vm), what).not.toBe(same);
    }
  });

  it('is checked on import: a value no register can hold is refused', async () => {
    const st = await exportedAt(200_000);
    const bad: [string, (s: VmStateExport) => void][] = [
      ['a priority of 8', (s) => { s.devices.plic.priority[3] = 8; }],
      ['a priority for source 0', (s) => { s.devices.plic.priority[0] = 1; }],
      ['97 sources missing one', (s) => { s.devices.plic.priority.pop(); }],
      ['a third context', (s) => { s.devices.plic.threshold.push(0); }],
      ['an enable word past 32 bits', (s) => { s.devices.plic.enable[0] = 2 ** 32; }],
      ['an RTC flag of 2', (s) => { s.devices.rtc.alarmRunning = 2; }],
      ['no RTC', (s) => { delete (s.devices as Partial<VmStateExport['devices']>).rtc; }],
      ['the 48 CPU words of version 1', (s) => { s.cpu.length = 48; }],
    ];
    for (const [what, edit] of bad) {
      const s = structuredClone(st);
      edit(s);
      expect(vmStateSchema.safeParse(s).success, what).toBe(false);
    }
    expect(vmStateSchema.safeParse({ ...st, version: 1 }).success, 'version 1').toBe(false);
  });
});

describe('migrated by hand at exact instruction counts, the run goes on as if never moved', () => {
  it('same digest and same output, the alarm instruction itself and its neighbours included', async () => {
    const ref = await baseline();
    expect(ref.out).toMatch(/^platform: period 100 us, pmpcfg0=0x0b00001f pmpaddr3=0x20000400\n(platform: \d+ interrupts, round \d+, rtc high 0x17a6dc78\n){10,}$/);
    const mid = alarmInstret(await exportedAt(1_500_000));
    for (const at of [123_457, mid - 1, mid, mid + 1, mid + 3, 2_750_001]) {
      const src = vms.create(PLATFORM);
      const out1 = collectConsole(src);
      await src.step(at);
      expect(src.instret()).toBe(at);
      const dst = vms.track(await migrateByHand(src));
      const out2 = collectConsole(dst);
      dst.start();
      expect(await dst.waitHalted()).toEqual({ exitCode: 0, reason: 'insn-limit' });
      expect(await dst.digest(), `migrated at instret ${at}`).toBe(ref.digest);
      expect(out1.text() + out2.text()).toBe(ref.out);
      await dst.destroy();
    }
  }, 90_000);

  it('in real time, the RTC keeps its time and its alarms keep coming after the move', async () => {
    const vm = vms.create({ ...PLATFORM, icount: false, insnLimit: 0, args: ['period_us=200', 'every=100', 'limit=0'] });
    const out1 = collectConsole(vm);
    vm.start();
    const taken = (text: string): number[] => [...text.matchAll(/platform: (\d+) interrupts/g)].map((m) => Number(m[1]));
    await waitFor(() => Math.max(0, ...taken(out1.text())) >= 200, 'the guest took 200 alarms', 20_000);
    await vm.pause();
    const before = vm.exportState().devices.rtc;
    const moved = vms.track(await migrateByHand(vm));
    expect(moved.exportState().devices.rtc).toEqual(before);
    const out2 = collectConsole(moved);
    moved.start();
    const tookBefore = Math.max(...taken(out1.text()));
    await waitFor(() => Math.max(0, ...taken(out2.text())) >= tookBefore + 200, '200 more alarms on the destination', 20_000);
    const counts = taken(out1.text() + out2.text());
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    expect(out2.text()).toMatch(/rtc high 0x17a6dc78/);
  }, 60_000);
});

describe('the UART interrupt across a move', () => {
  it('a guest asleep in wfi waiting for its receive interrupt is moved, then typed to on the destination: it wakes and answers', async () => {
    const vm = vms.create({ elf: loadElf('uartirq'), memory: 16 * MiB });
    const out1 = collectConsole(vm);
    vm.start();
    await waitFor(() => out1.text().includes('uartirq: ready\n'), 'the guest to be ready', 20_000);
    vm.sendInput(new TextEncoder().encode('before\n'));
    await waitFor(() => out1.text().includes('> BEFORE\n'), 'the first answer', 20_000);
    await vm.pause();
    const st = vm.exportState();
    expect(st.devices.uart.ier).toBe(1);
    expect(st.devices.plic.enable[0]).toBe(1 << 10);
    const moved = vms.track(await migrateByHand(vm));
    const out2 = collectConsole(moved);
    moved.start();
    moved.sendInput(new TextEncoder().encode('after the move\nquit\n'));
    expect(await moved.waitHalted()).toEqual({ exitCode: 0, reason: 'poweroff' });
    expect(out1.text() + out2.text()).toBe('uartirq: ready\n> BEFORE\n> AFTER THE MOVE\nuartirq: 2 lines\n');
  }, 60_000);
});

describe('U-mode under PMP, migrated while it runs', () => {
  // usermode in U-mode: its stores go through U-mode's own TLB, which must forget a page whenever
  // the dirty log does, or a page written after a round would not be sent again.
  const g: GuestSpec = { program: 'usermode', memory: 16 * MiB, args: ['rounds=1000000'], insnLimit: 120_000_000 };
  for (const mode of ['precopy', 'postcopy'] as const) {
    it(`${mode} reaches the unmigrated digest`, async () => {
      const s = await migrateAndCompare(hosts, g, `usermode-${mode}`, mode === 'precopy' ? { mode, downtimeLimitMs: 1, maxRounds: 3, switchoverAtMaxRounds: true } : { mode }, 0.3);
      expect(s.mode).toBe(mode);
    }, 90_000);
  }
});

describe('migrated between hosts, the run reaches the unmigrated digest', () => {
  const g: GuestSpec = { program: 'platform', memory: 16 * MiB, args: ['period_us=100', 'every=500', 'limit=0'], insnLimit: 60_000_000 };
  for (const mode of ['precopy', 'postcopy', 'hybrid'] as const) {
    it(`${mode}, mid-run`, async () => {
      const s = await migrateAndCompare(hosts, g, `platform-${mode}`, { mode }, 0.4);
      expect(s.mode).toBe(mode);
    }, 90_000);
  }

  it('cold, paused mid-run and resumed on the destination', async () => {
    const oracle = oracleDigest(g);
    const { b, ca, cb } = await guestRunningOnA(hosts, g, 'platform-cold', 0.4);
    await ca.request('vm.pause', { name: 'platform-cold' });
    const s = await migrate(ca, 'platform-cold', { to: b.url, mode: 'cold' });
    expect(s).toMatchObject({ status: 'completed', mode: 'cold' });
    await cb.request('vm.resume', { name: 'platform-cold' });
    expect(await finalDigest(cb, 'platform-cold')).toBe(await oracle);
  }, 90_000);
});
