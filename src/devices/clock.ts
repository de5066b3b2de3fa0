/**
 * The machine timer's time base (CLINT mtime, 10 MHz). Real-time mode follows the host clock;
 * deterministic mode (`--icount`) derives time from retired instructions, one tick each, so
 * a run is a pure function of the instruction count. Either way the guest sees
 * `mtime = source + offset`, and only `mtime` itself is saved, so time never jumps
 * backwards across a pause or a migration.
 */
export const TIMEBASE_HZ = 10_000_000;

export type ClockMode = 'realtime' | 'icount';

export interface ClockState {
  mode: ClockMode;
  mtime: number;
}

function hostTicks(): number {
  return Math.floor(performance.now() * (TIMEBASE_HZ / 1000));
}

export class MachineClock {
  private offset = 0;
  private frozenAt = -1;

  constructor(
    readonly mode: ClockMode,
    /** Retired instructions so far; supplied by the vCPU. */
    private readonly instret: () => number,
    mtime = 0,
  ) {
    this.set(mtime);
  }

  now(): number {
    if (this.frozenAt >= 0) return this.frozenAt;
    return (this.mode === 'icount' ? this.instret() : hostTicks()) + this.offset;
  }

  set(mtime: number): void {
    this.offset = mtime - (this.mode === 'icount' ? this.instret() : hostTicks());
  }

  /** Deterministic mode only: jump forward (a `wfi` that would otherwise wait for the timer). */
  advanceTo(mtime: number): void {
    if (mtime > this.now()) this.set(mtime);
  }

  /** Real-time guest time stands still while the VM is paused, as QEMU's vm_clock does. */
  freeze(): void {
    if (this.mode === 'realtime' && this.frozenAt < 0) this.frozenAt = this.now();
  }

  thaw(): void {
    if (this.frozenAt < 0) return;
    const t = this.frozenAt;
    this.frozenAt = -1;
    this.set(t);
  }

  /** Host milliseconds until mtime reaches `deadline` (real-time mode). */
  msUntil(deadline: number): number {
    return Math.max(0, (deadline - this.now()) / (TIMEBASE_HZ / 1000));
  }

  state(): ClockState {
    return { mode: this.mode, mtime: this.now() };
  }
}
