// Conformance: every self-checking guest test in guest-programs/build/tests passes on Ferry
// (exit code 0 = pass, otherwise the number of the failing case), in-process and in a worker.
import { afterEach, describe, expect, it } from 'vitest';
import { StepExit } from '../../src/cpu/cpu.ts';
import { conformanceTests, loadElf, MiB, runInProcess, vmTracker } from '../support/helpers.ts';

const TESTS = conformanceTests();

describe('conformance ELFs, in-process', () => {
  it('the build holds the expected tests', () => {
    for (const t of ['rr', 'imm', 'muldiv', 'branch', 'mem', 'fence', 'csr', 'trap', 'umode', 'access-fault', 'misaligned-jump', 'timer', 'htif-pass', 'htif-fail-expected',
      'pmp', 'pmp-enforce', 'triggers', 'plic', 'rtc', 'virtio-mmio', 'uart-irq']) {
      expect(TESTS).toContain(t);
    }
  });

  for (const name of TESTS) {
    if (name === 'htif-fail-expected') {
      it(`${name} fails through tohost with test number 3`, () => {
        const r = runInProcess(loadElf(`tests/${name}`), { maxInsns: 10_000_000 });
        expect(r.exit).toBe(StepExit.Halt);
        expect(r.reason).toBe('tohost');
        expect(r.exitCode).toBe(3);
      });
      continue;
    }
    it(`${name} passes (exit 0)`, () => {
      const r = runInProcess(loadElf(`tests/${name}`), { maxInsns: 10_000_000 });
      expect(r.exit, `did not halt (instret ${r.instret}); output: ${r.output}`).toBe(StepExit.Halt);
      expect(r.exitCode, `failing case number; output: ${r.output}`).toBe(0);
      expect(r.reason).toBe(name === 'htif-pass' ? 'tohost' : 'poweroff');
    });
  }
});

describe('conformance ELFs, in a worker VM', () => {
  const vms = vmTracker();
  afterEach(() => vms.destroyAll());

  for (const [name, icount] of [['rr', false], ['timer', false], ['timer', true], ['rtc', false], ['rtc', true], ['htif-fail-expected', false]] as const) {
    it(`${name} (${icount ? 'icount' : 'real time'}) gives the same result as in-process`, async () => {
      const vm = vms.create({ elf: loadElf(`tests/${name}`), memory: 16 * MiB, icount });
      vm.start();
      const h = await vm.waitHalted();
      if (name === 'htif-fail-expected') expect(h).toEqual({ exitCode: 3, reason: 'tohost' });
      else expect(h).toEqual({ exitCode: 0, reason: 'poweroff' });
      expect(vm.state).toBe('halted');
      expect(vm.info().exitCode).toBe(h.exitCode);
    }, 30_000);
  }
});
