import type { Device } from './device.ts';

export const FINISHER_BASE = 0x0010_0000;
const FINISHER_PASS = 0x5555;
const FINISHER_FAIL = 0x3333;
const FINISHER_RESET = 0x7777;

/** SiFive test finisher as on QEMU virt: the guest powers off with an exit code. */
export class TestFinisher implements Device<Record<string, never>> {
  readonly name = 'test-finisher';
  readonly base = FINISHER_BASE;
  readonly size = 0x1000;

  constructor(private readonly onExit: (code: number, reason: string) => void) {}

  read(_offset: number, _width: number): number {
    return 0;
  }

  write(offset: number, _width: number, value: number): void {
    if (offset !== 0) return;
    const kind = value & 0xffff;
    if (kind === FINISHER_PASS) this.onExit(0, 'poweroff');
    else if (kind === FINISHER_FAIL) this.onExit(value >>> 16, 'poweroff');
    // Ferry has no reboot: a reset request ends the run like a poweroff, and says so.
    else if (kind === FINISHER_RESET) this.onExit(0, 'reset');
  }

  state(): Record<string, never> {
    return {};
  }
}
