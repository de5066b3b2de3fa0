import type { MachineClock } from './clock.ts';
import type { Device } from './device.ts';

export const CLINT_BASE = 0x0200_0000;
const MSIP = 0x0;
const MTIMECMP = 0x4000;
const MTIME = 0xbff8;

export interface ClintState {
  msip: number;
  mtimecmpLo: number;
  mtimecmpHi: number;
}

/** Core-local interruptor: msip, mtimecmp and mtime for hart 0. */
export class Clint implements Device<ClintState> {
  readonly name = 'clint';
  readonly base = CLINT_BASE;
  readonly size = 0x10000;
  msip = 0;
  // Reset value as on QEMU's virt: 0 (so mip.MTIP reads set until a guest programs it).
  private cmpLo = 0;
  private cmpHi = 0;
  /** mtimecmp as a double; exact below 2^53, and "never" above. */
  mtimecmp = 0;

  constructor(private readonly clock: MachineClock, state?: ClintState) {
    if (state) this.load(state);
  }

  load(state: ClintState): void {
    this.msip = state.msip & 1;
    this.cmpLo = state.mtimecmpLo >>> 0;
    this.cmpHi = state.mtimecmpHi >>> 0;
    this.mtimecmp = this.cmpHi * 2 ** 32 + this.cmpLo;
  }

  timerPending(): boolean {
    return this.clock.now() >= this.mtimecmp;
  }

  read(offset: number, width: number): number {
    const word = offset & ~3;
    let v: number;
    switch (word) {
      case MSIP: v = this.msip; break;
      case MTIMECMP: v = this.cmpLo; break;
      case MTIMECMP + 4: v = this.cmpHi; break;
      case MTIME: v = this.clock.now() % 2 ** 32; break;
      case MTIME + 4: v = Math.floor(this.clock.now() / 2 ** 32); break;
      default: v = 0;
    }
    const shift = (offset & 3) * 8;
    const mask = width === 4 ? 0xffff_ffff : (1 << (width * 8)) - 1;
    return ((v >>> shift) & mask) | 0;
  }

  write(offset: number, width: number, value: number): void {
    const word = offset & ~3;
    const merge = (old: number): number => {
      if (width === 4) return value >>> 0;
      const shift = (offset & 3) * 8;
      const mask = ((1 << (width * 8)) - 1) << shift;
      return ((old & ~mask) | ((value << shift) & mask)) >>> 0;
    };
    switch (word) {
      case MSIP: this.msip = merge(this.msip) & 1; break;
      case MTIMECMP: this.cmpLo = merge(this.cmpLo); break;
      case MTIMECMP + 4: this.cmpHi = merge(this.cmpHi); break;
      case MTIME:
      case MTIME + 4: {
        const now = this.clock.now();
        const lo = word === MTIME ? merge(now % 2 ** 32) : now % 2 ** 32;
        const hi = word === MTIME ? Math.floor(now / 2 ** 32) : merge(Math.floor(now / 2 ** 32));
        this.clock.set(hi * 2 ** 32 + lo);
        break;
      }
      default:
        return;
    }
    this.mtimecmp = this.cmpHi * 2 ** 32 + this.cmpLo;
  }

  state(): ClintState {
    return { msip: this.msip, mtimecmpLo: this.cmpLo, mtimecmpHi: this.cmpHi };
  }
}
