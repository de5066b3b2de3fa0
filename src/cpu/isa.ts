/**
 * The RV32IM + Zicsr instruction set, declared once as mask/match rows (like Spike's
 * encoding.h). The decoder is built from these rows; the executor (cpu.ts) maps each row's
 * name to its own op number.
 */


export type InsnName =
  | 'lui' | 'auipc' | 'jal' | 'jalr' | 'beq' | 'bne' | 'blt' | 'bge' | 'bltu' | 'bgeu'
  | 'lb' | 'lh' | 'lw' | 'lbu' | 'lhu' | 'sb' | 'sh' | 'sw'
  | 'addi' | 'slti' | 'sltiu' | 'xori' | 'ori' | 'andi' | 'slli' | 'srli' | 'srai'
  | 'add' | 'sub' | 'sll' | 'slt' | 'sltu' | 'xor' | 'srl' | 'sra' | 'or' | 'and'
  | 'fence' | 'fence.i' | 'ecall' | 'ebreak' | 'mret' | 'wfi'
  | 'csrrw' | 'csrrs' | 'csrrc' | 'csrrwi' | 'csrrsi' | 'csrrci'
  | 'mul' | 'mulh' | 'mulhsu' | 'mulhu' | 'div' | 'divu' | 'rem' | 'remu';

export type Format = 'R' | 'I' | 'S' | 'B' | 'U' | 'J' | 'CSR' | 'SYS';

export interface InsnRow {
  name: InsnName;
  mask: number;
  match: number;
  format: Format;
}

const OPC = 0x7f;
const F3 = 0x7000;
const F7 = 0xfe00_0000;

function row(name: InsnName, mask: number, match: number, format: Format): InsnRow {
  return { name, mask: mask >>> 0, match: match >>> 0, format };
}
const r = (name: InsnName, f7: number, f3: number, opc: number) =>
  row(name, OPC | F3 | F7, (f7 << 25) | (f3 << 12) | opc, 'R');
const i = (name: InsnName, f3: number, opc: number, format: Format = 'I') =>
  row(name, OPC | F3, (f3 << 12) | opc, format);

export const ISA: readonly InsnRow[] = [
  row('lui', OPC, 0x37, 'U'),
  row('auipc', OPC, 0x17, 'U'),
  row('jal', OPC, 0x6f, 'J'),
  i('jalr', 0, 0x67),
  i('beq', 0, 0x63, 'B'),
  i('bne', 1, 0x63, 'B'),
  i('blt', 4, 0x63, 'B'),
  i('bge', 5, 0x63, 'B'),
  i('bltu', 6, 0x63, 'B'),
  i('bgeu', 7, 0x63, 'B'),
  i('lb', 0, 0x03),
  i('lh', 1, 0x03),
  i('lw', 2, 0x03),
  i('lbu', 4, 0x03),
  i('lhu', 5, 0x03),
  i('sb', 0, 0x23, 'S'),
  i('sh', 1, 0x23, 'S'),
  i('sw', 2, 0x23, 'S'),
  i('addi', 0, 0x13),
  i('slti', 2, 0x13),
  i('sltiu', 3, 0x13),
  i('xori', 4, 0x13),
  i('ori', 6, 0x13),
  i('andi', 7, 0x13),
  r('slli', 0x00, 1, 0x13),
  r('srli', 0x00, 5, 0x13),
  r('srai', 0x20, 5, 0x13),
  r('add', 0x00, 0, 0x33),
  r('sub', 0x20, 0, 0x33),
  r('sll', 0x00, 1, 0x33),
  r('slt', 0x00, 2, 0x33),
  r('sltu', 0x00, 3, 0x33),
  r('xor', 0x00, 4, 0x33),
  r('srl', 0x00, 5, 0x33),
  r('sra', 0x20, 5, 0x33),
  r('or', 0x00, 6, 0x33),
  r('and', 0x00, 7, 0x33),
  // fence ignores its fm/pred/succ/rs1/rd fields, as the spec asks of implementations.
  i('fence', 0, 0x0f, 'SYS'),
  i('fence.i', 1, 0x0f, 'SYS'),
  row('ecall', 0xffff_ffff, 0x0000_0073, 'SYS'),
  row('ebreak', 0xffff_ffff, 0x0010_0073, 'SYS'),
  row('mret', 0xffff_ffff, 0x3020_0073, 'SYS'),
  row('wfi', 0xffff_ffff, 0x1050_0073, 'SYS'),
  i('csrrw', 1, 0x73, 'CSR'),
  i('csrrs', 2, 0x73, 'CSR'),
  i('csrrc', 3, 0x73, 'CSR'),
  i('csrrwi', 5, 0x73, 'CSR'),
  i('csrrsi', 6, 0x73, 'CSR'),
  i('csrrci', 7, 0x73, 'CSR'),
  r('mul', 0x01, 0, 0x33),
  r('mulh', 0x01, 1, 0x33),
  r('mulhsu', 0x01, 2, 0x33),
  r('mulhu', 0x01, 3, 0x33),
  r('div', 0x01, 4, 0x33),
  r('divu', 0x01, 5, 0x33),
  r('rem', 0x01, 6, 0x33),
  r('remu', 0x01, 7, 0x33),
];

/** Rows bucketed by major opcode, so decoding scans a handful of rows. */
const byOpcode: InsnRow[][] = Array.from({ length: 128 }, (_, opc) => ISA.filter((rw) => (rw.match & OPC) === opc));

/** A decoded instruction: the row it matched (undefined = illegal) and its fields, extracted once. */
export interface Decoded {
  row: InsnRow | undefined;
  rd: number;
  rs1: number;
  rs2: number;
  imm: number;
}

export function findRow(insn: number): InsnRow | undefined {
  const u = insn >>> 0;
  for (const rw of byOpcode[u & OPC]!) {
    if ((u & rw.mask) === rw.match) return rw;
  }
  return undefined;
}

export function decode(insn: number): Decoded {
  const rw = findRow(insn);
  const rd = (insn >>> 7) & 31;
  const rs1 = (insn >>> 15) & 31;
  const rs2 = (insn >>> 20) & 31;
  if (rw === undefined) return { row: undefined, rd: 0, rs1: 0, rs2: 0, imm: insn | 0 };
  let imm = 0;
  switch (rw.format) {
    case 'I':
    case 'SYS':
      imm = insn >> 20;
      break;
    case 'CSR':
      imm = (insn >>> 20) & 0xfff; // the CSR number; rs1 holds the register or the 5-bit immediate
      break;
    case 'S':
      imm = ((insn >> 25) << 5) | ((insn >>> 7) & 31);
      break;
    case 'B':
      imm = ((insn >> 31) << 12) | (((insn >>> 7) & 1) << 11) | (((insn >>> 25) & 63) << 5) | (((insn >>> 8) & 15) << 1);
      break;
    case 'U':
      imm = insn & 0xffff_f000;
      break;
    case 'J':
      imm = ((insn >> 31) << 20) | (insn & 0xff000) | (((insn >>> 20) & 1) << 11) | (((insn >>> 21) & 1023) << 1);
      break;
    case 'R':
      imm = rs2; // shift-immediate forms keep their shamt here
      break;
  }
  return { row: rw, rd, rs1, rs2, imm };
}

/** Whether instructions of this format write rd (the executor sends x0 writes to a sink). */
export function writesRd(format: Format): boolean {
  return format !== 'B' && format !== 'S' && format !== 'SYS';
}
