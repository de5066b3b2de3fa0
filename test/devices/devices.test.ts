// Devices (src/devices): UART 16550, CLINT + MachineClock, test finisher, PLIC, goldfish RTC,
// empty virtio-mmio slots, bus. (Their guest-visible behaviour against QEMU: guest-programs/tests.)
// STYLE: every device has a save → restore → same-read test.
import { describe, expect, it } from 'vitest';
import { Clint, CLINT_BASE } from '../../src/devices/clint.ts';
import { MachineClock } from '../../src/devices/clock.ts';
import { Bus, type Device } from '../../src/devices/device.ts';
import { GoldfishRtc } from '../../src/devices/goldfish-rtc.ts';
import { Plic } from '../../src/devices/plic.ts';
import { FINISHER_BASE, TestFinisher } from '../../src/devices/test-finisher.ts';
import { EmptyVirtioMmio } from '../../src/devices/virtio-mmio.ts';
import { Uart16550, UART_BASE, type ByteSource } from '../../src/devices/uart16550.ts';
import { FerryError } from '../../src/errors.ts';

const THR = 0, RBR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;
const LSR_DR = 0x01, LSR_THRE = 0x20, LSR_TEMT = 0x40, DLAB = 0x80;

/** A host input ring fed by the test. */
function source(bytes: number[] = []): ByteSource & { q: number[] } {
  const q = [...bytes];
  return { q, available: () => q.length > 0, take: () => q.shift()! };
}

function uart(input: number[] = []) {
  const out: number[] = [];
  const src = source(input);
  const u = new Uart16550((b) => out.push(b), src);
  return { u, out, src };
}

/** Every UART register read, in both DLAB states, leaving LCR as it was. Consumes nothing. */
function uartRegs(u: Uart16550): number[] {
  const lcr = u.read(LCR, 1);
  const regs = [IER, IIR, LCR, MCR, MSR, SCR].map((r) => u.read(r, 1));
  u.write(LCR, 1, lcr | DLAB);
  regs.push(u.read(DLL, 1), u.read(DLM, 1));
  u.write(LCR, 1, lcr);
  return regs;
}

