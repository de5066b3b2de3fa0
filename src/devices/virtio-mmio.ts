import type { Device } from './device.ts';

export const VIRTIO_MMIO_BASE = 0x1000_1000;
export const VIRTIO_MMIO_SLOTS = 8;
export const VIRTIO_MMIO_STRIDE = 0x1000;
const MAGIC = 0x7472_6976; // "virt"
const LEGACY_VERSION = 1; // QEMU's virt: virtio-mmio transports are legacy unless forced modern
const VENDOR_QEMU = 0x554d_4551; // "QEMU"

/**
 * An empty virtio-mmio transport, as each of QEMU virt's eight slots reads with no device
 * behind it: the magic, version 1, device id 0 (none), QEMU's vendor id, everything else 0,
 * writes ignored. Probing drivers find "no device here" and go on. Stateless, so nothing migrates.
 */
export class EmptyVirtioMmio implements Device<Record<string, never>> {
  readonly name: string;
  readonly base: number;
  readonly size = 0x200;

  constructor(readonly slot: number) {
    this.name = `virtio-mmio.${slot}`;
    this.base = VIRTIO_MMIO_BASE + slot * VIRTIO_MMIO_STRIDE;
  }

  /** A narrower read sees the register at exactly its offset (QEMU does the same). */
  read(offset: number, width: number): number {
    let v: number;
    switch (offset) {
      case 0x000: v = MAGIC; break;
      case 0x004: v = LEGACY_VERSION; break;
      case 0x00c: v = VENDOR_QEMU; break;
      default: return 0;
    }
    return width === 4 ? v | 0 : v & ((1 << (width * 8)) - 1);
  }

  write(_offset: number, _width: number, _value: number): void {}

  state(): Record<string, never> {
    return {};
  }
}
