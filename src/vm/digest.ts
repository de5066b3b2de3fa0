import { createHash } from 'node:crypto';
import { DIGEST_WORDS } from '../cpu/state.ts';
import type { DeviceStates } from './machine.ts';
import type { GuestMemory } from '../memory/guest-memory.ts';

const DIGEST_VERSION = 'ferry-digest-v2'; // v2: the PMP words and the PLIC and RTC states

/** JSON with object keys sorted at every level, so equal states serialize equally. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/**
 * The migration oracle (DESIGN §2): SHA-256 over the RAM size and bytes, the CPU words in
 * DIGEST_WORDS order (little-endian), then the device state as canonical JSON.
 */
export function computeDigest(mem: GuestMemory, cpu: Int32Array, devices: DeviceStates): string {
  const h = createHash('sha256');
  h.update(`${DIGEST_VERSION}\0ram:${mem.size}\0`);
  const chunk = 16 * 1024 * 1024;
  for (let off = 0; off < mem.size; off += chunk) {
    // Copy out of the SharedArrayBuffer: hashing a shared view is not allowed to race.
    h.update(mem.ram.slice(off, Math.min(mem.size, off + chunk)));
  }
  const words = new Int32Array(DIGEST_WORDS.length);
  DIGEST_WORDS.forEach((idx, i) => { words[i] = cpu[idx]!; });
  h.update(`\0cpu\0`);
  h.update(new Uint8Array(words.buffer));
  h.update(`\0devices\0${canonicalJson(devices)}`);
  return h.digest('hex');
}
