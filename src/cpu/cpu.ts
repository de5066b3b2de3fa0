import { FerryError } from '../errors.ts';
import type { Bus } from '../devices/device.ts';
import type { Clint } from '../devices/clint.ts';
import type { MachineClock } from '../devices/clock.ts';
import type { GuestMemory } from '../memory/guest-memory.ts';
import { PAGE_EVER_WRITTEN, PAGE_PRESENT, PAGE_SHIFT } from '../memory/layout.ts';
import { compileBlock, type Block } from './block-compiler.ts';
import { decode, writesRd, type InsnName } from './isa.ts';
import { PMP_R, PMP_W, PMP_X, PmpRules, writePmpAddr, writePmpCfg } from './pmp.ts';
import {
  Cause, Csr, INTERRUPT, IRQ_MEI, IRQ_MSI, IRQ_MTI, MIE_WRITABLE, MIP_MEIP, MIP_MSIP, MIP_MTIP, MISA, MSTATUS_MIE, MSTATUS_MPIE,
  MSTATUS_MPP, MSTATUS_MPP_SHIFT, MSTATUS_MPRV, MSTATUS_TW, MSTATUS_WRITABLE, PRIV_M, PRIV_U,
  S_MCAUSE, S_MCOUNTEREN, S_MEPC, S_MIE, S_MSCRATCH, S_MSTATUS, S_MTVAL, S_MTVEC, S_PC, S_PMPADDR0, S_PMPCFG0, S_PRIV, X_SINK,
  readInstret, writeInstret,
} from './state.ts';

/**
 * Executor ops. Declared here, in the executor's own file, because esbuild (tsx) inlines a
 * const enum only inside the file that declares it; the switch below must see number
 * literals or V8 turns it into a chain of comparisons instead of a jump table.
 */
export const enum Op {
  Undecoded = 0,
  Illegal, Lui, Auipc, Jal, Jalr,
  Beq, Bne, Blt, Bge, Bltu, Bgeu,
  Lb, Lh, Lw, Lbu, Lhu, Sb, Sh, Sw,
  Addi, Slti, Sltiu, Xori, Ori, Andi, Slli, Srli, Srai,
  Add, Sub, Sll, Slt, Sltu, Xor, Srl, Sra, Or, And,
  Fence, FenceI, Ecall, Ebreak, Mret, Wfi,
  Csrrw, Csrrs, Csrrc, Csrrwi, Csrrsi, Csrrci,
  Mul, Mulh, Mulhsu, Mulhu, Div, Divu, Rem, Remu,
  /** A jal or taken branch whose offset is not a multiple of 4: traps when taken. */
  MisalignedJump,
}

/** Why `run` returned. */
export const enum StepExit {
  /** The instruction budget is used up (or an event asks the caller to look around). */
  Budget = 0,
  /** The guest executed `wfi` with nothing pending: sleep until a deadline or a request. */
  Wfi = 1,
  /** The guest powered off (finisher or HTIF); see `exitCode`. */
  Halt = 2,
}

const RAM_XOR = -0x8000_0000; // addr ^ RAM_XOR = addr - 0x8000_0000 for RAM addresses
const CODE_WORDS = 2048; // two Int32 per instruction slot: packed fields, immediate
const EMPTY_CODE: Int32Array = new Int32Array(CODE_WORDS);
const MAX_CODE_PAGES = 8192;
const SLOTS = 1024;
const EMPTY_BLOCKS: (Block | undefined)[] = [];
const EMPTY_HEAT: Uint8Array = new Uint8Array(SLOTS);
/** Counts nobody reads: the heat of a page whose blocks may not run. */
const SPARE_HEAT: Uint8Array = new Uint8Array(SLOTS);
/** A block's first write to a page always goes to the interpreter (which checks PMP). */
const NO_FAST_FIRST_WRITE = (_page: number): boolean => false;
/** Visits of an instruction in the interpreter before a block is compiled from it. */
const DEFAULT_JIT_THRESHOLD = 16;

const OP_OF: Record<InsnName, Op> = {
  lui: Op.Lui, auipc: Op.Auipc, jal: Op.Jal, jalr: Op.Jalr,
  beq: Op.Beq, bne: Op.Bne, blt: Op.Blt, bge: Op.Bge, bltu: Op.Bltu, bgeu: Op.Bgeu,
  lb: Op.Lb, lh: Op.Lh, lw: Op.Lw, lbu: Op.Lbu, lhu: Op.Lhu, sb: Op.Sb, sh: Op.Sh, sw: Op.Sw,
  addi: Op.Addi, slti: Op.Slti, sltiu: Op.Sltiu, xori: Op.Xori, ori: Op.Ori, andi: Op.Andi,
  slli: Op.Slli, srli: Op.Srli, srai: Op.Srai,
  add: Op.Add, sub: Op.Sub, sll: Op.Sll, slt: Op.Slt, sltu: Op.Sltu, xor: Op.Xor, srl: Op.Srl, sra: Op.Sra, or: Op.Or, and: Op.And,
  fence: Op.Fence, 'fence.i': Op.FenceI, ecall: Op.Ecall, ebreak: Op.Ebreak, mret: Op.Mret, wfi: Op.Wfi,
  csrrw: Op.Csrrw, csrrs: Op.Csrrs, csrrc: Op.Csrrc, csrrwi: Op.Csrrwi, csrrsi: Op.Csrrsi, csrrci: Op.Csrrci,
  mul: Op.Mul, mulh: Op.Mulh, mulhsu: Op.Mulhsu, mulhu: Op.Mulhu, div: Op.Div, divu: Op.Divu, rem: Op.Rem, remu: Op.Remu,
};

/** Packs a decoded instruction into two words: op | rd << 8 | rs1 << 14 | rs2 << 19 (rd 32 = sink), and imm. */
export function pack(insn: number): [number, number] {
  const d = decode(insn);
  if (d.row === undefined) return [Op.Illegal, d.imm];
  let op = OP_OF[d.row.name];
  if ((d.row.format === 'B' || d.row.format === 'J') && (d.imm & 3) !== 0) op = Op.MisalignedJump;
  const rd = writesRd(d.row.format) && d.rd === 0 ? X_SINK : d.rd;
  return [op | (rd << 8) | (d.rs1 << 14) | (d.rs2 << 19), d.imm];
}

function mulhu(a: number, b: number): number {
  const a0 = a & 0xffff, a1 = a >>> 16, b0 = b & 0xffff, b1 = b >>> 16;
  const p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  return (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16)) | 0;
}

