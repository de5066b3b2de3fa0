// The ISA table (src/cpu/isa.ts), the decoder and the packer (src/cpu/cpu.ts).
// Encodings below were produced by `llvm-mc --triple=riscv32 -mattr=+m -show-encoding`
// (LLVM 14), not by Ferry, so they check the decoder against an independent assembler.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Op, pack } from '../../src/cpu/cpu.ts';
import { decode, findRow, ISA, writesRd, type InsnName } from '../../src/cpu/isa.ts';
import { X_SINK } from '../../src/cpu/state.ts';
import { TESTS_SRC_DIR } from '../support/helpers.ts';

/** Little-endian bytes as llvm-mc prints them → the instruction word. */
const le = (b0: number, b1: number, b2: number, b3: number) => (b0 | (b1 << 8) | (b2 << 16) | (b3 << 24)) >>> 0;

describe('ISA table', () => {
  it('has one row per instruction name, with match bits inside the mask', () => {
    const names = ISA.map((r) => r.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names.length).toBe(57); // RV32I 37 + fence fence.i ecall ebreak + mret wfi + Zicsr 6 + M 8
    for (const r of ISA) {
      expect((r.match & ~r.mask) >>> 0, `${r.name}: match bits outside the mask`).toBe(0);
      expect(r.mask & 0x7f, `${r.name}: mask covers the major opcode`).toBe(0x7f);
    }
  });

  it('no two rows overlap (no instruction word matches both)', () => {
    const overlaps: string[] = [];
    for (let i = 0; i < ISA.length; i++) {
      for (let j = i + 1; j < ISA.length; j++) {
        const a = ISA[i]!, b = ISA[j]!;
        // A word matching both exists iff the matches agree on every bit both masks fix.
        const common = (a.mask & b.mask) >>> 0;
        if ((((a.match ^ b.match) & common) >>> 0) === 0) overlaps.push(`${a.name} / ${b.name}`);
        // And the classic form: neither row's match pattern is accepted by the other row.
        if ((((a.match | (b.match & ~a.mask)) & b.mask) >>> 0) === b.match) overlaps.push(`${a.name} ~ ${b.name}`);
      }
    }
    expect(overlaps).toEqual([]);
  });

  it("findRow maps every row's own match word back to that row", () => {
    for (const r of ISA) expect(findRow(r.match)?.name, r.name).toBe(r.name);
  });

  it('every row is exercised by at least one conformance source (guest-programs/tests/*.S)', () => {
    const sources = readdirSync(TESTS_SRC_DIR)
      .filter((f) => f.endsWith('.S') || f.endsWith('.h'))
      .map((f) => readFileSync(join(TESTS_SRC_DIR, f), 'utf8'));
    const text = sources.join('\n');
    const missing: string[] = [];
    for (const r of ISA) {
      const esc = r.name.replace(/\./g, '\\.');
      // Whole word, not followed by '.' (so "fence" is not satisfied by "fence.i" alone).
      if (!new RegExp(`(^|[^A-Za-z0-9_.])${esc}(?![A-Za-z0-9_.])`, 'm').test(text)) missing.push(r.name);
    }
    expect(missing).toEqual([]);
  });
});

interface Vector {
  asm: string;
  word: number;
  name: InsnName;
  rd?: number;
  rs1?: number;
  rs2?: number;
  imm: number;
}

