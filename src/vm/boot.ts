import { createCpuState, PRIV_M, S_PC, S_PRIV } from '../cpu/state.ts';
import { FerryError } from '../errors.ts';
import type { GuestMemory } from '../memory/guest-memory.ts';
import { PAGE_SIZE, RAM_BASE } from '../memory/layout.ts';
import { parseElf } from './elf.ts';

export interface BootResult {
  cpuState: Int32Array;
  /** RAM offset of the HTIF tohost word, or -1 when the ELF has none. */
  tohost: number;
  bootArgs: string;
}

/** Renders `--arg k=v` pairs the way guests parse them: `k=v k2=v2`. */
export function formatBootArgs(args: readonly string[]): string {
  for (const a of args) {
    if (!/^[A-Za-z0-9_.-]+=[^\s]*$/.test(a)) {
      throw new FerryError('EINVAL', `boot argument "${a}" must look like key=value (no spaces)`);
    }
  }
  return args.join(' ');
}

/**
 * Loads an ELF into fresh RAM and builds the reset state, as QEMU virt with `-bios none`:
 * pc = e_entry, a0 = hart id 0, a1 = address of the boot-argument string, which sits at the
 * start of the last RAM page (DESIGN §2).
 */
export function bootElf(mem: GuestMemory, elfBytes: Uint8Array, args: readonly string[]): BootResult {
  const elf = parseElf(elfBytes);
  for (const seg of elf.segments) {
    const off = seg.paddr - RAM_BASE;
    if (off < 0 || off + seg.memsz > mem.size - PAGE_SIZE) {
      throw new FerryError(
        'EBADELF',
        `segment at 0x${seg.paddr.toString(16)} (+${seg.memsz} bytes) does not fit in ${mem.size / 1048576} MiB of RAM at 0x80000000`,
      );
    }
    mem.hostWrite(off, seg.data);
  }
  const bootArgs = formatBootArgs(args);
  const argBytes = new TextEncoder().encode(bootArgs + '\0');
  if (argBytes.length > PAGE_SIZE) throw new FerryError('EINVAL', `boot arguments are longer than ${PAGE_SIZE - 1} bytes`);
  const argsOff = mem.size - PAGE_SIZE;
  mem.hostWrite(argsOff, argBytes);

  const s = createCpuState();
  s[S_PC] = elf.entry | 0;
  s[S_PRIV] = PRIV_M;
  s[10] = 0;
  s[11] = (RAM_BASE + argsOff) | 0;
  const tohostAddr = elf.symbols.get('tohost');
  const tohost = tohostAddr !== undefined && tohostAddr >= RAM_BASE && tohostAddr - RAM_BASE < mem.size ? tohostAddr - RAM_BASE : -1;
  return { cpuState: s, tohost, bootArgs };
}