export interface CpuOptions {
  memory: GuestMemory;
  state: Int32Array;
  bus: Bus;
  clint: Clint;
  clock: MachineClock;
  /** RAM offset of the HTIF `tohost` word, or -1. */
  tohost: number;
  /** Called (vCPU thread) when the guest touches a page that is not present; must return once it is. */
  missingPage?: (page: number) => void;
  /** Compile hot straight-line code into JS functions (default on; FERRY_JIT=0 turns it off). */
  jit?: boolean;
  /** Interpreter visits before an instruction starts a compiled block (1..255; tests use 1). */
  jitThreshold?: number;
  /** The interrupt controller's line into mip.MEIP (none: never asserted). */
  external?: ExternalInterrupt;
}

/** What the vCPU needs of the platform's interrupt controller (the PLIC and what it hears). */
export interface ExternalInterrupt {
  /** mip.MEIP now. */
  pending(): boolean;
  /** Deterministic mode: the mtime of the next device event that may assert it; Infinity if none. */
  nextEventMtime(): number;
  /** Real-time mode: host milliseconds until then; Infinity if none. */
  msUntilEvent(): number;
}

const NO_EXTERNAL: ExternalInterrupt = { pending: () => false, nextEventMtime: () => Infinity, msUntilEvent: () => Infinity };

/** What a CSR instruction did: a read alone cannot change which interrupt is pending. */
const enum CsrDone { Illegal = 0, Read = 1, Written = 2 }

/** The exit code of a VM halted in a trap loop (its reason says where). */
export const TRAP_LOOP_EXIT = 1;

/**
 * The RV32IM + Zicsr hart. `run(budget)` executes up to `budget` steps (retired instructions
 * plus traps taken) and returns why it stopped. Traps are values applied in one place
 * (`trap`); exceptions are thrown only for host bugs.
 */
export class Cpu {
  readonly s: Int32Array;
  readonly clock: MachineClock;
  exitCode = 0;
  exitReason = '';
  /** Retired instructions before the current `exec` call. */
  private retired: number;
  /** Retired instructions within the current `exec` call, valid whenever a slow path runs. */
  private cur = 0;
  private halted = false;
  /** The last exception taken: where it sent the hart, what it was, and the instructions retired then (checkTrapLoop). */
  private readonly lastTrap = { target: -1, cause: -1, tval: 0, instret: -1, repeats: 0 };
  private waiting = false;
  private loadValue = 0;

  private readonly mem: GuestMemory;
  private readonly ramSize: number;
  private readonly ram8: Uint8Array;
  private readonly ram8s: Int8Array;
  private readonly ram16: Uint16Array;
  private readonly ram16s: Int16Array;
  private readonly ram32: Int32Array;
  /** Per page: readable without a slow path (known present). vCPU-private. */
  private readonly rok: Uint8Array;
  /**
   * Per page: writable without a slow path — present, ever-written, marked in the active
   * dirty log, holding no decoded code and not the tohost word. A private write TLB the
   * size of RAM: the hot path touches no shared page-state word.
   */
  private readonly wok: Uint8Array;
  private activeDirty: Uint8Array;
  private readonly code: (Int32Array | undefined)[];
  /** Per code page: compiled blocks by instruction slot, and interpreter visit counts. */
  private readonly blocks: ((Block | undefined)[] | undefined)[];
  private readonly heat: (Uint8Array | undefined)[];
  private fetchedBlocks: (Block | undefined)[] = EMPTY_BLOCKS;
  private fetchedHeat: Uint8Array = EMPTY_HEAT;
  private readonly jit: boolean;
  private readonly jitThreshold: number;
  private codePages = 0;
  private readonly bus: Bus;
  private readonly clint: Clint;
  private readonly external: ExternalInterrupt;
  /** The PMP entries, decoded from the state words. */
  private readonly pmp = new PmpRules();
  /** This run of `exec` checks loads and stores against PMP (through the checked TLBs below, then the slow path). */
  private dataChecked = false;
  /** The page being fetched from is only partly executable: check each instruction. */
  private fetchEach = false;
  /**
   * The TLBs while PMP checks loads and stores (U-mode, or M-mode under a locked entry), for the
   * privilege `checkedPriv`: a page is in `prok` (`pwok`) only if it is in `rok` (`wok`) and PMP
   * lets that privilege read (write) all of it. Cleared with the PMP rules and when the privilege
   * they were filled for changes, and `pwok` wherever `wok` is, so a store never skips the dirty log.
   */
  private prok: Uint8Array | undefined;
  private pwok: Uint8Array | undefined;
  private checkedPriv = PRIV_U;
  private readonly tohost: number;
  private readonly missingPage: (page: number) => void;
  /**
   * Set from the missingPage hook (endSliceAfterAccess): exec ends the slice after the faulting
   * instruction, so a guest that faults on page after page still answers its host (pause, dirty
   * sync, progress) every slice, not after a whole budget of faults.
   */
  private faulted = false;
  /** exec ended early for a fault: run() returns too. */
  private sliceEnded = false;

  constructor(o: CpuOptions) {
    this.s = o.state;
    this.mem = o.memory;
    this.clock = o.clock;
    this.bus = o.bus;
    this.clint = o.clint;
    this.external = o.external ?? NO_EXTERNAL;
    this.pmp.rebuild(o.state);
    this.tohost = o.tohost;
    this.missingPage = o.missingPage ?? ((page) => {
      throw new FerryError('EPAGE', `guest page ${page} is not present and no pager is attached`);
    });
    const buf = o.memory.buffers.ram;
    const size = buf.byteLength;
    this.ramSize = size;
    // Fixed-length views (the buffer is growable, see sharedZeroed, but never grows).
    this.ram8 = new Uint8Array(buf, 0, size);
    this.ram8s = new Int8Array(buf, 0, size);
    this.ram16 = new Uint16Array(buf, 0, size / 2);
    this.ram16s = new Int16Array(buf, 0, size / 2);
    this.ram32 = new Int32Array(buf, 0, size / 4);
    // Both start empty: the first access to each page takes the slow path once and fills them
    // (no up-front scan of the page states, which would delay a migration's switch-over).
    this.rok = new Uint8Array(o.memory.pages);
    this.wok = new Uint8Array(o.memory.pages);
    this.activeDirty = o.memory.dirtyLogs[0];
    this.code = new Array<Int32Array | undefined>(o.memory.pages);
    this.blocks = new Array<(Block | undefined)[] | undefined>(o.memory.pages);
    this.heat = new Array<Uint8Array | undefined>(o.memory.pages);
    this.jit = o.jit ?? process.env.FERRY_JIT !== '0';
    this.jitThreshold = Math.max(1, Math.min(255, o.jitThreshold ?? DEFAULT_JIT_THRESHOLD));
    this.retired = readInstret(this.s);
  }

  /** Retired instructions, exact at any slow-path call and between runs. */
  instret(): number {
    return this.retired + this.cur;
  }