const VECTORS: Vector[] = [
  // I-type
  { asm: 'addi x1, x2, -1', word: le(0x93, 0x00, 0xf1, 0xff), name: 'addi', rd: 1, rs1: 2, imm: -1 },
  { asm: 'addi x5, x6, 2047', word: le(0x93, 0x02, 0xf3, 0x7f), name: 'addi', rd: 5, rs1: 6, imm: 2047 },
  { asm: 'addi x7, x8, -2048', word: le(0x93, 0x03, 0x04, 0x80), name: 'addi', rd: 7, rs1: 8, imm: -2048 },
  { asm: 'lw x3, -4(x4)', word: le(0x83, 0x21, 0xc2, 0xff), name: 'lw', rd: 3, rs1: 4, imm: -4 },
  { asm: 'lbu x9, 17(x10)', word: le(0x83, 0x44, 0x15, 0x01), name: 'lbu', rd: 9, rs1: 10, imm: 17 },
  { asm: 'jalr x1, -16(x5)', word: le(0xe7, 0x80, 0x02, 0xff), name: 'jalr', rd: 1, rs1: 5, imm: -16 },
  // S-type
  { asm: 'sw x5, -8(x6)', word: le(0x23, 0x2c, 0x53, 0xfe), name: 'sw', rs1: 6, rs2: 5, imm: -8 },
  { asm: 'sb x31, 2047(x1)', word: le(0xa3, 0x8f, 0xf0, 0x7f), name: 'sb', rs1: 1, rs2: 31, imm: 2047 },
  { asm: 'sh x2, -2048(x3)', word: le(0x23, 0x90, 0x21, 0x80), name: 'sh', rs1: 3, rs2: 2, imm: -2048 },
  // B-type
  { asm: 'beq x1, x2, 8', word: le(0x63, 0x84, 0x20, 0x00), name: 'beq', rs1: 1, rs2: 2, imm: 8 },
  { asm: 'bne x3, x4, -4', word: le(0xe3, 0x9e, 0x41, 0xfe), name: 'bne', rs1: 3, rs2: 4, imm: -4 },
  { asm: 'bgeu x5, x6, -4096', word: le(0x63, 0xf0, 0x62, 0x80), name: 'bgeu', rs1: 5, rs2: 6, imm: -4096 },
  { asm: 'blt x7, x8, 4094', word: le(0xe3, 0xcf, 0x83, 0x7e), name: 'blt', rs1: 7, rs2: 8, imm: 4094 },
  // U-type (imm is the value placed in rd: upper 20 bits, as a signed 32-bit number)
  { asm: 'lui x10, 0xfffff', word: le(0x37, 0xf5, 0xff, 0xff), name: 'lui', rd: 10, imm: 0xfffff000 | 0 },
  { asm: 'lui x11, 0x12345', word: le(0xb7, 0x55, 0x34, 0x12), name: 'lui', rd: 11, imm: 0x12345000 },
  { asm: 'auipc x12, 0x80000', word: le(0x17, 0x06, 0x00, 0x80), name: 'auipc', rd: 12, imm: 0x80000000 | 0 },
  // J-type
  { asm: 'jal x1, 2048', word: le(0xef, 0x00, 0x10, 0x00), name: 'jal', rd: 1, imm: 2048 },
  { asm: 'jal x0, -8', word: le(0x6f, 0xf0, 0x9f, 0xff), name: 'jal', rd: 0, imm: -8 },
  { asm: 'jal x2, -1048576', word: le(0x6f, 0x01, 0x00, 0x80), name: 'jal', rd: 2, imm: -1048576 },
  { asm: 'jal x3, 1048574', word: le(0xef, 0xf1, 0xff, 0x7f), name: 'jal', rd: 3, imm: 1048574 },
  // R-type (shift-immediates keep shamt in imm)
  { asm: 'add x1, x2, x3', word: le(0xb3, 0x00, 0x31, 0x00), name: 'add', rd: 1, rs1: 2, rs2: 3, imm: 3 },
  { asm: 'sub x31, x30, x29', word: le(0xb3, 0x0f, 0xdf, 0x41), name: 'sub', rd: 31, rs1: 30, rs2: 29, imm: 29 },
  { asm: 'sra x4, x5, x6', word: le(0x33, 0xd2, 0x62, 0x40), name: 'sra', rd: 4, rs1: 5, rs2: 6, imm: 6 },
  { asm: 'mulhsu x7, x8, x9', word: le(0xb3, 0x23, 0x94, 0x02), name: 'mulhsu', rd: 7, rs1: 8, rs2: 9, imm: 9 },
  { asm: 'remu x10, x11, x12', word: le(0x33, 0xf5, 0xc5, 0x02), name: 'remu', rd: 10, rs1: 11, rs2: 12, imm: 12 },
  { asm: 'slli x1, x2, 31', word: le(0x93, 0x10, 0xf1, 0x01), name: 'slli', rd: 1, rs1: 2, imm: 31 },
  { asm: 'srai x3, x4, 7', word: le(0x93, 0x51, 0x72, 0x40), name: 'srai', rd: 3, rs1: 4, imm: 7 },
  { asm: 'srli x5, x6, 1', word: le(0x93, 0x52, 0x13, 0x00), name: 'srli', rd: 5, rs1: 6, imm: 1 },
  // CSR (imm = CSR number, unsigned; rs1 = source register or the 5-bit immediate)
  { asm: 'csrrw x1, mscratch, x2', word: le(0xf3, 0x10, 0x01, 0x34), name: 'csrrw', rd: 1, rs1: 2, imm: 0x340 },
  { asm: 'csrrs x3, mstatus, x0', word: le(0xf3, 0x21, 0x00, 0x30), name: 'csrrs', rd: 3, rs1: 0, imm: 0x300 },
  { asm: 'csrrc x4, 0xfff, x5', word: le(0x73, 0xb2, 0xf2, 0xff), name: 'csrrc', rd: 4, rs1: 5, imm: 0xfff },
  { asm: 'csrrwi x6, mtvec, 31', word: le(0x73, 0xd3, 0x5f, 0x30), name: 'csrrwi', rd: 6, rs1: 31, imm: 0x305 },
  { asm: 'csrrsi x0, mie, 1', word: le(0x73, 0xe0, 0x40, 0x30), name: 'csrrsi', rd: 0, rs1: 1, imm: 0x304 },
  { asm: 'csrrci x7, cycle, 0', word: le(0xf3, 0x73, 0x00, 0xc0), name: 'csrrci', rd: 7, rs1: 0, imm: 0xc00 },
  // System / fence
  { asm: 'ecall', word: le(0x73, 0x00, 0x00, 0x00), name: 'ecall', imm: 0 },
  { asm: 'ebreak', word: le(0x73, 0x00, 0x10, 0x00), name: 'ebreak', imm: 1 },
  { asm: 'mret', word: le(0x73, 0x00, 0x20, 0x30), name: 'mret', imm: 0x302 },
  { asm: 'wfi', word: le(0x73, 0x00, 0x50, 0x10), name: 'wfi', imm: 0x105 },
  { asm: 'fence', word: le(0x0f, 0x00, 0xf0, 0x0f), name: 'fence', imm: 0x0ff },
  { asm: 'fence rw, w', word: le(0x0f, 0x00, 0x10, 0x03), name: 'fence', imm: 0x031 },
  { asm: 'fence.i', word: le(0x0f, 0x10, 0x00, 0x00), name: 'fence.i', imm: 0 },
];

