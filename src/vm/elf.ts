import { FerryError } from '../errors.ts';

export interface ElfSegment {
  paddr: number;
  data: Uint8Array;
  memsz: number;
}

export interface ElfImage {
  entry: number;
  segments: ElfSegment[];
  symbols: Map<string, number>;
}

const PT_LOAD = 1;
const SHT_SYMTAB = 2;
const EM_RISCV = 0xf3;

function bad(why: string): never {
  throw new FerryError('EBADELF', `not a loadable RV32 ELF: ${why}`);
}

/** Parses a little-endian ELF32 RISC-V executable: loadable segments, entry and symbols. */
export function parseElf(bytes: Uint8Array): ElfImage {
  if (bytes.length < 52) bad('file is shorter than an ELF header');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, false) !== 0x7f454c46) bad('bad magic');
  if (bytes[4] !== 1) bad('not 32-bit (ELFCLASS32)');
  if (bytes[5] !== 1) bad('not little-endian');
  if (dv.getUint16(18, true) !== EM_RISCV) bad(`machine ${dv.getUint16(18, true)} is not RISC-V`);
  const entry = dv.getUint32(24, true);
  const phoff = dv.getUint32(28, true);
  const shoff = dv.getUint32(32, true);
  const phentsize = dv.getUint16(42, true);
  const phnum = dv.getUint16(44, true);
  const shentsize = dv.getUint16(46, true);
  const shnum = dv.getUint16(48, true);
  const inFile = (off: number, len: number) => off + len <= bytes.length;

  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (!inFile(ph, 32)) bad('program header outside the file');
    if (dv.getUint32(ph, true) !== PT_LOAD) continue;
    const offset = dv.getUint32(ph + 4, true);
    const paddr = dv.getUint32(ph + 12, true);
    const filesz = dv.getUint32(ph + 16, true);
    const memsz = dv.getUint32(ph + 20, true);
    if (!inFile(offset, filesz)) bad('segment data outside the file');
    if (memsz < filesz) bad('segment memsz < filesz');
    if (memsz === 0) continue;
    segments.push({ paddr, data: bytes.subarray(offset, offset + filesz), memsz });
  }
  if (segments.length === 0) bad('no PT_LOAD segment');

  const symbols = new Map<string, number>();
  if (shoff !== 0 && shentsize >= 40) {
    for (let i = 0; i < shnum; i++) {
      const sh = shoff + i * shentsize;
      if (!inFile(sh, 40) || dv.getUint32(sh + 4, true) !== SHT_SYMTAB) continue;
      const symOff = dv.getUint32(sh + 16, true);
      const symSize = dv.getUint32(sh + 20, true);
      const link = dv.getUint32(sh + 24, true);
      const strSh = shoff + link * shentsize;
      if (!inFile(strSh, 40) || !inFile(symOff, symSize)) continue;
      const strOff = dv.getUint32(strSh + 16, true);
      const strSize = dv.getUint32(strSh + 20, true);
      if (!inFile(strOff, strSize)) continue;
      for (let s = symOff; s + 16 <= symOff + symSize; s += 16) {
        const nameOff = dv.getUint32(s, true);
        if (nameOff === 0 || nameOff >= strSize) continue;
        let end = strOff + nameOff;
        while (end < strOff + strSize && bytes[end] !== 0) end++;
        const name = new TextDecoder().decode(bytes.subarray(strOff + nameOff, end));
        symbols.set(name, dv.getUint32(s + 4, true));
      }
    }
  }
  return { entry, segments, symbols };
}
