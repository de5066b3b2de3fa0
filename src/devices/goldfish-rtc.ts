import type { MachineClock } from './clock.ts';
import type { Device } from './device.ts';

export const RTC_BASE = 0x0010_1000;
/** The goldfish RTC's interrupt source on QEMU virt's PLIC. */
export const RTC_IRQ = 11;
const TIME_LOW = 0x00;
const TIME_HIGH = 0x04;
const ALARM_LOW = 0x08;
const ALARM_HIGH = 0x0c;
const IRQ_ENABLED = 0x10;
const CLEAR_ALARM = 0x14;
const ALARM_STATUS = 0x18;
const CLEAR_INTERRUPT = 0x1c;

const NS_PER_TICK = 100n; // mtime runs at 10 MHz
const U32 = 0xffff_ffffn;
const U64 = (1n << 64n) - 1n;

export interface RtcState {
  /** Guest time minus the time source, in ns, as a signed 64-bit value split into words. */
  offsetHi: number;
  offsetLo: number;
  alarmHi: number;
  alarmLo: number;
  alarmRunning: number;
  irqPending: number;
  irqEnabled: number;
  /** TIME_HIGH as latched by the last read of TIME_LOW. */
  timeHigh: number;
}

export function resetRtcState(): RtcState {
  return { offsetHi: 0, offsetLo: 0, alarmHi: 0, alarmLo: 0, alarmRunning: 0, irqPending: 0, irqEnabled: 0, timeHigh: 0 };
}

const join = (hi: number, lo: number): bigint => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);

/**
 * The goldfish RTC of QEMU's virt machine: nanoseconds since the Unix epoch, an alarm, and an
 * interrupt line (PLIC source 11). In real-time mode the time source is the host's wall clock,
 * as QEMU's default `-rtc clock=host`, so the time goes on across a pause or a migration; under
 * `--icount` it is the machine's deterministic mtime (100 ns a tick, from 0 = 1970-01-01), so a
 * run is still a function of its instruction count. Only the offset from the source is state.
 */
export class GoldfishRtc implements Device<RtcState> {
  readonly name = 'goldfish-rtc';
  readonly base = RTC_BASE;
  readonly size = 0x24;
  readonly wordOnly = true;
  private offset = 0n;
  private alarm = 0n;
  private alarmRunning = false;
  private irqPending = false;
  private irqEnabled = false;
  private timeHigh = 0;
  /**
   * When a running alarm fires, in the time source's own units as a number (icount: mtime
   * ticks; real time: `performance.now()` ms), so the vCPU's frequent look at the interrupt
   * line costs a comparison, not 64-bit arithmetic. Recomputed whenever the alarm or the time
   * is set; the exact 64-bit comparison decides once this says the moment may have come.
   */
  private due = Infinity;

  constructor(private readonly clock: MachineClock, state?: RtcState) {
    if (state) this.load(state);
  }

  load(s: RtcState): void {
    this.offset = BigInt.asIntN(64, join(s.offsetHi, s.offsetLo));
    this.alarm = join(s.alarmHi, s.alarmLo);
    this.alarmRunning = s.alarmRunning === 1;
    this.irqPending = s.irqPending === 1;
    this.irqEnabled = s.irqEnabled === 1;
    this.timeHigh = s.timeHigh >>> 0;
    this.schedule();
  }

  private schedule(): void {
    if (!this.alarmRunning) { this.due = Infinity; return; }
    const ahead = this.alarm - this.now(); // ns
    if (this.clock.mode === 'icount') this.due = this.clock.now() + Number((ahead + NS_PER_TICK - 1n) / NS_PER_TICK);
    else this.due = performance.now() + Number(ahead) / 1e6 - 0.001; // early by a µs: the exact check below decides
  }

  private sourceNumber(): number {
    return this.clock.mode === 'icount' ? this.clock.now() : performance.now();
  }

  private source(): bigint {
    if (this.clock.mode === 'icount') return BigInt(this.clock.now()) * NS_PER_TICK;
    return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
  }

  private now(): bigint {
    return (this.source() + this.offset) & U64;
  }

  /** Fires a due alarm: it stops running and raises the interrupt. */
  private poll(): void {
    if (this.sourceNumber() < this.due) return;
    if (this.now() >= this.alarm) {
      this.alarmRunning = false;
      this.irqPending = true;
      this.due = Infinity;
      this.raised();
    } else {
      this.schedule();
    }
  }

  private raised: () => void = () => {};

  /** The line into the PLIC. */
  readonly irqLine = (): boolean => {
    this.poll();
    return this.irqPending && this.irqEnabled;
  };

  /** Connects the line: `raised` is told whenever it may have gone high (Plic.connect). */
  attachIrq(raised: () => void): void {
    this.raised = raised;
  }

  /**
   * Deterministic mode: the mtime at which a running alarm fires, so the vCPU can stop there
   * and take the interrupt at the same instruction on every run; Infinity if none is running.
   */
  alarmMtime(): number {
    return this.clock.mode === 'icount' ? this.due : Infinity;
  }

  /** Host milliseconds until a running alarm fires (real-time mode); Infinity if none. */
  msUntilAlarm(): number {
    if (this.due === Infinity) return Infinity;
    return Math.max(0, this.clock.mode === 'icount' ? this.clock.msUntil(this.due) : this.due - performance.now());
  }

  private setTime(t: bigint): void {
    this.offset = BigInt.asIntN(64, t - this.source());
    this.schedule();
  }

  read(offset: number, _width: number): number {
    this.poll();
    switch (offset) {
      case TIME_LOW: {
        const t = this.now();
        this.timeHigh = Number(t >> 32n);
        return Number(t & U32) | 0;
      }
      case TIME_HIGH: return this.timeHigh | 0;
      case ALARM_LOW: return Number(this.alarm & U32) | 0;
      case ALARM_HIGH: return Number(this.alarm >> 32n) | 0;
      case IRQ_ENABLED: return this.irqEnabled ? 1 : 0;
      case ALARM_STATUS: return this.alarmRunning ? 1 : 0;
      default: return 0;
    }
  }

  write(offset: number, _width: number, value: number): void {
    this.poll(); // an alarm already due fires before the write takes effect
    const v = BigInt(value >>> 0);
    switch (offset) {
      case TIME_LOW: this.setTime((this.now() & ~U32) | v); break;
      case TIME_HIGH: this.setTime((this.now() & U32) | (v << 32n)); break;
      case ALARM_LOW:
        this.alarm = (this.alarm & ~U32 & U64) | v;
        this.alarmRunning = true;
        this.due = -Infinity; // poll() below fires an alarm already due, or schedules it
        break;
      case ALARM_HIGH: this.alarm = (this.alarm & U32) | (v << 32n); break;
      case IRQ_ENABLED: this.irqEnabled = (value & 1) === 1; break;
      case CLEAR_ALARM: this.alarmRunning = false; this.due = Infinity; break;
      case CLEAR_INTERRUPT: this.irqPending = false; break;
      default: break;
    }
    this.poll(); // fires an alarm just set in the past
    this.raised(); // IRQ_ENABLED may have raised the line
  }

  state(): RtcState {
    this.poll();
    const off = BigInt.asUintN(64, this.offset);
    return {
      offsetHi: Number(off >> 32n) | 0, offsetLo: Number(off & U32), alarmHi: Number(this.alarm >> 32n), alarmLo: Number(this.alarm & U32),
      alarmRunning: this.alarmRunning ? 1 : 0, irqPending: this.irqPending ? 1 : 0, irqEnabled: this.irqEnabled ? 1 : 0, timeHigh: this.timeHigh >>> 0,
    };
  }
}
