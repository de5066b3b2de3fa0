import type { Device } from './device.ts';

export const PLIC_BASE = 0x0c00_0000;
/** Sources 1..96, as on QEMU virt (source 0 means "none"). */
export const PLIC_SOURCES = 96;
/** Hart 0's M-mode context (0) and its S-mode context (1), as QEMU's virt wires them. */
export const PLIC_CONTEXTS = 2;
const PRIORITY_MASK = 7; // 3 priority bits
const WORDS = PLIC_SOURCES / 32;
const PENDING = 0x1000;
const ENABLE = 0x2000;
const ENABLE_STRIDE = 0x80;
const CONTEXT = 0x20_0000;
const CONTEXT_STRIDE = 0x1000;

export interface PlicState {
  /** Index = source; [0] is always 0. */
  priority: number[];
  /** One bit per source, 32 to a word. */
  pending: number[];
  claimed: number[];
  /** PLIC_CONTEXTS rows of WORDS words. */
  enable: number[];
  threshold: number[];
}

/** An interrupt line into the PLIC: true while the device asserts it. */
export type IrqLine = () => boolean;

export function resetPlicState(): PlicState {
  return {
    priority: new Array<number>(PLIC_SOURCES + 1).fill(0),
    pending: new Array<number>(WORDS).fill(0),
    claimed: new Array<number>(WORDS).fill(0),
    enable: new Array<number>(PLIC_CONTEXTS * WORDS).fill(0),
    threshold: new Array<number>(PLIC_CONTEXTS).fill(0),
  };
}

const bit = (words: number[], irq: number): boolean => ((words[irq >>> 5]! >>> (irq & 31)) & 1) === 1;
const setBit = (words: number[], irq: number, on: boolean): void => {
  const m = 1 << (irq & 31);
  words[irq >>> 5] = (on ? words[irq >>> 5]! | m : words[irq >>> 5]! & ~m) >>> 0;
};

/**
 * The SiFive PLIC of QEMU's virt machine, register for register as QEMU 7.2 answers
 * (guest-programs/tests/plic.S checks it on both): 3-bit priorities, a level-triggered gateway
 * per source (pending latches while the line is high and the source is not claimed), claim
 * and complete per context. Context 0 drives mip.MEIP; context 1 (S-mode) keeps its registers,
 * but Ferry's hart has no S-mode to interrupt. Only aligned 32-bit accesses, as on QEMU.
 */
export class Plic implements Device<PlicState> {
  readonly name = 'plic';
  readonly base = PLIC_BASE;
  readonly size = 0x60_0000;
  readonly wordOnly = true;
  private st = resetPlicState();
  private readonly lineIrqs: number[] = [];
  private readonly lines: IrqLine[] = [];

  constructor(state?: PlicState) {
    if (state) this.load(state);
  }

  /**
   * Wires a device's interrupt line to source `irq`. The device calls the function returned
   * whenever its line may have risen (after each of its register accesses, when its alarm
   * fires), so a request is latched at the instruction that raised it even if the line falls
   * again before anyone looks at the PLIC: a run and its migrated copy latch the same requests.
   */
  connect(irq: number, line: IrqLine): () => void {
    this.lineIrqs.push(irq);
    this.lines.push(line);
    return () => {
      if (!bit(this.st.claimed, irq) && line()) setBit(this.st.pending, irq, true);
    };
  }

  load(state: PlicState): void {
    this.st = structuredClone(state);
    this.st.priority[0] = 0;
  }

  /** The gateways: a line that is high sets its source pending unless it is claimed (a completed source whose line stays high is pending again). */
  private sample(): void {
    for (let i = 0; i < this.lines.length; i++) {
      const irq = this.lineIrqs[i]!;
      if (!bit(this.st.claimed, irq) && this.lines[i]!()) setBit(this.st.pending, irq, true);
    }
  }

  /** The highest-priority source pending and enabled for `ctx` (lowest id on ties), or 0. */
  private best(ctx: number, above: number): number {
    let best = 0;
    let bestPrio = above;
    for (let w = 0; w < WORDS; w++) {
      let bits = (this.st.pending[w]! & this.st.enable[ctx * WORDS + w]!) >>> 0;
      while (bits !== 0) {
        const b = 31 - Math.clz32(bits & -bits);
        bits = (bits & ~(1 << b)) >>> 0;
        const irq = w * 32 + b;
        const prio = this.st.priority[irq] ?? 0;
        if (prio > bestPrio) { best = irq; bestPrio = prio; }
      }
    }
    return best;
  }

  /** Whether hart 0's M-mode external interrupt (mip.MEIP) is asserted now. */
  meip(): boolean {
    this.sample();
    return this.best(0, this.st.threshold[0]!) !== 0;
  }

  read(offset: number, _width: number): number {
    this.sample();
    if (offset < PENDING) {
      const irq = offset >>> 2;
      return irq <= PLIC_SOURCES ? this.st.priority[irq]! : 0;
    }
    if (offset < ENABLE) {
      const w = (offset - PENDING) >>> 2;
      return w < WORDS ? this.st.pending[w]! | 0 : 0;
    }
    if (offset < CONTEXT) {
      const ctx = Math.floor((offset - ENABLE) / ENABLE_STRIDE);
      const w = ((offset - ENABLE) % ENABLE_STRIDE) >>> 2;
      return ctx < PLIC_CONTEXTS && w < WORDS ? this.st.enable[ctx * WORDS + w]! | 0 : 0;
    }
    const ctx = Math.floor((offset - CONTEXT) / CONTEXT_STRIDE);
    if (ctx >= PLIC_CONTEXTS) return 0;
    switch ((offset - CONTEXT) % CONTEXT_STRIDE) {
      case 0: return this.st.threshold[ctx]!;
      case 4: return this.claim(ctx);
      default: return 0;
    }
  }

  /** Claim ignores the threshold (a priority of 0 never interrupts). */
  private claim(ctx: number): number {
    const irq = this.best(ctx, 0);
    if (irq !== 0) {
      setBit(this.st.pending, irq, false);
      setBit(this.st.claimed, irq, true);
    }
    return irq;
  }

  write(offset: number, _width: number, value: number): void {
    if (offset < PENDING) {
      const irq = offset >>> 2;
      if (irq >= 1 && irq <= PLIC_SOURCES) this.st.priority[irq] = value & PRIORITY_MASK;
    } else if (offset < ENABLE) {
      // pending bits are read-only
    } else if (offset < CONTEXT) {
      const ctx = Math.floor((offset - ENABLE) / ENABLE_STRIDE);
      const w = ((offset - ENABLE) % ENABLE_STRIDE) >>> 2;
      if (ctx < PLIC_CONTEXTS && w < WORDS) this.st.enable[ctx * WORDS + w] = value >>> 0;
    } else {
      const ctx = Math.floor((offset - CONTEXT) / CONTEXT_STRIDE);
      if (ctx >= PLIC_CONTEXTS) return;
      const reg = (offset - CONTEXT) % CONTEXT_STRIDE;
      if (reg === 0) this.st.threshold[ctx] = value & PRIORITY_MASK;
      // complete: a source not enabled for this context is ignored, as the PLIC spec says
      else if (reg === 4 && value >= 1 && value <= PLIC_SOURCES && ((this.st.enable[ctx * WORDS + (value >>> 5)]! >>> (value & 31)) & 1) === 1) {
        setBit(this.st.claimed, value, false);
      }
    }
    this.sample();
  }

  state(): PlicState {
    this.sample();
    return structuredClone(this.st);
  }
}
