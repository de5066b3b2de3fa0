/**
 * Page deltas (QEMU's XBZRLE, by 32-bit words): a page re-sent during pre-copy travels as what
 * changed against the version last sent, which the destination holds in guest RAM.
 *
 *   repeated: uleb128 unchanged-words | uleb128 changed-words (>= 1) | changed-words x 4 bytes
 *
 * Unchanged words at the end are not encoded; an empty delta is an unchanged page. A changed
 * run is the page's own bytes, so a delta is a list of byte runs whatever the host's byte order.
 */
import { PAGE_SIZE } from './layout.ts';

const WORDS = PAGE_SIZE / 4;
/** Words are compared as this host's Int32s and written back in the same byte order: the delta carries RAM's bytes as they are. */
const HOST_LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** A delta larger than this is not worth it: the page goes whole. */
export const MAX_DELTA_BYTES = PAGE_SIZE - 256;

/**
 * Encodes `cur` (words [cur0, cur0 + 1024) of `cur32`) against `old` (words [old0, ...) of
 * `old32`) into `out` from `at`. Returns the end of the delta, or -1 if it would pass `at` +
 * MAX_DELTA_BYTES (or the end of `out`).
 */
export function encodeDelta(old32: Int32Array, old0: number, cur32: Int32Array, cur0: number, out: Uint8Array, at: number): number {
  const limit = Math.min(out.length, at + MAX_DELTA_BYTES);
  const outView = new DataView(out.buffer, out.byteOffset, out.byteLength);
  let o = at;
  let i = 0;
  while (i < WORDS) {
    const start = i;
    while (i < WORDS && old32[old0 + i] === cur32[cur0 + i]) i++;
    if (i === WORDS) break;
    const zrun = i - start;
    const from = i;
    while (i < WORDS && old32[old0 + i] !== cur32[cur0 + i]) i++;
    const nrun = i - from;
    if (o + 4 + nrun * 4 > limit) return -1;
    o = writeUleb(out, o, zrun);
    o = writeUleb(out, o, nrun);
    for (let k = from; k < i; k++, o += 4) outView.setInt32(o, cur32[cur0 + k]!, HOST_LITTLE_ENDIAN);
  }
  return o;
}

/**
 * Checks a delta from a peer: every run inside the page, every changed run non-empty, no byte
 * left over. Nothing is written. Returns false for anything else.
 */
export function checkDelta(delta: Uint8Array): boolean {
  return walkDelta(delta, undefined, 0);
}

/** Applies a delta checked by `checkDelta` to the page at byte `pageOffset` of `ram`. */
export function applyDelta(ram: Uint8Array, pageOffset: number, delta: Uint8Array): void {
  walkDelta(delta, ram, pageOffset);
}

/**
 * Walks a delta's runs, copying each changed run into `ram` at `pageOffset` if given; false at
 * the first thing out of shape. Run lengths are at most 1024: a number is one or two bytes, the
 * shortest form.
 */
function walkDelta(d: Uint8Array, ram: Uint8Array | undefined, pageOffset: number): boolean {
  let o = 0;
  let w = 0;
  while (o < d.length) {
    const zr = readUleb(d, o);
    if (zr < 0) return false;
    const cr = readUleb(d, zr >>> 16);
    if (cr < 0) return false;
    const z = zr & 0xffff;
    const c = cr & 0xffff;
    o = cr >>> 16;
    if (c === 0) return false;
    w += z;
    const bytes = c * 4;
    if (w + c > WORDS || o + bytes > d.length) return false;
    if (ram) ram.set(d.subarray(o, o + bytes), pageOffset + w * 4);
    w += c;
    o += bytes;
  }
  return true;
}

/**
 * The number at `o`, one or two bytes in the shortest form: its value in the low 16 bits and
 * where the next field starts in the high ones (no object per number: this runs per run of a
 * delta), or -1 if it is cut short or not in that form.
 */
function readUleb(d: Uint8Array, o: number): number {
  if (o >= d.length) return -1;
  const lo = d[o]!;
  if (lo < 0x80) return lo | ((o + 1) << 16);
  if (o + 1 >= d.length) return -1;
  const hi = d[o + 1]!;
  if (hi >= 0x80 || hi === 0) return -1;
  return ((lo & 0x7f) | (hi << 7)) | ((o + 2) << 16);
}

// Run lengths are at most 1024: two bytes at most.
function writeUleb(out: Uint8Array, o: number, v: number): number {
  if (v < 0x80) {
    out[o] = v;
    return o + 1;
  }
  out[o] = (v & 0x7f) | 0x80;
  out[o + 1] = v >> 7;
  return o + 2;
}