describe('Uart16550', () => {
  it('THR writes go to the host; LSR always reports the transmitter empty', () => {
    const { u, out } = uart();
    expect(u.read(LSR, 1)).toBe(LSR_THRE | LSR_TEMT);
    for (const c of 'hi\n') u.write(THR, 1, c.charCodeAt(0));
    u.write(THR, 1, 0x1_41); // only the low byte is sent
    expect(Buffer.from(out).toString('latin1')).toBe('hi\nA');
    expect(u.read(LSR, 1) & (LSR_THRE | LSR_TEMT)).toBe(LSR_THRE | LSR_TEMT);
  });

  it('RBR returns host input in order; LSR.DR follows availability', () => {
    const { u, src } = uart([0x61, 0x62]);
    expect(u.read(LSR, 1) & LSR_DR).toBe(LSR_DR);
    expect(u.read(RBR, 1)).toBe(0x61);
    expect(u.read(LSR, 1) & LSR_DR).toBe(LSR_DR);
    expect(u.read(RBR, 1)).toBe(0x62);
    expect(u.read(LSR, 1) & LSR_DR).toBe(0);
    expect(u.read(RBR, 1)).toBe(0); // empty receiver reads 0 and consumes nothing
    src.q.push(0x63);
    expect(u.read(LSR, 1) & LSR_DR).toBe(LSR_DR);
    expect(u.read(RBR, 1)).toBe(0x63);
  });

  it('DLAB switches offsets 0/1 to the divisor latch without transmitting or consuming', () => {
    const { u, out, src } = uart([0x7a]);
    u.write(IER, 1, 0x05);
    u.write(LCR, 1, 0x03 | DLAB);
    u.write(DLL, 1, 0x0c);
    u.write(DLM, 1, 0x01);
    expect(out).toEqual([]); // the DLL write is not a transmit
    expect(u.read(DLL, 1)).toBe(0x0c);
    expect(u.read(DLM, 1)).toBe(0x01);
    expect(src.q).toEqual([0x7a]); // reading DLL does not take a received byte
    u.write(LCR, 1, 0x03);
    expect(u.read(LCR, 1)).toBe(0x03);
    expect(u.read(IER, 1)).toBe(0x05); // IER kept its value under the latch
    u.write(THR, 1, 0x21);
    expect(out).toEqual([0x21]);
    expect(u.read(RBR, 1)).toBe(0x7a);
  });

  it('scratch, MCR, FCR/IIR and IER masks', () => {
    const { u } = uart();
    u.write(SCR, 1, 0xa5);
    expect(u.read(SCR, 1)).toBe(0xa5);
    u.write(MCR, 1, 0xff);
    expect(u.read(MCR, 1)).toBe(0x1f);
    u.write(IER, 1, 0xff);
    expect(u.read(IER, 1)).toBe(0x0f);
    expect(u.read(IIR, 1)).toBe(0x02); // enabling it raised "transmitter empty" (as QEMU does); reading IIR acknowledges it
    expect(u.read(IIR, 1)).toBe(0x01); // no interrupt pending, FIFOs off
    u.write(FCR, 1, 0x01);
    expect(u.read(IIR, 1)).toBe(0xc2); // FIFOs enabled, and reset: the transmitter is empty anew (QEMU too)
    expect(u.read(IIR, 1)).toBe(0xc1);
    expect(u.read(MSR, 1)).toBe(0xb0);
  });

  it('save → restore → same reads, including bytes received but not yet read', () => {
    const a = uart([1, 2, 3]);
    a.u.write(IER, 1, 0x03);
    a.u.write(FCR, 1, 0x01);
    a.u.write(MCR, 1, 0x0b);
    a.u.write(SCR, 1, 0x5a);
    a.u.write(LCR, 1, 0x1b | DLAB);
    a.u.write(DLL, 1, 0x34);
    a.u.write(DLM, 1, 0x12);
    a.u.write(LCR, 1, 0x1b);
    expect(a.u.read(RBR, 1)).toBe(1);
    a.src.q.push(4);
    const saved = JSON.parse(JSON.stringify(a.u.state()));
    expect(saved.rx).toEqual([2, 3, 4]);
    expect(a.src.q).toEqual([]); // state() drained the host ring into the device

    const b = uart();
    const restored = new Uart16550((x) => b.out.push(x), b.src, saved);
    expect(uartRegs(restored)).toEqual(uartRegs(a.u));
    expect(restored.state()).toEqual(a.u.state());
    for (const dev of [a.u, restored]) {
      expect(dev.read(LSR, 1)).toBe(LSR_THRE | LSR_TEMT | LSR_DR);
      expect([dev.read(RBR, 1), dev.read(RBR, 1), dev.read(RBR, 1)]).toEqual([2, 3, 4]);
      expect(dev.read(LSR, 1)).toBe(LSR_THRE | LSR_TEMT);
    }
  });
});

describe('MachineClock', () => {
  it('icount: mtime = instret + offset; set/advanceTo re-base without moving backwards', () => {
    let n = 1000;
    const c = new MachineClock('icount', () => n, 50);
    expect(c.now()).toBe(50);
    n += 25;
    expect(c.now()).toBe(75);
    c.advanceTo(60); // in the past: no effect
    expect(c.now()).toBe(75);
    c.advanceTo(500);
    expect(c.now()).toBe(500);
    n += 10;
    expect(c.now()).toBe(510);
    c.set(7);
    expect(c.now()).toBe(7);
    c.freeze(); // no-op in icount mode
    n += 3;
    expect(c.now()).toBe(10);
    expect(c.state()).toEqual({ mode: 'icount', mtime: 10 });
  });

  it('real time: freeze stops guest time, thaw resumes from the same value', async () => {
    const c = new MachineClock('realtime', () => 0, 123_456);
    c.freeze();
    const t = c.now();
    await new Promise((r) => setTimeout(r, 20));
    expect(c.now()).toBe(t);
    c.thaw();
    expect(c.now()).toBeGreaterThanOrEqual(t);
    await new Promise((r) => setTimeout(r, 20));
    expect(c.now()).toBeGreaterThan(t);
  });

  it('save → restore → same reads', () => {
    let n = 5000;
    const a = new MachineClock('icount', () => n, 42);
    n += 100;
    const saved = JSON.parse(JSON.stringify(a.state()));
    const b = new MachineClock(saved.mode, () => n, saved.mtime);
    expect(b.now()).toBe(a.now());
    n += 17;
    expect(b.now()).toBe(a.now());
    expect(b.state()).toEqual(a.state());
  });
});

