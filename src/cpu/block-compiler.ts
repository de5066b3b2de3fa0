import { decode, type Decoded } from './isa.ts';
import { S_PC } from './state.ts';

/**
 * A compiled basic block: runs straight-line guest code with registers in JS locals and
 * returns how many instructions it retired (0 = nothing done; the interpreter takes over at
 * the same pc). It never traps: any access that is not a plain RAM hit on the fast path
 * (MMIO, a page that is not present, a code page, a misaligned jump; a first write since a
 * dirty-log switch is recorded through `markWrite` without leaving the block) writes the registers back, stores its own pc and returns, so the
 * interpreter executes that instruction with all its slow paths. `budget` caps the
 * instructions retired; a block that loops onto itself iterates while the budget allows.
 */
export type Block = (
  s: Int32Array, ram8: Uint8Array, ram8s: Int8Array, ram16: Uint16Array, ram16s: Int16Array, ram32: Int32Array,
  rok: Uint8Array, wok: Uint8Array, ramSize: number, budget: number, markWrite: (page: number) => boolean,
) => number;

const MAX_BLOCK = 64;
const RAM_BASE_SIGNED = -0x8000_0000;

const ALU_IMM: Record<string, (a: string, imm: number) => string> = {
  addi: (a, i) => `(${a} + ${i}) | 0`,
  slti: (a, i) => `${a} < ${i} ? 1 : 0`,
  sltiu: (a, i) => `(${a} ^ -2147483648) < ${(i ^ RAM_BASE_SIGNED)} ? 1 : 0`,
  xori: (a, i) => `${a} ^ ${i}`,
  ori: (a, i) => `${a} | ${i}`,
  andi: (a, i) => `${a} & ${i}`,
  slli: (a, i) => `${a} << ${i}`,
  srli: (a, i) => `(${a} >>> ${i}) | 0`,
  srai: (a, i) => `${a} >> ${i}`,
};

const ALU_REG: Record<string, (a: string, b: string) => string> = {
  add: (a, b) => `(${a} + ${b}) | 0`,
  sub: (a, b) => `(${a} - ${b}) | 0`,
  sll: (a, b) => `${a} << ${b}`,
  slt: (a, b) => `${a} < ${b} ? 1 : 0`,
  sltu: (a, b) => `(${a} ^ -2147483648) < (${b} ^ -2147483648) ? 1 : 0`,
  xor: (a, b) => `${a} ^ ${b}`,
  srl: (a, b) => `(${a} >>> ${b}) | 0`,
  sra: (a, b) => `${a} >> ${b}`,
  or: (a, b) => `${a} | ${b}`,
  and: (a, b) => `${a} & ${b}`,
  mul: (a, b) => `Math.imul(${a}, ${b})`,
  mulhu: (a, b) => `mulhu(${a}, ${b})`,
  mulh: (a, b) => `(mulhu(${a}, ${b}) - (${a} < 0 ? ${b} : 0) - (${b} < 0 ? ${a} : 0)) | 0`,
  mulhsu: (a, b) => `(mulhu(${a}, ${b}) - (${a} < 0 ? ${b} : 0)) | 0`,
  div: (a, b) => `${b} === 0 ? -1 : (${a} === -2147483648 && ${b} === -1) ? ${a} : (${a} / ${b}) | 0`,
  divu: (a, b) => `${b} === 0 ? -1 : ((${a} >>> 0) / (${b} >>> 0)) | 0`,
  rem: (a, b) => `${b} === 0 ? ${a} : ${b} === -1 ? 0 : (${a} % ${b}) | 0`,
  remu: (a, b) => `${b} === 0 ? ${a} : ((${a} >>> 0) % (${b} >>> 0)) | 0`,
};

const LOADS: Record<string, { width: number; view: string; shift: number }> = {
  lb: { width: 1, view: 'ram8s', shift: 0 },
  lbu: { width: 1, view: 'ram8', shift: 0 },
  lh: { width: 2, view: 'ram16s', shift: 1 },
  lhu: { width: 2, view: 'ram16', shift: 1 },
  lw: { width: 4, view: 'ram32', shift: 2 },
};

const STORES: Record<string, { width: number; view: string; shift: number }> = {
  sb: { width: 1, view: 'ram8', shift: 0 },
  sh: { width: 2, view: 'ram16', shift: 1 },
  sw: { width: 4, view: 'ram32', shift: 2 },
};

const BRANCHES: Record<string, (a: string, b: string) => string> = {
  beq: (a, b) => `${a} === ${b}`,
  bne: (a, b) => `${a} !== ${b}`,
  blt: (a, b) => `${a} < ${b}`,
  bge: (a, b) => `${a} >= ${b}`,
  bltu: (a, b) => `(${a} ^ -2147483648) < (${b} ^ -2147483648)`,
  bgeu: (a, b) => `(${a} ^ -2147483648) >= (${b} ^ -2147483648)`,
};

function mulhu(a: number, b: number): number {
  const a0 = a & 0xffff, a1 = a >>> 16, b0 = b & 0xffff, b1 = b >>> 16;
  const p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  return (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16)) | 0;
}

function isBodyInsn(d: Decoded): boolean {
  const n = d.row?.name;
  return n !== undefined && (n in ALU_IMM || n in ALU_REG || n in LOADS || n in STORES || n === 'lui' || n === 'auipc');
}

function isTerminator(d: Decoded): boolean {
  const n = d.row?.name;
  if (n === undefined) return false;
  if (n in BRANCHES || n === 'jal') return (d.imm & 3) === 0;
  return n === 'jalr';
}

