// A guest whose trap vector itself faults takes the same trap forever with no instruction
// retired: --insn-limit never fires and the vCPU spins at full speed (issue 15, point 4). The CPU
// notices (a trap at the vector with nothing retired since the last, the same twice over) and
// halts the VM saying where: pc, mcause, mtval; `vm info` and `ferry run` report it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { StepExit, TRAP_LOOP_EXIT } from '../../src/cpu/cpu.ts';
import { CPU_STATE_WORDS, PRIV_M, S_PC, S_PRIV } from '../../src/cpu/state.ts';
import { startHost } from '../../src/index.ts';
import { GuestMemory } from '../../src/memory/guest-memory.ts';
import { Machine } from '../../src/vm/machine.ts';
import { MiB, runCli } from '../support/helpers.ts';

const RAM_BASE = 0x80000000;

/** csrw mtvec, zero: traps now go to address 0, where nothing can be fetched. */
const CSRW_MTVEC_ZERO = 0x30501073;
/** An all-zero word is an illegal instruction. */
const ILLEGAL = 0x00000000;
/** addi x5, x5, 1 ; j -4 (a busy loop that retires instructions) */
const ADDI_T0 = 0x00128293;
const J_BACK = 0xffdff06f;

/** A minimal RV32 ELF: one PT_LOAD of `words` at RAM_BASE, entry there. */
function tinyElf(words: number[]): Uint8Array {
  const code = new Uint8Array(new Uint32Array(words).buffer);
  const buf = new Uint8Array(52 + 32 + code.length);
  const dv = new DataView(buf.buffer);
  buf.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1], 0);
  dv.setUint16(16, 2, true); // ET_EXEC
  dv.setUint16(18, 0xf3, true); // RISC-V
  dv.setUint32(20, 1, true);
  dv.setUint32(24, RAM_BASE, true); // entry
  dv.setUint32(28, 52, true); // phoff
  dv.setUint16(40, 52, true);
  dv.setUint16(42, 32, true); // phentsize
  dv.setUint16(44, 1, true); // phnum
  dv.setUint32(52, 1, true); // PT_LOAD
  dv.setUint32(56, 84, true); // offset
  dv.setUint32(60, RAM_BASE, true);
  dv.setUint32(64, RAM_BASE, true);
  dv.setUint32(68, code.length, true);
  dv.setUint32(72, code.length, true);
  dv.setUint32(76, 5, true); // R+X
  buf.set(code, 84);
  return buf;
}

function machineWith(words: number[]): Machine {
  const mem = GuestMemory.allocate(MiB);
  mem.hostWrite(0, new Uint8Array(new Uint32Array(words).buffer));
  const cpu = new Int32Array(new SharedArrayBuffer(CPU_STATE_WORDS * 4));
  cpu[S_PC] = RAM_BASE | 0;
  cpu[S_PRIV] = PRIV_M;
  return new Machine(mem, cpu, { ramSize: mem.size, clock: 'icount', tohost: -1 }, { transmit: () => {}, input: { available: () => false, take: () => 0 } });
}

describe('the trap-loop detector', () => {
  it('halts a hart whose trap vector faults, naming pc, mcause and mtval, with what had retired', () => {
    const m = machineWith([CSRW_MTVEC_ZERO, ILLEGAL]);
    expect(m.runToHalt(10_000_000)).toBe(StepExit.Halt);
    expect(m.cpu.exitCode).toBe(TRAP_LOOP_EXIT);
    // The illegal instruction went to 0; fetching there faults (mcause 1, instruction access fault), again and again.
    expect(m.cpu.exitReason).toBe('trap loop: the trap vector faults, no instruction retires (pc 0x0, mcause 1, mtval 0x0)');
    expect(m.cpu.instret()).toBe(1); // the csrw
  });

  it('leaves a guest that keeps retiring instructions alone, and a single fault handled', () => {
    // A busy loop: runs its whole budget.
    const busy = machineWith([ADDI_T0, J_BACK]);
    expect(busy.runToHalt(1_000_000)).toBe(StepExit.Budget);
    // One illegal instruction into a handler that is itself a busy loop: no loop of traps.
    const handled = machineWith([
      0x00000297, // auipc t0, 0
      0x01028293, // addi t0, t0, 16  (the handler at RAM_BASE + 16)
      0x30529073, // csrw mtvec, t0
      ILLEGAL,
      ADDI_T0, J_BACK,
    ]);
    expect(handled.runToHalt(1_000_000)).toBe(StepExit.Budget);
  });

  it('`ferry run` of such a guest ends (it used to spin for ever) with exit status 1 and says where; `vm info` shows the reason', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-trap-loop-'));
    try {
      const elf = join(dir, 'trap-loop.elf');
      const bytes = tinyElf([CSRW_MTVEC_ZERO, ILLEGAL]);
      writeFileSync(elf, bytes);
      const r = await runCli(['run', elf, '--memory', '1M', '--insn-limit', '1000000'], 20_000);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('ferry: the guest is stuck in a trap loop: the trap vector faults, no instruction retires (pc 0x0, mcause 1, mtval 0x0)');
      const h = await startHost({ name: 'trap-loop' });
      try {
        const c = await h.connect();
        await c.createVm({ name: 'stuck', elf: bytes, memory: MiB, start: true });
        const info = await c.waitHalted('stuck', 20_000);
        expect(info).toMatchObject({ state: 'halted', exitCode: TRAP_LOOP_EXIT, haltReason: expect.stringContaining('trap loop') });
        await c.close();
      } finally {
        await h.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