describe('Clint', () => {
  const MSIP = 0x0, CMP_LO = 0x4000, CMP_HI = 0x4004, MTIME_LO = 0xbff8, MTIME_HI = 0xbffc;

  function clint(start = 0) {
    const t = { n: start };
    const clock = new MachineClock('icount', () => t.n, 0);
    return { t, clock, c: new Clint(clock) };
  }

  it('mtimecmp resets to 0 as on QEMU virt (the timer reads pending until programmed); lo/hi writes compose the 64-bit compare value', () => {
    const { t, c } = clint();
    expect(c.read(CMP_LO, 4) >>> 0).toBe(0);
    expect(c.read(CMP_HI, 4) >>> 0).toBe(0);
    expect(c.timerPending()).toBe(true);
    c.write(CMP_HI, 4, 0xffff_ffff); // the usual safe sequence: hi = ~0, lo, hi
    c.write(CMP_LO, 4, 1000);
    c.write(CMP_HI, 4, 0);
    expect(c.mtimecmp).toBe(1000);
    expect(c.read(CMP_LO, 4)).toBe(1000);
    expect(c.read(CMP_HI, 4)).toBe(0);
    t.n = 999;
    expect(c.timerPending()).toBe(false);
    t.n = 1000;
    expect(c.timerPending()).toBe(true);
    c.write(CMP_HI, 4, 1);
    expect(c.mtimecmp).toBe(2 ** 32 + 1000);
    expect(c.timerPending()).toBe(false);
    t.n = 2 ** 32 + 1000;
    expect(c.timerPending()).toBe(true);
  });

  it('sub-word accesses merge into mtimecmp', () => {
    const { c } = clint();
    c.write(CMP_LO, 4, 0);
    c.write(CMP_HI, 4, 0);
    c.write(CMP_LO + 1, 1, 0xab);
    c.write(CMP_LO + 2, 2, 0x1234);
    expect(c.read(CMP_LO, 4) >>> 0).toBe(0x1234ab00);
    expect(c.read(CMP_LO + 1, 1)).toBe(0xab);
    expect(c.read(CMP_LO + 2, 2)).toBe(0x1234);
  });

  it('mtime reads follow the icount clock; writes re-base the clock', () => {
    const { t, c, clock } = clint(100);
    expect(c.read(MTIME_LO, 4)).toBe(0);
    t.n = 100 + 2 ** 32 + 5; // 2^32 + 5 instructions later
    expect(c.read(MTIME_LO, 4)).toBe(5);
    expect(c.read(MTIME_HI, 4)).toBe(1);
    c.write(MTIME_LO, 4, 10);
    expect(clock.now()).toBe(2 ** 32 + 10);
    c.write(MTIME_HI, 4, 0);
    expect(clock.now()).toBe(10);
    t.n += 3;
    expect(c.read(MTIME_LO, 4)).toBe(13);
  });

  it('msip holds one bit', () => {
    const { c } = clint();
    c.write(MSIP, 4, 0xffff_ffff);
    expect(c.read(MSIP, 4)).toBe(1);
    expect(c.msip).toBe(1);
    c.write(MSIP, 4, 2);
    expect(c.msip).toBe(0);
  });

  it('save → restore → same reads', () => {
    const { t, c, clock } = clint(77);
    c.write(MSIP, 4, 1);
    c.write(CMP_LO, 4, 0x89abcdef);
    c.write(CMP_HI, 4, 0x7);
    t.n = 12345;
    const saved = JSON.parse(JSON.stringify({ clint: c.state(), clock: clock.state() }));
    const clock2 = new MachineClock(saved.clock.mode, () => t.n, saved.clock.mtime);
    const c2 = new Clint(clock2, saved.clint);
    const regs = (d: Clint) => [MSIP, CMP_LO, CMP_HI, MTIME_LO, MTIME_HI].map((o) => d.read(o, 4));
    expect(regs(c2)).toEqual(regs(c));
    expect(c2.mtimecmp).toBe(c.mtimecmp);
    expect(c2.timerPending()).toBe(c.timerPending());
    expect(c2.state()).toEqual(c.state());
    t.n = 0x7_89abcdef + 77;
    expect(c.timerPending()).toBe(true);
    expect(c2.timerPending()).toBe(true);
  });
});