  get pc(): number {
    return this.s[S_PC]! >>> 0;
  }

  /**
   * Switches dirty logging to `log` (a slice-boundary action, DESIGN §3). Every page must
   * take the slow path again so its next write is recorded in the new log.
   */
  setDirtyLog(log: Uint8Array): void {
    this.activeDirty = log;
    this.forgetMarkedPages();
  }

  /**
   * Sends every page's next write through the slow path again, so it is marked in the active log
   * (the vCPU stops: the host may then clear both logs without a switch, see DirtyLog.harvestBothStopped).
   */
  forgetMarkedPages(): void {
    this.wok.fill(0);
    this.pwok?.fill(0);
  }

  /** A page became present (post-copy fill); lets the fast paths use it. */
  pagePresent(page: number): void {
    this.rok[page] = 1;
  }

  run(budget: number): StepExit {
    let remaining = budget;
    this.waiting = false;
    while (remaining > 0 && !this.halted) {
      const irq = this.pendingInterrupt();
      if (irq >= 0) {
        this.s[S_PC] = this.trap(INTERRUPT | irq, 0, this.s[S_PC]!);
      }
      let limit = remaining;
      if (this.clock.mode === 'icount') {
        // stop where an enabled interrupt becomes pending, so it is taken at the same instruction on every run
        const until = this.armedDeadline(true) - this.clock.now();
        if (until > 0 && until < limit) limit = until;
      }
      remaining -= this.exec(limit);
      if (this.waiting || this.sliceEnded) break;
    }
    this.sliceEnded = false;
    writeInstret(this.s, this.retired);
    return this.halted ? StepExit.Halt : this.waiting ? StepExit.Wfi : StepExit.Budget;
  }

  /** Machine interrupt pending and enabled now, highest priority first; -1 if none. */
  private pendingInterrupt(): number {
    const s = this.s;
    if (s[S_PRIV] === PRIV_M && (s[S_MSTATUS]! & MSTATUS_MIE) === 0) return -1;
    const mie = s[S_MIE]!;
    if (mie === 0) return -1;
    const pending = this.mip(mie) & mie;
    if (pending === 0) return -1;
    if (pending & MIP_MEIP) return IRQ_MEI;
    if (pending & MIP_MSIP) return IRQ_MSI;
    return IRQ_MTI;
  }

  /**
   * Deterministic mode: the earliest mtime at which an interrupt enabled in mie may become
   * pending (the CLINT's mtimecmp, the next device event); with `takeable`, only if it would be
   * taken now (not masked by mstatus.MIE in M-mode). Infinity if there is none.
   */
  private armedDeadline(takeable: boolean): number {
    const s = this.s;
    if (takeable && s[S_PRIV] === PRIV_M && (s[S_MSTATUS]! & MSTATUS_MIE) === 0) return Infinity;
    const mie = s[S_MIE]!;
    let t = Infinity;
    if (mie & MIP_MTIP) t = this.clint.mtimecmp;
    if (mie & MIP_MEIP) t = Math.min(t, this.external.nextEventMtime());
    return t;
  }

  /**
   * A guest whose trap vector itself faults (a handler at an unmapped address, a vector in
   * memory it cannot fetch) takes the same exception at the vector forever with no instruction
   * retired; `--insn-limit` never fires and the host thread spins. From the second such trap on
   * nothing changes (mepc, mcause, mtval and mstatus reach a fixed point, and interrupts stay
   * masked in M-mode), so the third is proof: the CPU halts, saying where and why.
   */
  private checkTrapLoop(cause: number, tval: number, pc: number): void {
    const retired = this.instret();
    const t = this.lastTrap;
    if (pc === t.target && cause === t.cause && tval === t.tval && retired === t.instret) t.repeats++;
    else t.repeats = 0;
    t.target = this.vectorFor(cause);
    t.cause = cause;
    t.tval = tval;
    t.instret = retired;
    if (t.repeats >= 2 && !this.halted) {
      const hex = (v: number) => `0x${(v >>> 0).toString(16)}`;
      this.halt(TRAP_LOOP_EXIT, `trap loop: the trap vector faults, no instruction retires (pc ${hex(pc)}, mcause ${cause}, mtval ${hex(tval)})`);
    }
  }

  /** Where a trap with `cause` goes (mtvec: direct, or vectored for interrupts). */
  private vectorFor(cause: number): number {
    const tvec = this.s[S_MTVEC]!;
    if ((tvec & 3) === 1 && cause < 0) return ((tvec & ~3) + 4 * (cause & 0x7fff_ffff)) | 0;
    return tvec & ~3;
  }

  /** mip; the interrupt controller is asked only if `wanted` has MEIP (its answer has a cost). */
  private mip(wanted = MIP_MEIP): number {
    return (this.clint.msip ? MIP_MSIP : 0) | (this.clint.timerPending() ? MIP_MTIP : 0)
      | ((wanted & MIP_MEIP) !== 0 && this.external.pending() ? MIP_MEIP : 0);
  }

  /**
   * Takes a trap into M-mode; returns the handler's pc. Every caller has brought `instret()` up
   * to date (this.cur), so the trap-loop check below sees exactly what retired in between.
   */
  private trap(cause: number, tval: number, pc: number): number {
    const s = this.s;
    if (cause >= 0) this.checkTrapLoop(cause, tval, pc);
    s[S_MEPC] = pc;
    s[S_MCAUSE] = cause;
    s[S_MTVAL] = tval;
    const st = s[S_MSTATUS]!;
    s[S_MSTATUS] = (st & ~(MSTATUS_MPIE | MSTATUS_MIE | MSTATUS_MPP))
      | ((st & MSTATUS_MIE) ? MSTATUS_MPIE : 0)
      | (s[S_PRIV]! << MSTATUS_MPP_SHIFT);
    s[S_PRIV] = PRIV_M;
    return this.vectorFor(cause);
  }

