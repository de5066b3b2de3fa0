import Table from 'cli-table3';
import { fmtBytes } from '../units.ts';
import type { VmSummary } from '../host/registry.ts';

/** Borderless, like `docker ps`: columns separated by two spaces. */
const PLAIN = {
  chars: {
    top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
    left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '  ',
  },
  style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0 },
};

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

export { fmtBytes } from '../units.ts';

export function hex32(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
}

function stateText(v: VmSummary): string {
  if (v.state === 'halted') return `halted (${v.haltReason ?? '?'}, exit ${v.exitCode ?? '?'})`;
  return v.state;
}

export function vmTable(vms: VmSummary[]): string {
  const t = new Table({ head: ['NAME', 'STATE', 'PROGRAM', 'MEMORY', 'INSTRET', 'MIPS', 'PC'], ...PLAIN });
  for (const v of vms) {
    t.push([v.name, stateText(v), v.program, fmtBytes(v.memory), String(v.instret), v.mips.toFixed(1), hex32(v.pc)]);
  }
  return t.toString().split("\n").map((l) => l.trimEnd()).join("\n");
}

export function vmDetails(v: VmSummary): string {
  const t = new Table(PLAIN);
  t.push(
    { name: v.name }, { host: v.host }, { state: stateText(v) }, { program: v.program }, { memory: fmtBytes(v.memory) },
    { clock: v.icount ? 'icount (deterministic)' : 'realtime' }, { 'insn limit': v.insnLimit ? String(v.insnLimit) : 'none' },
    { pc: hex32(v.pc) }, { instret: String(v.instret) }, { mips: v.mips.toFixed(1) }, { created: v.createdAt },
  );
  return t.toString().split("\n").map((l) => l.trimEnd()).join("\n");
}