describe('TestFinisher', () => {
  function finisher() {
    const exits: [number, string][] = [];
    return { f: new TestFinisher((code, reason) => exits.push([code, reason])), exits };
  }

  it('0x5555 powers off with 0; (code << 16) | 0x3333 exits with code; 0x7777 is a reset', () => {
    const { f, exits } = finisher();
    f.write(0, 4, 0x5555);
    f.write(0, 4, (7 << 16) | 0x3333);
    f.write(0, 4, (255 << 16) | 0x3333);
    f.write(0, 4, 0x7777);
    expect(exits).toEqual([[0, 'poweroff'], [7, 'poweroff'], [255, 'poweroff'], [0, 'reset']]);
  });

  it('ignores other values and other offsets', () => {
    const { f, exits } = finisher();
    f.write(0, 4, 0x1234);
    f.write(4, 4, 0x5555);
    f.write(0, 4, 0);
    expect(exits).toEqual([]);
    expect(f.read(0, 4)).toBe(0);
  });

  it('save → restore → same reads', () => {
    const { f } = finisher();
    f.write(0, 4, 0x1234);
    const saved = JSON.parse(JSON.stringify(f.state()));
    expect(saved).toEqual({});
    const g = new TestFinisher(() => undefined);
    expect(g.state()).toEqual(saved);
    expect(g.read(0, 4)).toBe(f.read(0, 4));
  });
});

describe('Bus', () => {
  const dev = (name: string, base: number, size: number): Device => ({
    name, base, size, read: () => 0, write: () => undefined, state: () => ({}),
  });

  it('places the virt devices and finds them by address', () => {
    const bus = new Bus();
    const u = new Uart16550(() => undefined, source());
    const c = new Clint(new MachineClock('icount', () => 0));
    const f = new TestFinisher(() => undefined);
    bus.add(u);
    bus.add(c);
    bus.add(f);
    expect(bus.find(UART_BASE)).toBe(u);
    expect(bus.find(UART_BASE + 0xff)).toBe(u);
    expect(bus.find(UART_BASE + 0x100)).toBeUndefined();
    expect(bus.find(CLINT_BASE + 0xbff8)).toBe(c);
    expect(bus.find(FINISHER_BASE)).toBe(f);
    expect(bus.find(0x8000_0000 | 0)).toBeUndefined();
    expect(bus.all()).toEqual([u, c, f]);
  });

  it('rejects overlapping ranges with EBUSOVERLAP, accepts adjacent ones', () => {
    const bus = new Bus();
    bus.add(dev('a', 0x1000, 0x100));
    bus.add(dev('b', 0x1100, 0x100)); // adjacent: fine
    bus.add(dev('c', 0xf00, 0x100)); // adjacent below: fine
    for (const [base, size] of [[0x10ff, 2], [0x1000, 0x100], [0x800, 0x1000], [0x1180, 1], [0xfff, 2]] as const) {
      let err: unknown;
      try {
        bus.add(dev('x', base, size));
      } catch (e) {
        err = e;
      }
      expect(err, `[0x${base.toString(16)}, +0x${size.toString(16)})`).toBeInstanceOf(FerryError);
      expect((err as FerryError).code).toBe('EBUSOVERLAP');
    }
    expect(bus.all().map((d) => d.name)).toEqual(['a', 'b', 'c']);
  });

  it('handles devices in the upper half of the address space', () => {
    const bus = new Bus();
    bus.add(dev('hi', 0xf000_0000 | 0, 0x1000));
    expect(() => bus.add(dev('hi2', 0xf000_0800 | 0, 0x1000))).toThrow(FerryError);
    expect(bus.find(0xf000_0010 | 0)?.name).toBe('hi');
  });
});