  /**
   * The hot loop. Executes at most `limit` steps and returns how many it took. Anything that
   * may change which interrupt is pending ends the loop after its instruction.
   */
  private exec(limit: number): number {
    const s = this.s;
    const ram8 = this.ram8, ram8s = this.ram8s, ram16 = this.ram16, ram16s = this.ram16s, ram32 = this.ram32;
    // PMP binds U-mode, and M-mode only through locked entries. Then fetches are checked page by
    // page, and loads and stores go through the checked TLBs, so a page PMP does not allow whole
    // takes the slow path, which checks each access; compiled blocks leave first writes to the
    // interpreter (they would skip that check).
    const fetchChecked = s[S_PRIV] === PRIV_U || this.pmp.anyLocked;
    const dataPriv = this.dataPriv();
    const dataChecked = dataPriv === PRIV_U || this.pmp.anyLocked;
    this.dataChecked = dataChecked;
    let rok = this.rok, wok = this.wok;
    if (dataChecked) {
      rok = this.prok ??= new Uint8Array(this.rok.length);
      wok = this.pwok ??= new Uint8Array(this.rok.length);
      if (this.checkedPriv !== dataPriv) {
        rok.fill(0);
        wok.fill(0);
        this.checkedPriv = dataPriv;
      }
    }
    const markWrite = dataChecked ? NO_FAST_FIRST_WRITE : this.markWrite;
    const ramSize = this.ramSize;
    let pc = s[S_PC]! | 0;
    let n = 0;
    let steps = 0;
    let pageBase = 1; // never equal to an aligned pc's page: forces the first fetch
    let code = EMPTY_CODE;
    let blocks = EMPTY_BLOCKS;
    let heat = EMPTY_HEAT;
    const jit = this.jit;
    const hot = this.jitThreshold;
    this.cur = 0;
    while (steps < limit) {
      let k = (pc - pageBase) | 0;
      if (k >>> 0 > 4092) {
        this.cur = n;
        const c = this.fetchPage(pc);
        if (c === undefined || (fetchChecked && !this.fetchAllowed(pc))) {
          steps++;
          pc = this.trap(Cause.InsnAccess, pc, pc);
          pageBase = 1;
          continue;
        }
        if (this.faulted) limit = this.endSlice(steps + 1); // the instruction at pc still runs
        code = c;
        blocks = this.fetchedBlocks;
        heat = this.fetchedHeat;
        pageBase = pc & -4096;
        k = pc - pageBase;
        if (fetchChecked && this.fetchEach) {
          pageBase = 1; // a page only partly executable: come back here for the next instruction,
          blocks = EMPTY_BLOCKS; // and run none of its blocks (they would run several)
          heat = SPARE_HEAT;
        }
      }
      if (jit) {
        const blk = blocks[k >> 2];
        if (blk !== undefined) {
          const done = blk(s, ram8, ram8s, ram16, ram16s, ram32, rok, wok, ramSize, limit - steps, markWrite);
          if (done > 0) {
            steps += done;
            n += done;
            pc = s[S_PC]!;
            continue;
          }
        } else if (++heat[k >> 2] === hot) {
          this.compileAt(pc, k);
        }
      }
      steps++;
      const slot = k >> 1;
      let w = code[slot]!;
      if (w === 0) w = this.decodeSlot(code, slot, pc);
      const imm = code[slot + 1]!;
      const rd = (w >>> 8) & 63;
      const rs1 = (w >>> 14) & 31;
      switch (w & 255) {
        case Op.Addi: s[rd] = s[rs1]! + imm; pc = (pc + 4) | 0; break;
        case Op.Lui: s[rd] = imm; pc = (pc + 4) | 0; break;
        case Op.Auipc: s[rd] = pc + imm; pc = (pc + 4) | 0; break;
        case Op.Jal: s[rd] = pc + 4; pc = (pc + imm) | 0; break;
        case Op.Jalr: {
          const t = ((s[rs1]! + imm) & ~1) | 0;
          if (t & 2) { this.cur = n; pc = this.trap(Cause.InsnMisaligned, t, pc); continue; }
          s[rd] = pc + 4;
          pc = t;
          break;
        }
        case Op.Beq: pc = (s[rs1] === s[(w >>> 19) & 31]) ? (pc + imm) | 0 : (pc + 4) | 0; break;
        case Op.Bne: pc = (s[rs1] !== s[(w >>> 19) & 31]) ? (pc + imm) | 0 : (pc + 4) | 0; break;
        case Op.Blt: pc = (s[rs1]! < s[(w >>> 19) & 31]!) ? (pc + imm) | 0 : (pc + 4) | 0; break;
        case Op.Bge: pc = (s[rs1]! >= s[(w >>> 19) & 31]!) ? (pc + imm) | 0 : (pc + 4) | 0; break;
        case Op.Bltu: pc = ((s[rs1]! ^ RAM_XOR) < (s[(w >>> 19) & 31]! ^ RAM_XOR)) ? (pc + imm) | 0 : (pc + 4) | 0; break;
        case Op.Bgeu: pc = ((s[rs1]! ^ RAM_XOR) >= (s[(w >>> 19) & 31]! ^ RAM_XOR)) ? (pc + imm) | 0 : (pc + 4) | 0; break;
        case Op.MisalignedJump: {
          this.cur = n;
          const t = this.misalignedJump(pc);
          if (t !== pc) { pc = t; continue; } // trapped
          pc = (pc + 4) | 0; // a branch not taken
          break;
        }
        case Op.Lw: {
          const a = (s[rs1]! + imm) | 0;
          const off = a ^ RAM_XOR;
          if (off >= 0 && off < ramSize && (off & 3) === 0 && rok[off >>> PAGE_SHIFT] === 1) s[rd] = ram32[off >> 2]!;
          else {
            this.cur = n;
            if (!this.loadSlow(a, 4, false)) { pc = this.trap(Cause.LoadAccess, a, pc); continue; }
            s[rd] = this.loadValue;
            if (this.faulted) limit = this.endSlice(steps);
          }
          pc = (pc + 4) | 0;
          break;
        }
        case Op.Lbu: {
          const a = (s[rs1]! + imm) | 0;
          const off = a ^ RAM_XOR;
          if (off >= 0 && off < ramSize && rok[off >>> PAGE_SHIFT] === 1) s[rd] = ram8[off]!;
          else {
            this.cur = n;
            if (!this.loadSlow(a, 1, false)) { pc = this.trap(Cause.LoadAccess, a, pc); continue; }
            s[rd] = this.loadValue;
            if (this.faulted) limit = this.endSlice(steps);
          }
          pc = (pc + 4) | 0;
          break;
        }
        case Op.Lb: {
          const a = (s[rs1]! + imm) | 0;
          const off = a ^ RAM_XOR;
          if (off >= 0 && off < ramSize && rok[off >>> PAGE_SHIFT] === 1) s[rd] = ram8s[off]!;
          else {
            this.cur = n;
            if (!this.loadSlow(a, 1, true)) { pc = this.trap(Cause.LoadAccess, a, pc); continue; }
            s[rd] = this.loadValue;
            if (this.faulted) limit = this.endSlice(steps);
          }
          pc = (pc + 4) | 0;
          break;
        }
        case Op.Lhu: {
          const a = (s[rs1]! + imm) | 0;
          const off = a ^ RAM_XOR;
          if (off >= 0 && off < ramSize && (off & 1) === 0 && rok[off >>> PAGE_SHIFT] === 1) s[rd] = ram16[off >> 1]!;
          else {
            this.cur = n;
            if (!this.loadSlow(a, 2, false)) { pc = this.trap(Cause.LoadAccess, a, pc); continue; }
            s[rd] = this.loadValue;
            if (this.faulted) limit = this.endSlice(steps);
          }
          pc = (pc + 4) | 0;
          break;
        }
        case Op.Lh: {
          const a = (s[rs1]! + imm) | 0;
          const off = a ^ RAM_XOR;
          if (off >= 0 && off < ramSize && (off & 1) === 0 && rok[off >>> PAGE_SHIFT] === 1) s[rd] = ram16s[off >> 1]!;
          else {
            this.cur = n;
            if (!this.loadSlow(a, 2, true)) { pc = this.trap(Cause.LoadAccess, a, pc); continue; }
            s[rd] = this.loadValue;
            if (this.faulted) limit = this.endSlice(steps);
          }
          pc = (pc + 4) | 0;
          break;
        }
        case Op.Sw: {
          const a = (s[rs1]! + imm) | 0;
          const off = a ^ RAM_XOR;
          const v = s[(w >>> 19) & 31]!;
          if (off >= 0 && off < ramSize && (off & 3) === 0 && wok[off >>> PAGE_SHIFT] === 1) ram32[off >> 2] = v;
          else {
            this.cur = n;
            if (!this.storeSlow(a, 4, v)) { pc = this.trap(Cause.StoreAccess, a, pc); continue; }
            if (off < 0 || off >= ramSize || this.halted) limit = steps; // MMIO: let run() look at interrupts
            if (this.faulted) limit = this.endSlice(steps);
            pageBase = 1; // the store may have invalidated decoded code or blocks: refetch
          }
          pc = (pc + 4) | 0;
          break;
        }
        case Op.Sb: {
          const a = (s[rs1]! + imm) | 0;
          const off = a ^ RAM_XOR;
          const v = s[(w >>> 19) & 31]!;
          if (off >= 0 && off < ramSize && wok[off >>> PAGE_SHIFT] === 1) ram8[off] = v;
          else {
            this.cur = n;
            if (!this.storeSlow(a, 1, v)) { pc = this.trap(Cause.StoreAccess, a, pc); continue; }
            if (off < 0 || off >= ramSize || this.halted) limit = steps;
            if (this.faulted) limit = this.endSlice(steps);
            pageBase = 1;
          }
          pc = (pc + 4) | 0;
          break;
        }
        case Op.Sh: {
          const a = (s[rs1]! + imm) | 0;
          const off = a ^ RAM_XOR;
          const v = s[(w >>> 19) & 31]!;
          if (off >= 0 && off < ramSize && (off & 1) === 0 && wok[off >>> PAGE_SHIFT] === 1) ram16[off >> 1] = v;
          else {
            this.cur = n;
            if (!this.storeSlow(a, 2, v)) { pc = this.trap(Cause.StoreAccess, a, pc); continue; }
            if (off < 0 || off >= ramSize || this.halted) limit = steps;
            if (this.faulted) limit = this.endSlice(steps);
            pageBase = 1;
          }
          pc = (pc + 4) | 0;
          break;
        }
        case Op.Slti: s[rd] = s[rs1]! < imm ? 1 : 0; pc = (pc + 4) | 0; break;
        case Op.Sltiu: s[rd] = (s[rs1]! ^ RAM_XOR) < (imm ^ RAM_XOR) ? 1 : 0; pc = (pc + 4) | 0; break;
        case Op.Xori: s[rd] = s[rs1]! ^ imm; pc = (pc + 4) | 0; break;
        case Op.Ori: s[rd] = s[rs1]! | imm; pc = (pc + 4) | 0; break;
        case Op.Andi: s[rd] = s[rs1]! & imm; pc = (pc + 4) | 0; break;
        case Op.Slli: s[rd] = s[rs1]! << imm; pc = (pc + 4) | 0; break;
        case Op.Srli: s[rd] = s[rs1]! >>> imm; pc = (pc + 4) | 0; break;
        case Op.Srai: s[rd] = s[rs1]! >> imm; pc = (pc + 4) | 0; break;
        case Op.Add: s[rd] = s[rs1]! + s[(w >>> 19) & 31]!; pc = (pc + 4) | 0; break;
        case Op.Sub: s[rd] = s[rs1]! - s[(w >>> 19) & 31]!; pc = (pc + 4) | 0; break;
        case Op.Sll: s[rd] = s[rs1]! << s[(w >>> 19) & 31]!; pc = (pc + 4) | 0; break;
        case Op.Slt: s[rd] = s[rs1]! < s[(w >>> 19) & 31]! ? 1 : 0; pc = (pc + 4) | 0; break;
        case Op.Sltu: s[rd] = (s[rs1]! ^ RAM_XOR) < (s[(w >>> 19) & 31]! ^ RAM_XOR) ? 1 : 0; pc = (pc + 4) | 0; break;
        case Op.Xor: s[rd] = s[rs1]! ^ s[(w >>> 19) & 31]!; pc = (pc + 4) | 0; break;
        case Op.Srl: s[rd] = s[rs1]! >>> s[(w >>> 19) & 31]!; pc = (pc + 4) | 0; break;
        case Op.Sra: s[rd] = s[rs1]! >> s[(w >>> 19) & 31]!; pc = (pc + 4) | 0; break;
        case Op.Or: s[rd] = s[rs1]! | s[(w >>> 19) & 31]!; pc = (pc + 4) | 0; break;
        case Op.And: s[rd] = s[rs1]! & s[(w >>> 19) & 31]!; pc = (pc + 4) | 0; break;
        case Op.Mul: s[rd] = Math.imul(s[rs1]!, s[(w >>> 19) & 31]!); pc = (pc + 4) | 0; break;
        case Op.Mulh: {
          const a = s[rs1]!, b = s[(w >>> 19) & 31]!;
          s[rd] = mulhu(a, b) - (a < 0 ? b : 0) - (b < 0 ? a : 0);
          pc = (pc + 4) | 0;
          break;
        }
        case Op.Mulhsu: {
          const a = s[rs1]!, b = s[(w >>> 19) & 31]!;
          s[rd] = mulhu(a, b) - (a < 0 ? b : 0);
          pc = (pc + 4) | 0;
          break;
        }
        case Op.Mulhu: s[rd] = mulhu(s[rs1]!, s[(w >>> 19) & 31]!); pc = (pc + 4) | 0; break;
        case Op.Div: {
          const a = s[rs1]!, b = s[(w >>> 19) & 31]!;
          s[rd] = b === 0 ? -1 : (a === -0x8000_0000 && b === -1) ? a : (a / b) | 0;
          pc = (pc + 4) | 0;
          break;
        }
        case Op.Divu: {
          const b = s[(w >>> 19) & 31]! >>> 0;
          s[rd] = b === 0 ? -1 : ((s[rs1]! >>> 0) / b) >>> 0;
          pc = (pc + 4) | 0;
          break;
        }
        case Op.Rem: {
          const a = s[rs1]!, b = s[(w >>> 19) & 31]!;
          s[rd] = b === 0 ? a : (b === -1 ? 0 : a % b);
          pc = (pc + 4) | 0;
          break;
        }
        case Op.Remu: {
          const b = s[(w >>> 19) & 31]! >>> 0;
          s[rd] = b === 0 ? s[rs1]! : (s[rs1]! >>> 0) % b;
          pc = (pc + 4) | 0;
          break;
        }
        case Op.Fence:
        case Op.FenceI: // decoded code is invalidated by every store to its page, so fence.i has nothing left to do
          pc = (pc + 4) | 0;
          break;
        case Op.Ecall:
          this.cur = n;
          pc = this.trap(s[S_PRIV] === PRIV_U ? Cause.EcallU : Cause.EcallM, 0, pc);
          continue;
        case Op.Ebreak:
          this.cur = n;
          pc = this.trap(Cause.Breakpoint, pc, pc);
          continue;
        case Op.Mret: {
          if (s[S_PRIV] !== PRIV_M) { this.cur = n; pc = this.trap(Cause.IllegalInsn, this.rawInsn(pc), pc); continue; }
          const st = s[S_MSTATUS]!;
          // MPRV stays as it is: QEMU 7.2's virt hart does not clear it (privileged spec 1.12 would)
          s[S_PRIV] = (st & MSTATUS_MPP) >>> MSTATUS_MPP_SHIFT;
          s[S_MSTATUS] = (st & ~(MSTATUS_MIE | MSTATUS_MPP)) | MSTATUS_MPIE | ((st & MSTATUS_MPIE) ? MSTATUS_MIE : 0);
          pc = s[S_MEPC]!;
          limit = steps;
          break;
        }
        case Op.Wfi: {
          if (s[S_PRIV] === PRIV_U && (s[S_MSTATUS]! & MSTATUS_TW)) { this.cur = n; pc = this.trap(Cause.IllegalInsn, this.rawInsn(pc), pc); continue; }
          pc = (pc + 4) | 0;
          this.cur = n + 1;
          this.waitForInterrupt();
          limit = steps;
          break;
        }
        case Op.Csrrw: case Op.Csrrs: case Op.Csrrc: case Op.Csrrwi: case Op.Csrrsi: case Op.Csrrci: {
          this.cur = n;
          const done = this.csrInsn(w & 255, rd, rs1, imm);
          if (done === CsrDone.Illegal) { pc = this.trap(Cause.IllegalInsn, this.rawInsn(pc), pc); continue; }
          pc = (pc + 4) | 0;
          if (done === CsrDone.Written) limit = steps; // mie, mstatus, the PLIC's view may have changed: let run() look
          break;
        }
        default: // Op.Illegal
          this.cur = n;
          pc = this.trap(Cause.IllegalInsn, imm, pc);
          continue;
      }
      n++;
    }
    s[S_PC] = pc;
    this.retired += n;
    this.cur = 0;
    return steps;
  }