describe('decoder vectors (llvm-mc encodings)', () => {
  for (const v of VECTORS) {
    it(`${v.asm} (0x${v.word.toString(16).padStart(8, '0')})`, () => {
      const d = decode(v.word);
      expect(d.row?.name).toBe(v.name);
      expect(d.imm).toBe(v.imm);
      if (v.rd !== undefined) expect(d.rd, 'rd').toBe(v.rd);
      if (v.rs1 !== undefined) expect(d.rs1, 'rs1').toBe(v.rs1);
      if (v.rs2 !== undefined) expect(d.rs2, 'rs2').toBe(v.rs2);
    });
  }

  it('covers every instruction format', () => {
    const formats = new Set(VECTORS.map((v) => ISA.find((r) => r.name === v.name)!.format));
    expect([...formats].sort()).toEqual(['B', 'CSR', 'I', 'J', 'R', 'S', 'SYS', 'U']);
  });

  it('rejects words that match no row', () => {
    const illegal = [
      0x0000_0000, // all zeros (defined illegal)
      0xffff_ffff, // all ones
      le(0x33, 0x00, 0x31, 0x80), // add with funct7 = 0x40 (not sub)
      le(0x93, 0x10, 0xf1, 0x21), // slli with funct7 = 0x10
      le(0x73, 0x40, 0x00, 0x00), // funct3 = 4 in SYSTEM
      le(0x03, 0x30, 0x00, 0x00), // load funct3 = 3 (ld: RV64 only)
      le(0x23, 0x30, 0x00, 0x00), // store funct3 = 3 (sd: RV64 only)
      le(0x63, 0x20, 0x00, 0x00), // branch funct3 = 2
      le(0x67, 0x10, 0x00, 0x00), // jalr funct3 = 1
      le(0x73, 0x00, 0x30, 0x00), // SYSTEM funct12 = 3 (not ecall/ebreak/mret/wfi)
      0x0000_0001, // a compressed encoding (C is not implemented)
    ];
    // 0x00002073 is csrrs x0, ustatus(0x000), x0: legal to decode (the CSR is what traps).
    expect(decode(0x0000_2073).row?.name).toBe('csrrs');
    for (const w of illegal) {
      expect(decode(w).row, `0x${(w >>> 0).toString(16)}`).toBeUndefined();
    }
  });
});