describe('Uart16550 interrupts (QEMU virt: PLIC source 10)', () => {
  const IIR_NONE = 0x01, IIR_THRE = 0x02, IIR_RDA = 0x04, IIR_TIMEOUT = 0x0c;

  it('received data: RDA while a byte waits, with ERBFI; with the FIFO on, a timeout below the trigger level', () => {
    const { u, src } = uart();
    expect(u.irqLine()).toBe(false);
    u.write(IER, 1, 0x01);
    expect(u.irqLine()).toBe(false);
    src.q.push(0x41);
    expect(u.irqLine()).toBe(true);
    expect(u.read(IIR, 1)).toBe(IIR_RDA);
    expect(u.read(RBR, 1)).toBe(0x41);
    expect(u.read(IIR, 1)).toBe(IIR_NONE);
    u.write(FCR, 1, 0x41); // FIFO on, trigger level 4
    src.q.push(1, 2, 3);
    expect(u.read(IIR, 1)).toBe(0xc0 | IIR_TIMEOUT);
    src.q.push(4);
    expect(u.read(IIR, 1)).toBe(0xc0 | IIR_RDA);
    u.write(FCR, 1, 0x43); // receive FIFO reset
    expect(u.read(LSR, 1) & LSR_DR).toBe(0);
    expect(u.irqLine()).toBe(false);
  });

  it('transmitter empty: raised by enabling it and by each byte sent, acknowledged by reading IIR; data goes first', () => {
    const { u, src, out } = uart();
    u.write(IER, 1, 0x02);
    expect(u.irqLine()).toBe(true);
    src.q.push(0x42);
    u.write(IER, 1, 0x03);
    expect(u.read(IIR, 1)).toBe(IIR_RDA); // received data outranks it, and does not acknowledge it
    u.read(RBR, 1);
    expect(u.read(IIR, 1)).toBe(IIR_THRE);
    expect(u.irqLine()).toBe(false);
    u.write(THR, 1, 0x43);
    expect(out).toEqual([0x43]);
    expect(u.irqLine()).toBe(true);
    const saved = u.state();
    expect(saved.thrIpending).toBe(1);
    const again = new Uart16550(() => {}, source(), saved);
    expect(again.read(IIR, 1)).toBe(IIR_THRE);
  });

  it('tells the PLIC the moment its line rises, so a request is latched even if the guest lowers it before looking', () => {
    const plic = new Plic();
    const { u } = uart();
    u.attachIrq(plic.connect(10, u.irqLine));
    u.write(IER, 1, 0x02); // raised...
    u.read(IIR, 1); // ...and acknowledged before anyone looked at the PLIC
    expect(u.irqLine()).toBe(false);
    expect(plic.state().pending[0]).toBe(1 << 10);
  });
});

describe('Plic', () => {
  const CLAIM0 = 0x20_0004, ENABLE0 = 0x2000, PENDING = 0x1000;
  function plicWithLine() {
    const p = new Plic();
    let level = false;
    p.connect(11, () => level);
    p.write(4 * 11, 4, 1);
    p.write(ENABLE0, 4, 1 << 11);
    return { p, set: (v: boolean) => { level = v; } };
  }

  it('a level-triggered gateway: a line still high at completion is pending again (the PLIC spec; QEMU 7.2 waits for the device to raise it anew)', () => {
    const { p, set } = plicWithLine();
    expect(p.meip()).toBe(false);
    set(true);
    expect(p.meip()).toBe(true);
    expect(p.read(CLAIM0, 4)).toBe(11);
    expect(p.meip()).toBe(false); // claimed: the gateway holds it
    p.write(CLAIM0, 4, 11);
    expect(p.read(PENDING, 4)).toBe(1 << 11);
    set(false);
    expect(p.read(CLAIM0, 4)).toBe(11); // a latched request survives the line going low
    p.write(CLAIM0, 4, 11);
    expect(p.meip()).toBe(false);
  });

  it('save → restore → same reads, a claim in progress included', () => {
    const { p, set } = plicWithLine();
    p.write(0x20_0000, 4, 0);
    p.write(0x20_1000, 4, 6);
    p.write(ENABLE0 + 0x80 + 8, 4, 0xdead_beef);
    set(true);
    expect(p.read(CLAIM0, 4)).toBe(11);
    const saved = p.state();
    const q = new Plic(structuredClone(saved));
    q.connect(11, () => true);
    expect(q.state()).toEqual(saved);
    expect(q.read(0x20_1000, 4)).toBe(6);
    expect(q.read(ENABLE0 + 0x88, 4) >>> 0).toBe(0xdead_beef);
    expect(q.read(CLAIM0, 4)).toBe(0); // still claimed: nothing new until it completes
    q.write(CLAIM0, 4, 11);
    expect(q.read(CLAIM0, 4)).toBe(11);
  });
});

