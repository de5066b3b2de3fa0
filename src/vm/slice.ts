/**
 * One vCPU slice, run in eighths so the host is answered within an eighth of a slice: after each
 * part the doorbell is checked, and a ring (a pause, a dirty-log switch, a page frame) ends the
 * slice early. A pause request used to wait for the rest of a ~1 ms slice (bench/cpu.ts
 * pause-latency p50 0.91 ms before, 0.21 ms after); the check is one atomic load per part.
 */
import { StepExit } from '../cpu/cpu.ts';

/** The part of the CPU a slice drives. */
export interface SliceCpu {
  run(budget: number): StepExit;
  instret(): number;
}

/** The fewest instructions a part runs (a slice of MIN_SLICE_INSNS is not cut finer than this). */
export const SLICE_PART_MIN_INSNS = 1_000;

/** Runs up to `n` instructions in parts of an eighth, until one ends early or `rung()` says the host rang. */
export function runSlice(cpu: SliceCpu, n: number, rung: () => boolean): StepExit {
  const part = Math.max(SLICE_PART_MIN_INSNS, Math.ceil(n / 8));
  for (let left = n; ;) {
    const step = Math.min(left, part);
    const before = cpu.instret();
    const exit = cpu.run(step);
    const ran = cpu.instret() - before;
    left -= ran;
    // Fewer than asked without a halt or wfi: a post-copy fault ended the slice (endSliceAfterAccess).
    if (exit !== StepExit.Budget || ran < step || left <= 0 || rung()) return exit;
  }
}
