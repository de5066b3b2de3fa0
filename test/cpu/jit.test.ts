/**
 * The block compiler must be invisible: every conformance program passes with blocks compiled
 * on an instruction's first visit, and deterministic runs reach the same digest with the
 * compiler on (threshold 1 and the default) and off.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { StepExit } from '../../src/cpu/cpu.ts';
import { computeDigest } from '../../src/vm/digest.ts';
import { GuestMemory } from '../../src/memory/guest-memory.ts';
import { bootElf } from '../../src/vm/boot.ts';
import { Machine } from '../../src/vm/machine.ts';

const BUILD = new URL('../../guest-programs/build/', import.meta.url);
const TESTS = new URL('tests/', BUILD);

interface Outcome { exit: StepExit; code: number; reason: string; out: string; digest: string; instret: number }

function runInProcess(elfUrl: URL, args: string[], limit: number, jit: boolean, jitThreshold?: number): Outcome {
  const mem = GuestMemory.allocate(32 << 20);
  const boot = bootElf(mem, new Uint8Array(readFileSync(elfUrl)), args);
  let out = '';
  const m = new Machine(mem, boot.cpuState, { ramSize: mem.size, clock: 'icount', tohost: boot.tohost }, {
    transmit: (b) => { out += String.fromCharCode(b); },
    input: { available: () => false, take: () => 0 },
    jit,
    ...(jitThreshold !== undefined ? { jitThreshold } : {}),
  });
  const exit = m.runToHalt(limit);
  m.cpu.syncState();
  return {
    exit, code: m.cpu.exitCode, reason: m.cpu.exitReason, out,
    digest: computeDigest(mem, boot.cpuState, m.deviceStates()), instret: m.cpu.instret(),
  };
}

describe('block compiler', () => {
  const tests = readdirSync(TESTS).filter((f) => f.endsWith('.elf')).sort();

  it.each(tests)('conformance %s passes with every instruction compiled on first visit', (file) => {
    const r = runInProcess(new URL(file, TESTS), [], 50_000_000, true, 1);
    expect(r.exit).toBe(StepExit.Halt);
    expect(r.code).toBe(file === 'htif-fail-expected.elf' ? 3 : 0);
  });

  const programs: [string, string[]][] = [
    ['memstress', ['ws_mib=4']],
    ['sieve', ['n=100000']],
    ['life', ['w=64', 'h=64']],
    ['counter', ['period_ms=1']],
    ['usermode', ['rounds=200']], // U-mode under PMP: its own TLBs, first writes left to the interpreter
    ['platform', ['period_us=100', 'limit=0']],
  ];
  it.each(programs)('%s reaches the same digest with blocks and without', (name, args) => {
    const elf = new URL(`${name}.elf`, BUILD);
    const limit = 3_000_000;
    const off = runInProcess(elf, args, limit, false);
    const eager = runInProcess(elf, args, limit, true, 1);
    const normal = runInProcess(elf, args, limit, true);
    expect(off.instret).toBe(eager.instret);
    expect(eager.out).toBe(off.out);
    expect(eager.digest).toBe(off.digest);
    expect(normal.digest).toBe(off.digest);
  });
});