describe('GoldfishRtc', () => {
  it('an alarm that fires is latched by the PLIC then and there, even if the guest clears it before anyone looks', () => {
    // A snapshot taken between the alarm and the clear must not see anything a run never sees.
    let instret = 0;
    const clock = new MachineClock('icount', () => instret);
    const plic = new Plic();
    const rtc = new GoldfishRtc(clock);
    rtc.attachIrq(plic.connect(11, rtc.irqLine));
    rtc.write(0x10, 4, 1); // IRQ_ENABLED
    rtc.write(0x08, 4, 1000 * 100); // alarm at mtime 1000
    instret = 2000;
    rtc.write(0x1c, 4, 1); // CLEAR_INTERRUPT: the alarm fires first, then its interrupt is cleared
    expect(rtc.irqLine()).toBe(false);
    expect(plic.state().pending[0]).toBe(1 << 11);
  });

  it('under --icount reads 100 ns a tick of mtime from the epoch, and an alarm fires at its exact tick', () => {
    let instret = 0;
    const clock = new MachineClock('icount', () => instret);
    const rtc = new GoldfishRtc(clock);
    instret = 12_345;
    expect(rtc.read(0, 4)).toBe(1_234_500);
    expect(rtc.read(4, 4)).toBe(0);
    rtc.write(0x10, 4, 1);
    rtc.write(0x08, 4, 1_234_500 + 250); // 2.5 ticks ahead: fires at the third
    expect(rtc.alarmMtime()).toBe(12_348);
    instret = 12_347;
    expect(rtc.irqLine()).toBe(false);
    instret = 12_348;
    expect(rtc.irqLine()).toBe(true);
    expect(rtc.read(0x18, 4)).toBe(0); // no longer running
    expect(rtc.alarmMtime()).toBe(Infinity);
  });

  it('save → restore → same reads: the time set, the latched high word, the alarm', () => {
    let instret = 0;
    const clock = new MachineClock('icount', () => instret);
    const rtc = new GoldfishRtc(clock);
    rtc.write(0x04, 4, 0x17a6_dc78);
    rtc.write(0x0c, 4, 0x7fff_ffff);
    rtc.write(0x08, 4, 5);
    instret = 1000;
    const lo = rtc.read(0, 4);
    const saved = rtc.state();
    const again = new GoldfishRtc(clock, structuredClone(saved));
    expect(again.state()).toEqual(saved);
    expect(again.read(4, 4)).toBe(0x17a6_dc78);
    expect(again.read(0, 4)).toBe(lo);
    expect(again.read(0x0c, 4)).toBe(0x7fff_ffff);
    expect(again.read(0x18, 4)).toBe(1);
  });

  it('in real time follows the host clock: nanoseconds since the epoch', () => {
    const rtc = new GoldfishRtc(new MachineClock('realtime', () => 0));
    const lo = rtc.read(0, 4) >>> 0;
    const ns = (BigInt(rtc.read(4, 4) >>> 0) << 32n) | BigInt(lo);
    const host = BigInt(Date.now()) * 1_000_000n;
    expect(Number(ns - host) / 1e6).toBeGreaterThan(-1000);
    expect(Number(ns - host) / 1e6).toBeLessThan(1000);
  });
});

describe('EmptyVirtioMmio', () => {
  it('reads as a transport with no device, at any width; ignores writes', () => {
    const v = new EmptyVirtioMmio(3);
    expect(v.base).toBe(0x1000_4000);
    expect(v.read(0, 4)).toBe(0x7472_6976);
    expect(v.read(4, 4)).toBe(1);
    expect(v.read(8, 4)).toBe(0);
    expect(v.read(0xc, 4)).toBe(0x554d_4551);
    expect(v.read(0, 1)).toBe(0x76);
    expect(v.read(1, 1)).toBe(0);
    v.write(0x70, 4, 0xff);
    expect(v.read(0x70, 4)).toBe(0);
  });
});