/**
 * Compiles the block starting at `pc` (RAM offset `off`), or returns undefined when its first
 * instruction is not one a block can run. Blocks never cross a page boundary.
 */
export function compileBlock(ram32: Int32Array, off: number, pc: number): { fn: Block; length: number } | undefined {
  const insns: Decoded[] = [];
  const pageEnd = (off | 4095) + 1;
  let terminated = false;
  for (let a = off; a < pageEnd && insns.length < MAX_BLOCK; a += 4) {
    const d = decode(ram32[a >> 2]!);
    if (isBodyInsn(d)) { insns.push(d); continue; }
    if (isTerminator(d)) { insns.push(d); terminated = true; }
    break;
  }
  if (insns.length === 0) return undefined;

  const used = new Set<number>();
  const written = new Set<number>();
  const r = (i: number): string => {
    if (i === 0) return '0';
    used.add(i);
    return `r${i}`;
  };
  const w = (i: number): string | undefined => {
    if (i === 0) return undefined;
    used.add(i);
    written.add(i);
    return `r${i}`;
  };
  const len = insns.length;
  const lines: string[] = [];
  // Placeholder for the write-back code, filled in once all written registers are known.
  const WB = '/*WB*/';
  const exit = (next: string, retired: string) => `{ ${WB} s[${S_PC}] = ${next}; return ${retired}; }`;
  const start = pc | 0;
  let loops = false;

  insns.forEach((d, j) => {
    const ipc = (start + 4 * j) | 0;
    const done = j === 0 ? 'n' : `n + ${j}`;
    const name = d.row!.name;
    const bail = exit(String(ipc), done);
    if (name in ALU_IMM) {
      const a = r(d.rs1);
      const dst = w(d.rd);
      if (dst) lines.push(`${dst} = ${ALU_IMM[name]!(a, d.imm)};`);
    } else if (name in ALU_REG) {
      const a = r(d.rs1), b = r(d.rs2);
      const dst = w(d.rd);
      if (dst) lines.push(`${dst} = ${ALU_REG[name]!(a, b)};`);
    } else if (name === 'lui') {
      const dst = w(d.rd);
      if (dst) lines.push(`${dst} = ${d.imm | 0};`);
    } else if (name === 'auipc') {
      const dst = w(d.rd);
      if (dst) lines.push(`${dst} = ${(ipc + d.imm) | 0};`);
    } else if (name in LOADS) {
      const L = LOADS[name]!;
      const a = r(d.rs1);
      const dst = w(d.rd);
      lines.push(`{ const o = (${a} + ${d.imm}) ^ -2147483648;`);
      lines.push(`  if (o < 0 || o >= ramSize${L.width > 1 ? ` || (o & ${L.width - 1}) !== 0` : ''} || rok[o >>> 12] !== 1) ${bail}`);
      if (dst) lines.push(`  ${dst} = ${L.view}[o >> ${L.shift}]; }`);
      else lines.push('}');
    } else if (name in STORES) {
      const S = STORES[name]!;
      const a = r(d.rs1), v = r(d.rs2);
      lines.push(`{ const o = (${a} + ${d.imm}) ^ -2147483648;`);
      lines.push(`  if (o < 0 || o >= ramSize${S.width > 1 ? ` || (o & ${S.width - 1}) !== 0` : ''} || (wok[o >>> 12] !== 1 && !markWrite(o >>> 12))) ${bail}`);
      lines.push(`  ${S.view}[o >> ${S.shift}] = ${v}; }`);
    } else if (name in BRANCHES) {
      const a = r(d.rs1), b = r(d.rs2);
      const target = (ipc + d.imm) | 0;
      const fall = (ipc + 4) | 0;
      if (target === start) {
        loops = true;
        lines.push(`if (${BRANCHES[name]!(a, b)}) { n += ${len}; if (n + ${len} <= budget) continue; ${exit(String(target), 'n')} }`);
      } else {
        lines.push(`if (${BRANCHES[name]!(a, b)}) ${exit(String(target), `n + ${len}`)}`);
      }
      lines.push(exit(String(fall), `n + ${len}`));
    } else if (name === 'jal') {
      const dst = w(d.rd);
      if (dst) lines.push(`${dst} = ${(ipc + 4) | 0};`);
      lines.push(exit(String((ipc + d.imm) | 0), `n + ${len}`));
    } else if (name === 'jalr') {
      const a = r(d.rs1);
      lines.push(`{ const t = (${a} + ${d.imm}) & -2;`);
      lines.push(`  if ((t & 2) !== 0) ${bail}`);
      const dst = w(d.rd);
      if (dst) lines.push(`  ${dst} = ${(ipc + 4) | 0};`);
      lines.push(`  ${exit('t', `n + ${len}`)} }`);
    }
  });
  if (!terminated) lines.push(exit(String((start + 4 * len) | 0), `n + ${len}`));

  const regs = [...used].sort((a, b) => a - b);
  const wb = [...written].sort((a, b) => a - b).map((i) => `s[${i}] = r${i};`).join(' ');
  const body = [
    `if (budget < ${len}) return 0;`,
    regs.length ? `let ${regs.map((i) => `r${i} = s[${i}]`).join(', ')};` : '',
    'let n = 0;',
    loops ? 'for (;;) {' : '{',
    ...lines.map((l) => l.split(WB).join(wb)),
    '}',
  ].join('\n');
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- generating code is the point of a block compiler
  const factory = new Function('mulhu', `return function block(s, ram8, ram8s, ram16, ram16s, ram32, rok, wok, ramSize, budget, markWrite) {\n${body}\n};`);
  return { fn: factory(mulhu) as Block, length: len };
}
