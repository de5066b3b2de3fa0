import { Cpu, StepExit } from '../cpu/cpu.ts';
import { readInstret } from '../cpu/state.ts';
import { Clint, type ClintState } from '../devices/clint.ts';
import { MachineClock, type ClockMode, type ClockState } from '../devices/clock.ts';
import { Bus } from '../devices/device.ts';
import { GoldfishRtc, RTC_IRQ, type RtcState } from '../devices/goldfish-rtc.ts';
import { Plic, type PlicState } from '../devices/plic.ts';
import { EmptyVirtioMmio, VIRTIO_MMIO_SLOTS } from '../devices/virtio-mmio.ts';
import { TestFinisher } from '../devices/test-finisher.ts';
import { Uart16550, UART_IRQ, type ByteSource, type UartState } from '../devices/uart16550.ts';
import type { GuestMemory } from '../memory/guest-memory.ts';

/** What a machine is, apart from its state: fixed at creation, checked before a migration. */
export interface MachineConfig {
  ramSize: number;
  clock: ClockMode;
  /** RAM offset of the HTIF tohost word, or -1. */
  tohost: number;
}

/** All device state, plain data (DESIGN: no handles in state). */
export interface DeviceStates {
  uart: UartState;
  clint: ClintState;
  clock: ClockState;
  plic: PlicState;
  rtc: RtcState;
}

export interface MachineIo {
  transmit(byte: number): void;
  input: ByteSource;
  missingPage?: (page: number) => void;
  /** Block-compiler settings (tests); defaults as in Cpu. */
  jit?: boolean;
  jitThreshold?: number;
}

/** A word nobody notifies: waiting on it is a sleep (this thread only, never a host's main thread). */
const SLEEP_WORD = new Int32Array(new SharedArrayBuffer(4));

const NO_INPUT: ByteSource = { available: () => false, take: () => 0 };

/** A hart plus its devices over guest memory. Restore is construction: pass `devices`. */
export class Machine {
  readonly cpu: Cpu;
  readonly clock: MachineClock;
  readonly uart: Uart16550;
  readonly clint: Clint;
  readonly plic: Plic;
  readonly rtc: GoldfishRtc;
  readonly bus = new Bus();

  constructor(
    readonly memory: GuestMemory,
    cpuState: Int32Array,
    readonly config: MachineConfig,
    io: MachineIo,
    devices?: DeviceStates,
  ) {
    let cpu: Cpu | undefined;
    const startInstret = readInstret(cpuState);
    this.clock = new MachineClock(config.clock, () => (cpu ? cpu.instret() : startInstret), devices?.clock.mtime ?? 0);
    this.clint = new Clint(this.clock, devices?.clint);
    this.uart = new Uart16550(io.transmit, io.input ?? NO_INPUT, devices?.uart);
    this.plic = new Plic(devices?.plic);
    this.rtc = new GoldfishRtc(this.clock, devices?.rtc);
    this.uart.attachIrq(this.plic.connect(UART_IRQ, this.uart.irqLine));
    this.rtc.attachIrq(this.plic.connect(RTC_IRQ, this.rtc.irqLine));
    const finisher = new TestFinisher((code, reason) => this.cpu.halt(code, reason));
    // QEMU virt's map; the busiest first (the bus searches in order)
    this.bus.add(this.uart);
    this.bus.add(this.clint);
    this.bus.add(finisher);
    this.bus.add(this.plic);
    this.bus.add(this.rtc);
    for (let slot = 0; slot < VIRTIO_MMIO_SLOTS; slot++) this.bus.add(new EmptyVirtioMmio(slot));
    const plic = this.plic, rtc = this.rtc;
    cpu = new Cpu({
      memory,
      state: cpuState,
      bus: this.bus,
      clint: this.clint,
      clock: this.clock,
      external: { pending: () => plic.meip(), nextEventMtime: () => rtc.alarmMtime(), msUntilEvent: () => rtc.msUntilAlarm() },
      tohost: config.tohost,
      ...(io.missingPage ? { missingPage: io.missingPage } : {}),
      ...(io.jit !== undefined ? { jit: io.jit } : {}),
      ...(io.jitThreshold !== undefined ? { jitThreshold: io.jitThreshold } : {}),
    });
    this.cpu = cpu;
  }

  /** Restore in place: the CPU words are already in the shared state; devices and clock follow `devices`. */
  load(devices: DeviceStates): void {
    this.cpu.reload();
    this.clock.thaw();
    this.clock.set(devices.clock.mtime);
    this.clint.load(devices.clint);
    this.uart.load(devices.uart);
    this.plic.load(devices.plic);
    this.rtc.load(devices.rtc);
  }

  deviceStates(): DeviceStates {
    // the PLIC first: sampling its lines brings the RTC up to date, and the RTC's state follows it
    const plic = this.plic.state();
    return { uart: this.uart.state(), clint: this.clint.state(), clock: this.clock.state(), plic, rtc: this.rtc.state() };
  }

  /**
   * Runs in this thread until the guest halts or `maxInsns` retire (tests and tools; a VM
   * proper runs in a worker). A `wfi` with nothing to wake it ends the run.
   */
  runToHalt(maxInsns: number): StepExit {
    let left = maxInsns;
    while (left > 0) {
      const before = this.cpu.instret();
      const r = this.cpu.run(Math.min(left, 1_000_000));
      left -= this.cpu.instret() - before;
      if (r === StepExit.Halt) return r;
      if (r === StepExit.Wfi) {
        const ms = this.cpu.msUntilWake();
        if (!Number.isFinite(ms)) return r;
        if (ms > 0) Atomics.wait(SLEEP_WORD, 0, 0, ms);
      }
    }
    return StepExit.Budget;
  }
}