describe('pack', () => {
  const unpack = ([w, imm]: [number, number]) => ({ op: w & 255, rd: (w >>> 8) & 63, rs1: (w >>> 14) & 31, rs2: (w >>> 19) & 31, imm });

  it('packs fields and immediate of a legal instruction', () => {
    const p = unpack(pack(le(0xb3, 0x0f, 0xdf, 0x41))); // sub x31, x30, x29
    expect(p).toEqual({ op: Op.Sub, rd: 31, rs1: 30, rs2: 29, imm: 29 });
    const q = unpack(pack(le(0x83, 0x21, 0xc2, 0xff))); // lw x3, -4(x4)
    expect(q).toMatchObject({ op: Op.Lw, rd: 3, rs1: 4, imm: -4 });
  });

  it('sends x0 writes to the sink, but not for formats without rd', () => {
    expect(unpack(pack(le(0x6f, 0xf0, 0x9f, 0xff))).rd).toBe(X_SINK); // jal x0, -8
    expect(unpack(pack(le(0x73, 0xe0, 0x40, 0x30))).rd).toBe(X_SINK); // csrrsi x0, mie, 1
    expect(writesRd('S')).toBe(false);
    expect(writesRd('B')).toBe(false);
    expect(writesRd('SYS')).toBe(false);
  });

  it('an illegal word packs to Op.Illegal carrying the word as its immediate', () => {
    for (const w of [0, 0xffff_ffff, le(0x33, 0x00, 0x31, 0x80), le(0x03, 0x30, 0x00, 0x00)]) {
      const [op, imm] = pack(w);
      expect(op & 255).toBe(Op.Illegal);
      expect(imm >>> 0).toBe(w >>> 0);
    }
  });

  it('a branch or jal with an offset of 2 mod 4 packs to Op.MisalignedJump', () => {
    for (const w of [
      le(0x63, 0x83, 0x20, 0x00), // beq x1, x2, 6
      le(0x6f, 0x00, 0x20, 0x00), // jal x0, 2
      le(0xe3, 0x1f, 0x00, 0xfe), // bne x0, x0, -2
      le(0xef, 0xf0, 0xbf, 0xff), // jal x1, -6
    ]) {
      expect(pack(w)[0] & 255, `0x${w.toString(16)}`).toBe(Op.MisalignedJump);
    }
    // offsets that are multiples of 4 stay ordinary jumps
    expect(pack(le(0x63, 0x84, 0x20, 0x00))[0] & 255).toBe(Op.Beq);
    expect(pack(le(0xef, 0x00, 0x10, 0x00))[0] & 255).toBe(Op.Jal);
  });
});