  private rawInsn(pc: number): number {
    return this.ram32[(pc ^ RAM_XOR) >> 2]!;
  }

  private decodeSlot(code: Int32Array, slot: number, pc: number): number {
    const [w, imm] = pack(this.rawInsn(pc));
    code[slot] = w;
    code[slot + 1] = imm;
    return w;
  }

  /** Decoded-instruction page for `pc`, or undefined for a fetch access fault. */
  private fetchPage(pc: number): Int32Array | undefined {
    const off = pc ^ RAM_XOR;
    if (off < 0 || off >= this.ramSize) return undefined;
    const page = off >>> PAGE_SHIFT;
    this.ensureReadable(page);
    let c = this.code[page];
    if (c === undefined) {
      if (this.codePages >= MAX_CODE_PAGES) this.dropCode();
      c = new Int32Array(CODE_WORDS);
      this.code[page] = c;
      this.blocks[page] = new Array<Block | undefined>(SLOTS);
      this.heat[page] = new Uint8Array(SLOTS);
      this.codePages++;
      this.wok[page] = 0; // stores to this page must now invalidate decoded slots
      if (this.pwok) this.pwok[page] = 0;
    }
    this.fetchedBlocks = this.blocks[page]!;
    this.fetchedHeat = this.heat[page]!;
    return c;
  }

