import type { Device } from './device.ts';

export const UART_BASE = 0x1000_0000;

const LSR_DR = 0x01;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const LCR_DLAB = 0x80;
const IER_RDI = 0x01; // received data available
const IER_THRI = 0x02; // transmitter holding register empty
const IIR_NONE = 0x01;
const IIR_THRE = 0x02;
const IIR_RDA = 0x04;
const IIR_TIMEOUT = 0x0c;
const IIR_FIFO = 0xc0;
const FCR_ENABLE = 0x01;
const FCR_RX_RESET = 0x02;
const FCR_TX_RESET = 0x04;
/** The receive FIFO's interrupt trigger levels, by FCR bits 7:6. */
const RX_TRIGGER = [1, 4, 8, 14] as const;

/** The UART's interrupt source on QEMU virt's PLIC. */
export const UART_IRQ = 10;

/**
 * Received bytes the UART holds that the guest has not read yet, at most (the rest wait in the
 * host's input ring): they travel in its state, which a destination accepts up to this size.
 */
export const MAX_UART_HELD = 64 * 1024;

/** Where received bytes come from (the host's input ring). */
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
  /** The "transmitter empty" interrupt is pending (until IIR reports it or THR is written). */
  thrIpending: number;
}

/**
 * NS16550A as on QEMU virt: the register file, and its interrupt (PLIC source 10) for received
 * data and for an empty transmitter, with IIR saying which, as QEMU's serial does. Transmission is
 * instant, so THR is always empty and LSR never reports an error; with the FIFO on, data below
 * the trigger level reports a character timeout at once (QEMU waits four character times).
 */
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
  private thrIpending = false;
  private readonly held: number[] = [];
  private raised: () => void = () => {};

  constructor(
    private readonly transmit: (byte: number) => void,
    private readonly input: ByteSource,
    state?: UartState,
  ) {
    if (state) this.load(state);
  }

  load(state: UartState): void {
    ({ ier: this.ier, lcr: this.lcr, mcr: this.mcr, scr: this.scr, fcr: this.fcr, dll: this.dll, dlm: this.dlm } = state);
    this.thrIpending = state.thrIpending === 1;
    this.held.length = 0;
    this.held.push(...state.rx);
  }

  /** Connects the interrupt line: `raised` is told whenever it may have gone high (Plic.connect). */
  attachIrq(raised: () => void): void {
    this.raised = raised;
  }

  /** The line into the PLIC: some interrupt is pending. */
  readonly irqLine = (): boolean => (this.iir() & IIR_NONE) === 0;

  /** The highest-priority interrupt pending (received data above an empty transmitter), as IIR shows it. */
  private iir(): number {
    const fifo = (this.fcr & FCR_ENABLE) !== 0;
    let id = IIR_NONE;
    if ((this.ier & IER_RDI) !== 0 && this.rxReady()) {
      id = fifo && this.rxCount() < RX_TRIGGER[this.fcr >>> 6]! ? IIR_TIMEOUT : IIR_RDA;
    } else if ((this.ier & IER_THRI) !== 0 && this.thrIpending) {
      id = IIR_THRE;
    }
    return id | (fifo ? IIR_FIFO : 0);
  }

  /** Bytes received and not read, counting those still in the host ring (up to the trigger levels' 14). */
  private rxCount(): number {
    while (this.held.length < RX_TRIGGER[3] && this.input.available()) this.held.push(this.input.take());
    return this.held.length;
  }

  private rxReady(): boolean {
    return this.held.length > 0 || this.input.available();
  }

  read(offset: number, _width: number): number {
    const v = this.readRegister(offset);
    this.raised();
    return v;
  }

  private readRegister(offset: number): number {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case 0:
        if (dlab) return this.dll;
        if (this.held.length > 0) return this.held.shift()!;
        return this.input.available() ? this.input.take() : 0;
      case 1: return dlab ? this.dlm : this.ier;
      case 2: {
        const iir = this.iir();
        if ((iir & 0x0f) === IIR_THRE) this.thrIpending = false; // reading it acknowledges it
        return iir;
      }
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
      case 0:
        if (dlab) { this.dll = v; break; }
        this.transmit(v);
        this.thrIpending = true; // sent at once: the holding register is empty again
        break;
      case 1:
        if (dlab) { this.dlm = v; break; }
        // enabling the empty-transmitter interrupt while it is empty raises it, as on QEMU
        if ((v & IER_THRI) !== 0 && (this.ier & IER_THRI) === 0) this.thrIpending = true;
        this.ier = v & 0x0f;
        break;
      case 2: {
        // turning the FIFOs on or off resets both, as the 16550 does
        const reset = (v ^ this.fcr) & FCR_ENABLE ? FCR_RX_RESET | FCR_TX_RESET : v;
        if (reset & FCR_RX_RESET) this.held.length = 0;
        if (reset & FCR_TX_RESET) this.thrIpending = true; // an empty transmitter, as after a send
        this.fcr = v & 0xc9;
        break;
      }
      case 3: this.lcr = v; break;
      case 4: this.mcr = v & 0x1f; break;
      case 7: this.scr = v; break;
      default: break;
    }
    this.raised();
  }

  /** Moves bytes waiting in the host ring into the device, so the state holds all of them. */
  drainInput(): void {
    while (this.held.length < MAX_UART_HELD && this.input.available()) this.held.push(this.input.take());
  }

  state(): UartState {
    this.drainInput();
    return {
      ier: this.ier, lcr: this.lcr, mcr: this.mcr, scr: this.scr, fcr: this.fcr, dll: this.dll, dlm: this.dlm, rx: [...this.held],
      thrIpending: this.thrIpending ? 1 : 0,
    };
  }
}
