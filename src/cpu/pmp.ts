/**
 * Physical memory protection, as QEMU's virt hart has it: 16 entries with a 4-byte grain, their
 * registers in the CPU state words (S_PMPCFG0.., S_PMPADDR0..). The legal-value rules for writes
 * live here, and the check: the lowest-numbered entry that matches any byte of an access decides
 * (it must match all of them); U-mode needs the entry's R, W or X, and fails where none matches;
 * M-mode is held only by a locked entry.
 */
import { PMP_A_SHIFT, PMP_A_TOR, PMP_ENTRIES, PMP_L, PRIV_M, S_PMPADDR0, S_PMPCFG0 } from './state.ts';

export const PMP_R = 0x01;
export const PMP_W = 0x02;
export const PMP_X = 0x04;
const A_OFF = 0;
const A_NA4 = 2;

/** Entry `i`'s config byte. */
export function pmpCfg(s: Int32Array, i: number): number {
  return (s[S_PMPCFG0 + (i >> 2)]! >>> ((i & 3) * 8)) & 0xff;
}

/** pmpcfg`n` written with `v`: every bit of an unlocked entry is kept as written, reserved ones included (as QEMU). */
export function writePmpCfg(s: Int32Array, n: number, v: number): void {
  let cfg = s[S_PMPCFG0 + n]!;
  for (let b = 0; b < 4; b++) {
    if (pmpCfg(s, 4 * n + b) & PMP_L) continue;
    const mask = 0xff << (8 * b);
    cfg = (cfg & ~mask) | (v & mask);
  }
  s[S_PMPCFG0 + n] = cfg;
}

/** pmpaddr`i` written with `v`: ignored if entry i is locked, or entry i+1 is a locked TOR entry. */
export function writePmpAddr(s: Int32Array, i: number, v: number): void {
  if (pmpCfg(s, i) & PMP_L) return;
  if (i + 1 < PMP_ENTRIES) {
    const next = pmpCfg(s, i + 1);
    if ((next & PMP_L) && ((next >>> PMP_A_SHIFT) & 3) === PMP_A_TOR) return;
  }
  s[S_PMPADDR0 + i] = v;
}

/** The entries decoded into byte ranges, rebuilt from the state words whenever they change. */
export class PmpRules {
  /** [lo, hi) per entry in bytes (exact doubles up to 2^34); lo >= hi matches nothing. */
  private readonly lo = new Float64Array(PMP_ENTRIES);
  private readonly hi = new Float64Array(PMP_ENTRIES);
  private readonly cfg = new Uint8Array(PMP_ENTRIES);
  /** Entries in use (A not OFF), in priority order. */
  private readonly active: number[] = [];
  /** Some entry is locked: M-mode accesses are checked too. */
  anyLocked = false;

  rebuild(s: Int32Array): void {
    this.active.length = 0;
    this.anyLocked = false;
    for (let i = 0; i < PMP_ENTRIES; i++) {
      const cfg = pmpCfg(s, i);
      this.cfg[i] = cfg;
      const a = (cfg >>> PMP_A_SHIFT) & 3;
      if (a === A_OFF) continue;
      const y = s[S_PMPADDR0 + i]! >>> 0;
      if (a === PMP_A_TOR) {
        this.lo[i] = i === 0 ? 0 : (s[S_PMPADDR0 + i - 1]! >>> 0) * 4;
        this.hi[i] = y * 4;
      } else if (a === A_NA4) {
        this.lo[i] = y * 4;
        this.hi[i] = y * 4 + 4;
      } else { // NAPOT: trailing ones t give 2^(t+3) bytes
        const lowestZero = ~y & (y + 1);
        const t = lowestZero === 0 ? 32 : 31 - Math.clz32(lowestZero);
        const size = 2 ** (t + 3);
        this.lo[i] = t >= 32 ? 0 : Math.floor((y * 4) / size) * size;
        this.hi[i] = this.lo[i]! + size;
      }
      this.active.push(i);
      if (cfg & PMP_L) this.anyLocked = true;
    }
  }

  /** Whether `priv` may access [addr, addr + width) for `perm` (PMP_R, PMP_W or PMP_X). */
  allows(addr: number, width: number, perm: number, priv: number): boolean {
    return this.range(addr >>> 0, width, perm, priv) === 1;
  }

  /**
   * For [a, a + len): 1 if every byte is allowed, 0 if every byte is refused, 2 if it depends on
   * the byte (the deciding entry covers only part of it); an access fails unless it is 1.
   */
  range(a: number, len: number, perm: number, priv: number): 0 | 1 | 2 {
    const end = a + len;
    for (const i of this.active) {
      const lo = this.lo[i]!, hi = this.hi[i]!;
      if (end <= lo || a >= hi) continue;
      if (a < lo || end > hi) return 2;
      const cfg = this.cfg[i]!;
      if (priv === PRIV_M && (cfg & PMP_L) === 0) return 1;
      return (cfg & perm) !== 0 ? 1 : 0;
    }
    return priv === PRIV_M ? 1 : 0;
  }
}