  private dropCode(): void {
    this.code.fill(undefined);
    this.blocks.fill(undefined);
    this.heat.fill(undefined);
    this.codePages = 0;
  }

  private compileAt(pc: number, k: number): void {
    const off = pc ^ RAM_XOR;
    const b = compileBlock(this.ram32, off, pc);
    if (b !== undefined) this.blocks[off >>> PAGE_SHIFT]![k >> 2] = b.fn;
  }

  /** A jal or branch with an offset that is 2 mod 4: traps if the jump is taken. */
  private misalignedJump(pc: number): number {
    const insn = this.rawInsn(pc);
    const d = decode(insn);
    const s = this.s;
    const a = s[d.rs1]!, b = s[d.rs2]!;
    let taken: boolean;
    switch ((insn >>> 12) & 7) {
      case 0: taken = a === b; break;
      case 1: taken = a !== b; break;
      case 4: taken = a < b; break;
      case 5: taken = a >= b; break;
      case 6: taken = (a >>> 0) < (b >>> 0); break;
      default: taken = (a >>> 0) >= (b >>> 0); break;
    }
    if ((insn & 0x7f) === 0x6f) taken = true; // jal
    if (!taken) return pc;
    return this.trap(Cause.InsnMisaligned, (pc + d.imm) | 0, pc);
  }

  /** Called by the missingPage hook: the slice ends once the access that faulted is done. */
  endSliceAfterAccess(): void {
    this.faulted = true;
  }

  /** After a post-copy fault: the slice ends at `at` steps. */
  private endSlice(at: number): number {
    this.faulted = false;
    this.sliceEnded = true;
    return at;
  }

  private ensureReadable(page: number): void {
    if (this.rok[page] === 1) return;
    if ((Atomics.load(this.mem.pageState, page) & PAGE_PRESENT) === 0) this.missingPage(page);
    this.rok[page] = 1;
  }

  /**
   * First write to a page since the last dirty-log switch, from compiled code: records it and
   * returns true when the store may go ahead on the fast path (the page is present and holds
   * no decoded code and no tohost word); false sends the store to the interpreter's slow path.
   */
  readonly markWrite = (page: number): boolean => {
    if (this.rok[page] !== 1 || this.code[page] !== undefined || page === this.tohost >>> PAGE_SHIFT) return false;
    this.recordWrite(page);
    return true;
  };

