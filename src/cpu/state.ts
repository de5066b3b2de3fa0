/**
 * The vCPU's architectural state is one SharedArrayBuffer viewed as an Int32Array, so a
 * snapshot is a copy of it and the host can read it while the vCPU is paused.
 */

/** x0..x31 live at indices 0..31; writes to x0 are decoded to this sink instead. */
export const X_SINK = 32;
export const S_PC = 33;
export const S_PRIV = 34;
export const S_MSTATUS = 35;
export const S_MIE = 36;
export const S_MTVEC = 37;
export const S_MSCRATCH = 38;
export const S_MEPC = 39;
export const S_MCAUSE = 40;
export const S_MTVAL = 41;
export const S_MCOUNTEREN = 42;
export const S_INSTRET_LO = 43;
export const S_INSTRET_HI = 44;
/** Words 45..47 are spare. PMP: pmpcfg0..3 (four 8-bit entry configs each), then pmpaddr0..15. */
export const S_PMPCFG0 = 48;
export const PMP_ENTRIES = 16;
export const S_PMPADDR0 = S_PMPCFG0 + PMP_ENTRIES / 4;
export const CPU_STATE_WORDS = S_PMPADDR0 + PMP_ENTRIES;

/** The words the digest covers, in order: x1..x31, then pc .. instret, then the PMP registers. */
export const DIGEST_WORDS: readonly number[] = [
  ...Array.from({ length: 31 }, (_, i) => i + 1),
  S_PC, S_PRIV, S_MSTATUS, S_MIE, S_MTVEC, S_MSCRATCH, S_MEPC, S_MCAUSE, S_MTVAL, S_MCOUNTEREN, S_INSTRET_LO, S_INSTRET_HI,
  ...Array.from({ length: CPU_STATE_WORDS - S_PMPCFG0 }, (_, i) => S_PMPCFG0 + i),
];

export const PRIV_U = 0;
export const PRIV_M = 3;

export const MSTATUS_MIE = 1 << 3;
export const MSTATUS_MPIE = 1 << 7;
export const MSTATUS_MPP_SHIFT = 11;
export const MSTATUS_MPP = 3 << MSTATUS_MPP_SHIFT;
export const MSTATUS_MPRV = 1 << 17;
export const MSTATUS_TW = 1 << 21;
export const MSTATUS_WRITABLE = MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP | MSTATUS_MPRV | MSTATUS_TW;

export const MIP_MSIP = 1 << 3;
export const MIP_MTIP = 1 << 7;
export const MIP_MEIP = 1 << 11;
export const MIE_WRITABLE = MIP_MSIP | MIP_MTIP | MIP_MEIP;

/** misa: MXL=1 (32-bit), extensions I, M and U. */
export const MISA = (1 << 30) | (1 << 8) | (1 << 12) | (1 << 20);

export const enum Csr {
  Cycle = 0xc00, Time = 0xc01, Instret = 0xc02,
  CycleH = 0xc80, TimeH = 0xc81, InstretH = 0xc82,
  Mstatus = 0x300, Misa = 0x301, Mie = 0x304, Mtvec = 0x305, Mcounteren = 0x306, MstatusH = 0x310,
  Mscratch = 0x340, Mepc = 0x341, Mcause = 0x342, Mtval = 0x343, Mip = 0x344,
  Mcycle = 0xb00, Minstret = 0xb02, McycleH = 0xb80, MinstretH = 0xb82,
  Mvendorid = 0xf11, Marchid = 0xf12, Mimpid = 0xf13, Mhartid = 0xf14,
  Pmpcfg0 = 0x3a0, Pmpcfg3 = 0x3a3, Pmpaddr0 = 0x3b0, Pmpaddr15 = 0x3bf,
  Tselect = 0x7a0, Tdata1 = 0x7a1, Tdata2 = 0x7a2, Tdata3 = 0x7a3, Tinfo = 0x7a4,
}

/** A PMP entry's config byte: L (locked until reset) and the address-matching mode A. */
export const PMP_L = 0x80;
export const PMP_A_SHIFT = 3;
export const PMP_A_TOR = 1;

export const enum Cause {
  InsnMisaligned = 0, InsnAccess = 1, IllegalInsn = 2, Breakpoint = 3,
  LoadAccess = 5, StoreAccess = 7, EcallU = 8, EcallM = 11,
}
export const INTERRUPT = 0x8000_0000 | 0;
export const IRQ_MSI = 3;
export const IRQ_MTI = 7;
export const IRQ_MEI = 11;

export function createCpuState(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(CPU_STATE_WORDS * 4));
}

export function readInstret(s: Int32Array): number {
  return (s[S_INSTRET_HI]! >>> 0) * 0x1_0000_0000 + (s[S_INSTRET_LO]! >>> 0);
}

export function writeInstret(s: Int32Array, v: number): void {
  s[S_INSTRET_LO] = v % 0x1_0000_0000 | 0;
  s[S_INSTRET_HI] = Math.floor(v / 0x1_0000_0000) | 0;
}

/**
 * Why `words` could not be this CPU's state, or undefined if it could: the right length, every
 * word an int32, and the values only this CPU can produce (M or U mode, an aligned pc, WARL
 * CSRs holding legal values). A restored state that passes cannot make the executor misbehave.
 */
export function cpuStateProblem(words: readonly number[]): string | undefined {
  if (words.length !== CPU_STATE_WORDS) return `CPU state has ${words.length} words, expected ${CPU_STATE_WORDS}`;
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (!Number.isInteger(w) || w < -0x8000_0000 || w > 0x7fff_ffff) return `CPU state word ${i} is not a 32-bit integer`;
  }
  const priv = words[S_PRIV]!;
  if (priv !== PRIV_M && priv !== PRIV_U) return `privilege level ${priv} is neither M (3) nor U (0)`;
  if (words[S_PC]! & 3) return `pc 0x${(words[S_PC]! >>> 0).toString(16)} is not 4-byte aligned`;
  const mstatus = words[S_MSTATUS]!;
  const mpp = (mstatus & MSTATUS_MPP) >>> MSTATUS_MPP_SHIFT;
  if ((mstatus & ~MSTATUS_WRITABLE) !== 0 || (mpp !== PRIV_M && mpp !== PRIV_U)) return `mstatus 0x${(mstatus >>> 0).toString(16)} is not a legal value`;
  if ((words[S_MIE]! & ~MIE_WRITABLE) !== 0) return `mie 0x${(words[S_MIE]! >>> 0).toString(16)} is not a legal value`;
  if ((words[S_MTVEC]! & 3) >= 2) return `mtvec 0x${(words[S_MTVEC]! >>> 0).toString(16)} has a reserved mode`;
  if (words[S_MEPC]! & 3) return 'mepc is not 4-byte aligned';
  return undefined;
}
