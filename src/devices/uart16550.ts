import type { Device } from './device.ts';

export const UART_BASE = 0x1000_0000;

const LSR_DR = 0x01;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const LCR_DLAB = 0x80;

/**
 * Received bytes the UART holds that the guest has not read yet, at most (the rest wait in the
 * host's input ring): they travel in its state, which a destination accepts up to this size.
 */
export const MAX_UART_HELD = 64 * 1024;

/** Where received bytes come from (the host's input ring); polled, no interrupts. */
export interface ByteSource {
  available(): boolean;
  take(): number;
}

export interface UartState {
  ier: number;
  lcr: number;
  mcr: number;
  scr: number;
  fcr: number;
  dll: number;
  dlm: number;
  /** Bytes received from the host but not yet read by the guest. */
  rx: number[];
}

/** NS16550A with enough of the register file for polled I/O, as on QEMU virt. */
export class Uart16550 implements Device<UartState> {
  readonly name = 'uart16550';
  readonly base = UART_BASE;
  readonly size = 0x100;
  private ier = 0;
  private lcr = 0;
  // Reset values as QEMU's serial: MCR OUT2, and the divisor latch at 12 (9600 baud from 1.8432 MHz).
  private mcr = 0x08;
  private scr = 0;
  private fcr = 0;
  private dll = 0x0c;
  private dlm = 0;
  private readonly held: number[] = [];

  constructor(
    private readonly transmit: (byte: number) => void,
    private readonly input: ByteSource,
    state?: UartState,
  ) {
    if (state) this.load(state);
  }

  load(state: UartState): void {
    ({ ier: this.ier, lcr: this.lcr, mcr: this.mcr, scr: this.scr, fcr: this.fcr, dll: this.dll, dlm: this.dlm } = state);
    this.held.length = 0;
    this.held.push(...state.rx);
  }

  private rxReady(): boolean {
    return this.held.length > 0 || this.input.available();
  }

  read(offset: number, _width: number): number {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case 0:
        if (dlab) return this.dll;
        if (this.held.length > 0) return this.held.shift()!;
        return this.input.available() ? this.input.take() : 0;
      case 1: return dlab ? this.dlm : this.ier;
      case 2: return (this.fcr & 1 ? 0xc0 : 0) | 0x01; // no interrupt pending
      case 3: return this.lcr;
      case 4: return this.mcr;
      case 5: return LSR_THRE | LSR_TEMT | (this.rxReady() ? LSR_DR : 0);
      case 6: return 0xb0; // DCD, DSR, CTS asserted
      case 7: return this.scr;
      default: return 0;
    }
  }

  write(offset: number, _width: number, value: number): void {
    const v = value & 0xff;
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case 0: if (dlab) this.dll = v; else this.transmit(v); break;
      case 1: if (dlab) this.dlm = v; else this.ier = v & 0x0f; break;
      case 2: this.fcr = v & 0xc9; break;
      case 3: this.lcr = v; break;
      case 4: this.mcr = v & 0x1f; break;
      case 7: this.scr = v; break;
      default: break;
    }
  }

  /** Moves bytes waiting in the host ring into the device, so the state holds all of them. */
  drainInput(): void {
    while (this.held.length < MAX_UART_HELD && this.input.available()) this.held.push(this.input.take());
  }

  state(): UartState {
    this.drainInput();
    return { ier: this.ier, lcr: this.lcr, mcr: this.mcr, scr: this.scr, fcr: this.fcr, dll: this.dll, dlm: this.dlm, rx: [...this.held] };
  }
}