  /** Prepares a page for a write and records it; leaves it on the fast path when it can. */
  private prepareWrite(page: number): void {
    this.ensureReadable(page);
    this.recordWrite(page);
  }

  private recordWrite(page: number): void {
    const ps = this.mem.pageState;
    if ((Atomics.load(ps, page) & PAGE_EVER_WRITTEN) === 0) this.mem.markEverWritten(page);
    this.activeDirty[page] = 1;
    if (this.code[page] === undefined && page !== this.tohost >>> PAGE_SHIFT) this.wok[page] = 1;
  }

  /** The privilege loads and stores run with: mstatus.MPP in M-mode with MPRV set. */
  private dataPriv(): number {
    const s = this.s;
    const priv = s[S_PRIV]!;
    if (priv === PRIV_M && (s[S_MSTATUS]! & MSTATUS_MPRV) !== 0) return (s[S_MSTATUS]! & MSTATUS_MPP) >>> MSTATUS_MPP_SHIFT;
    return priv;
  }

  /** Whether the current mode may execute at `pc`; notes whether its page needs a check per instruction. */
  private fetchAllowed(pc: number): boolean {
    const priv = this.s[S_PRIV]!;
    const page = this.pmp.range((pc & -4096) >>> 0, 4096, PMP_X, priv);
    this.fetchEach = page === 2;
    return page === 1 || (page === 2 && this.pmp.allows(pc, 4, PMP_X, priv));
  }

  /**
   * After an access that passed PMP: its page goes into the checked TLB if PMP lets the
   * privilege it was filled for read (write) all of it, and M-mode's TLB already has it (so the
   * dirty log has it too). A trap in the middle of `exec` may have changed the privilege: then not.
   */
  private noteCheckedPage(off: number, write: boolean): void {
    if (this.prok === undefined || this.dataPriv() !== this.checkedPriv) return;
    const page = off >>> PAGE_SHIFT;
    if ((write ? this.wok[page] : this.rok[page]) !== 1) return;
    if (this.pmp.range(0x8000_0000 + page * 4096, 4096, write ? PMP_W : PMP_R, this.checkedPriv) !== 1) return;
    (write ? this.pwok! : this.prok)[page] = 1;
  }

  private loadSlow(addr: number, width: number, signed: boolean): boolean {
    if (this.dataChecked && !this.pmp.allows(addr, width, PMP_R, this.dataPriv())) return false;
    const off = addr ^ RAM_XOR;
    if (off >= 0 && off + width <= this.ramSize) {
      this.ensureReadable(off >>> PAGE_SHIFT);
      this.ensureReadable((off + width - 1) >>> PAGE_SHIFT);
      let v = 0;
      for (let i = width - 1; i >= 0; i--) v = (v << 8) | this.ram8[off + i]!;
      this.loadValue = signed && width < 4 ? (v << (32 - width * 8)) >> (32 - width * 8) : v | 0;
      if (this.dataChecked) this.noteCheckedPage(off, false);
      return true;
    }
    const dev = this.bus.find(addr, width);
    if (dev === undefined) return false;
    const v = dev.read((addr >>> 0) - (dev.base >>> 0), width);
    this.loadValue = signed && width < 4 ? (v << (32 - width * 8)) >> (32 - width * 8) : width === 4 ? v | 0 : v & ((1 << (width * 8)) - 1);
    return true;
  }

  private storeSlow(addr: number, width: number, value: number): boolean {
    if (this.dataChecked && !this.pmp.allows(addr, width, PMP_W, this.dataPriv())) return false;
    const off = addr ^ RAM_XOR;
    if (off >= 0 && off + width <= this.ramSize) {
      const first = off >>> PAGE_SHIFT;
      const last = (off + width - 1) >>> PAGE_SHIFT;
      this.prepareWrite(first);
      if (last !== first) this.prepareWrite(last);
      for (let i = 0; i < width; i++) this.ram8[off + i] = value >>> (8 * i);
      this.invalidateCode(off, width);
      if (this.dataChecked && last === first) this.noteCheckedPage(off, true);
      if (this.tohost >= 0 && off < this.tohost + 4 && off + width > this.tohost) this.htif();
      return true;
    }
    const dev = this.bus.find(addr, width);
    if (dev === undefined) return false;
    dev.write((addr >>> 0) - (dev.base >>> 0), width, value);
    return true;
  }

  private invalidateCode(off: number, width: number): void {
    for (let a = off & ~3; a < off + width; a += 4) {
      const page = a >>> PAGE_SHIFT;
      const c = this.code[page];
      if (c === undefined) continue;
      c[((a & 4095) >> 2) * 2] = 0;
      // A block may span the changed word from any earlier slot of the page: drop them all.
      this.blocks[page] = new Array<Block | undefined>(SLOTS);
    }
  }

  /** HTIF tohost: bit 0 set means "exit with code value >> 1", as riscv-tests use it. */
  private htif(): void {
    const v = this.ram32[this.tohost >> 2]!;
    if (v & 1) this.halt(v >>> 1, 'tohost');
  }

  halt(code: number, reason: string): void {
    this.halted = true;
    this.exitCode = code;
    this.exitReason = reason;
  }

  get isHalted(): boolean {
    return this.halted;
  }

  /**
   * `wfi`: nothing to do if an interrupt is already pending. In deterministic mode time jumps
   * to the timer deadline (so the run stays a function of the instruction count); otherwise
   * the caller sleeps until the deadline.
   */
  private waitForInterrupt(): void {
    const s = this.s;
    if (this.mip(s[S_MIE]!) & s[S_MIE]!) return;
    if (this.clock.mode === 'icount') {
      const t = this.armedDeadline(false);
      if (t !== Infinity) {
        this.clock.advanceTo(t);
        return;
      }
    }
    this.waiting = true;
  }

  /** Host milliseconds until the timer or a device could wake a waiting hart; Infinity if nothing can. */
  msUntilWake(): number {
    const mie = this.s[S_MIE]!;
    let ms = Infinity;
    if (mie & MIP_MTIP) ms = this.clock.msUntil(this.clint.mtimecmp);
    if (mie & MIP_MEIP) ms = Math.min(ms, this.external.msUntilEvent());
    return ms;
  }

