import { describe, expect, it } from 'vitest';
import { StepExit } from '../../src/cpu/cpu.ts';
import { runSlice, SLICE_PART_MIN_INSNS, type SliceCpu } from '../../src/vm/slice.ts';

/** A CPU that retires what it is asked (or stops after `stopAt` with `exit`), recording each run. */
function fakeCpu(stopAt = Infinity, exit = StepExit.Budget): SliceCpu & { runs: number[] } {
  let retired = 0;
  const runs: number[] = [];
  return {
    runs,
    instret: () => retired,
    run(budget: number): StepExit {
      runs.push(budget);
      const ran = Math.min(budget, stopAt - retired);
      retired += ran;
      return ran < budget ? exit : StepExit.Budget;
    },
  };
}

describe('runSlice: a slice in eighths, ended early by the doorbell', () => {
  it('runs the whole budget in eighths while nothing rings', () => {
    const cpu = fakeCpu();
    expect(runSlice(cpu, 80_000, () => false)).toBe(StepExit.Budget);
    expect(cpu.runs).toEqual(Array(8).fill(10_000));
    expect(cpu.instret()).toBe(80_000);
  });

  it('stops after the part in which the host rang (a pause waits an eighth of a slice, not a whole one)', () => {
    const cpu = fakeCpu();
    let checks = 0;
    expect(runSlice(cpu, 80_000, () => ++checks === 2)).toBe(StepExit.Budget);
    expect(cpu.instret()).toBe(20_000);
  });

  it('never cuts a small slice below the part minimum, and the last part takes the remainder', () => {
    const cpu = fakeCpu();
    runSlice(cpu, SLICE_PART_MIN_INSNS * 2 + 7, () => false);
    expect(cpu.runs).toEqual([SLICE_PART_MIN_INSNS, SLICE_PART_MIN_INSNS, 7]);
  });

  it('returns at once when a part ends early: a halt, a wfi, or a fault that ended the slice', () => {
    for (const exit of [StepExit.Halt, StepExit.Wfi, StepExit.Budget]) {
      const cpu = fakeCpu(12_345, exit);
      expect(runSlice(cpu, 80_000, () => false)).toBe(exit);
      expect(cpu.instret()).toBe(12_345);
      expect(cpu.runs).toHaveLength(2);
    }
  });
});
