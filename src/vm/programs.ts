import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../errors.ts';

/** Where the committed guest ELFs live (guest-programs/build). */
export const GUEST_BUILD_DIR = fileURLToPath(new URL('../../guest-programs/build/', import.meta.url));

export function builtPrograms(): string[] {
  if (!existsSync(GUEST_BUILD_DIR)) return [];
  return readdirSync(GUEST_BUILD_DIR).filter((f) => f.endsWith('.elf')).map((f) => f.slice(0, -4)).sort();
}

/** `PROGRAM` names a built guest; anything with a slash or an .elf suffix is a file path. */
export function resolveProgram(spec: string): { name: string; path: string } {
  if (spec.includes('/') || spec.endsWith('.elf')) {
    if (!existsSync(spec)) throw new UsageError(`no such ELF file: ${spec}`);
    return { name: spec.replace(/^.*\//, '').replace(/\.elf$/, ''), path: spec };
  }
  const path = `${GUEST_BUILD_DIR}${spec}.elf`;
  if (!/^[A-Za-z0-9_-]+$/.test(spec) || !existsSync(path)) {
    throw new UsageError(`unknown program "${spec}"; built programs: ${builtPrograms().join(', ') || '(none)'}`);
  }
  return { name: spec, path };
}

export function loadProgram(spec: string): { name: string; elf: Uint8Array } {
  const { name, path } = resolveProgram(spec);
  return { name, elf: new Uint8Array(readFileSync(path)) };
}