  private csrInsn(op: number, rd: number, rs1: number, csr: number): CsrDone {
    const s = this.s;
    const priv = s[S_PRIV]!;
    if (((csr >>> 8) & 3) > priv) return CsrDone.Illegal;
    const isImm = op >= Op.Csrrwi;
    const src = isImm ? rs1 : s[rs1]!;
    const kind = isImm ? op - Op.Csrrwi : op - Op.Csrrw; // 0 write, 1 set, 2 clear
    const writes = kind === 0 || rs1 !== 0;
    if (writes && (csr >>> 10) === 3) return CsrDone.Illegal;
    let old = 0;
    if (kind !== 0 || rd !== X_SINK) {
      const v = this.csrRead(csr, priv);
      if (v === undefined) return CsrDone.Illegal;
      old = v;
    } else if (this.csrRead(csr, priv) === undefined) {
      return CsrDone.Illegal;
    }
    s[rd] = old;
    if (!writes) return CsrDone.Read;
    const nv = kind === 0 ? src : kind === 1 ? old | src : old & ~src;
    this.csrWrite(csr, nv | 0);
    return CsrDone.Written;
  }

  private counterAllowed(bit: number, priv: number): boolean {
    return priv === PRIV_M || (this.s[S_MCOUNTEREN]! & (1 << bit)) !== 0;
  }

  /** The value of a CSR, or undefined if it does not exist (illegal instruction). */
  private csrRead(csr: number, priv: number): number | undefined {
    const s = this.s;
    switch (csr) {
      case Csr.Mstatus: return s[S_MSTATUS];
      case Csr.MstatusH: return 0;
      case Csr.Misa: return MISA;
      case Csr.Mie: return s[S_MIE];
      case Csr.Mip: return this.mip();
      case Csr.Mtvec: return s[S_MTVEC];
      case Csr.Mcounteren: return s[S_MCOUNTEREN];
      case Csr.Mscratch: return s[S_MSCRATCH];
      case Csr.Mepc: return s[S_MEPC];
      case Csr.Mcause: return s[S_MCAUSE];
      case Csr.Mtval: return s[S_MTVAL];
      case Csr.Mvendorid: case Csr.Marchid: case Csr.Mimpid: case Csr.Mhartid: return 0;
      case Csr.Mcycle: case Csr.Minstret: return this.instret() % 2 ** 32 | 0;
      case Csr.McycleH: case Csr.MinstretH: return Math.floor(this.instret() / 2 ** 32) | 0;
      case Csr.Cycle: return this.counterAllowed(0, priv) ? this.instret() % 2 ** 32 | 0 : undefined;
      case Csr.CycleH: return this.counterAllowed(0, priv) ? Math.floor(this.instret() / 2 ** 32) | 0 : undefined;
      case Csr.Time: return this.counterAllowed(1, priv) ? this.clock.now() % 2 ** 32 | 0 : undefined;
      case Csr.TimeH: return this.counterAllowed(1, priv) ? Math.floor(this.clock.now() / 2 ** 32) | 0 : undefined;
      case Csr.Instret: return this.counterAllowed(2, priv) ? this.instret() % 2 ** 32 | 0 : undefined;
      case Csr.InstretH: return this.counterAllowed(2, priv) ? Math.floor(this.instret() / 2 ** 32) | 0 : undefined;
      // The debug trigger module with no triggers: tselect holds only 0, whose tdata1 says
      // type 0 ("no trigger here"), and tinfo says so too (bit 0).
      case Csr.Tselect: case Csr.Tdata1: case Csr.Tdata2: case Csr.Tdata3: return 0;
      case Csr.Tinfo: return 1;
      default:
        if (csr >= Csr.Pmpcfg0 && csr <= Csr.Pmpcfg3) return s[S_PMPCFG0 + csr - Csr.Pmpcfg0];
        if (csr >= Csr.Pmpaddr0 && csr <= Csr.Pmpaddr15) return s[S_PMPADDR0 + csr - Csr.Pmpaddr0];
        return undefined;
    }
  }

  private csrWrite(csr: number, v: number): void {
    const s = this.s;
    switch (csr) {
      case Csr.Mstatus: {
        let nv = v & MSTATUS_WRITABLE;
        const mpp = (nv & MSTATUS_MPP) >>> MSTATUS_MPP_SHIFT;
        if (mpp !== PRIV_M && mpp !== PRIV_U) nv = (nv & ~MSTATUS_MPP) | (s[S_MSTATUS]! & MSTATUS_MPP);
        s[S_MSTATUS] = nv;
        break;
      }
      case Csr.Mie: s[S_MIE] = v & MIE_WRITABLE; break;
      case Csr.Mtvec: s[S_MTVEC] = (v & 3) >= 2 ? v & ~3 : v; break;
      case Csr.Mcounteren: s[S_MCOUNTEREN] = v & 7; break;
      case Csr.Mscratch: s[S_MSCRATCH] = v; break;
      case Csr.Mepc: s[S_MEPC] = v & ~3; break;
      case Csr.Mcause: s[S_MCAUSE] = v; break;
      case Csr.Mtval: s[S_MTVAL] = v; break;
      case Csr.Mcycle: case Csr.Minstret: this.setInstret(Math.floor(this.instret() / 2 ** 32) * 2 ** 32 + (v >>> 0)); break;
      case Csr.McycleH: case Csr.MinstretH: this.setInstret((v >>> 0) * 2 ** 32 + (this.instret() % 2 ** 32)); break;
      default:
        if (csr >= Csr.Pmpcfg0 && csr <= Csr.Pmpcfg3) writePmpCfg(s, csr - Csr.Pmpcfg0, v);
        else if (csr >= Csr.Pmpaddr0 && csr <= Csr.Pmpaddr15) writePmpAddr(s, csr - Csr.Pmpaddr0, v);
        else break; // misa, mip, mstatush, the trigger registers: writes ignored (WARL)
        this.pmpChanged();
        break;
    }
  }

  /**
   * A write to minstret. The write happens "instead of" this instruction's own increment, so the
   * counter reads `v` after it; the clock is re-based so deterministic time does not move.
   */
  private setInstret(v: number): void {
    const t = this.clock.now();
    this.retired = v - this.cur - 1;
    this.clock.set(t);
  }

  /**
   * Takes up new architectural state written into `s` by the host (an incoming migration) and
   * forgets everything derived from the old: decoded code, blocks, the private TLBs.
   */
  reload(): void {
    this.retired = readInstret(this.s);
    this.cur = 0;
    this.halted = false;
    this.waiting = false;
    this.exitCode = 0;
    this.exitReason = '';
    Object.assign(this.lastTrap, { target: -1, cause: -1, tval: 0, instret: -1, repeats: 0 });
    this.rok.fill(0);
    this.wok.fill(0);
    if (this.codePages > 0) this.dropCode();
    this.pmpChanged();
  }

  /** The PMP registers changed (or were restored): decode them again, and forget what the checked TLBs allowed. */
  private pmpChanged(): void {
    this.pmp.rebuild(this.s);
    this.prok?.fill(0);
    this.pwok?.fill(0);
  }

  /** Publishes instret into the state words (for snapshots and the digest). */
  syncState(): void {
    writeInstret(this.s, this.retired);
  }
}

