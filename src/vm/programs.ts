import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { FerryError, UsageError } from '../errors.ts';

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

/**
 * A built guest by name only (what a host accepts from clients): never a path, so a client
 * cannot make a host read its files. Uploaded ELF bytes have their own parameter.
 */
export function loadBuiltProgram(name: string): Uint8Array {
  const path = `${GUEST_BUILD_DIR}${name}.elf`;
  if (!/^[A-Za-z0-9_-]+$/.test(name) || !existsSync(path)) {
    throw new FerryError('ENOPROGRAM', `unknown program "${name}"; built programs: ${builtPrograms().join(', ') || '(none)'}`);
  }
  return new Uint8Array(readFileSync(path));
}
