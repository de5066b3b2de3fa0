import { FerryError } from '../errors.ts';

/** A memory-mapped device on the bus. Its state is plain data so it can be migrated. */
export interface Device<S = unknown> {
  readonly name: string;
  readonly base: number;
  readonly size: number;
  /** Only aligned 32-bit accesses; any other raises an access fault (QEMU's PLIC and RTC). */
  readonly wordOnly?: boolean;
  /** `offset` is relative to `base`; `width` is 1, 2 or 4 bytes. Never throws. */
  read(offset: number, width: number): number;
  write(offset: number, width: number, value: number): void;
  state(): S;
}

/** An ordered set of MMIO ranges; only RAM gets the vCPU's fast path, everything else comes here. */
export class Bus {
  private readonly devices: Device[] = [];

  add(device: Device): void {
    const lo = device.base >>> 0;
    const hi = lo + device.size;
    for (const d of this.devices) {
      const dlo = d.base >>> 0;
      if (lo < dlo + d.size && dlo < hi) {
        throw new FerryError('EBUSOVERLAP', `device ${device.name} [0x${lo.toString(16)}, 0x${hi.toString(16)}) overlaps ${d.name}`);
      }
    }
    this.devices.push(device);
  }

  /**
   * The device an access of `width` bytes at `addr` reaches, or undefined (an access fault): none
   * there, or one that takes only aligned words (`wordOnly`) and this is not one.
   */
  find(addr: number, width = 4): Device | undefined {
    const a = addr >>> 0;
    for (const d of this.devices) {
      const off = a - (d.base >>> 0);
      if (off >= 0 && off < d.size) return d.wordOnly && (width !== 4 || (a & 3) !== 0) ? undefined : d;
    }
    return undefined;
  }

  all(): readonly Device[] {
    return this.devices;
  }
}
