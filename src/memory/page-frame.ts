/**
 * Page frames: how guest pages travel between hosts, raw binary so page bytes are copied once,
 * from RAM into the frame and from the frame into RAM.
 *
 *   u8 FRAME_PAGES | u8 0 | u16 0 | u32 count | u32 page[count] | each page's data, in order
 *
 * A page's data is 4096 bytes, or none for a page number with ZERO_PAGE set (that page is zero),
 * or for one with DELTA_PAGE set (pre-copy only) u16 length and that many bytes of XBZRLE delta
 * against the version the destination already holds (xbzrle.ts). A frame from a peer is checked
 * whole by `checkPageFrame` (header, count, every page inside RAM, every delta well formed,
 * length exactly as the list says) before any byte of it is copied anywhere.
 */
import { FerryError } from '../errors.ts';
import { PAGE_EVER_WRITTEN, PAGE_SIZE } from './layout.ts';
import { claimMissingPage, publishFilledPage } from './post-copy-pages.ts';
import { applyDelta, checkDelta, encodeDelta } from './xbzrle.ts';
import type { XbzrleCache } from './xbzrle-cache.ts';

export const FRAME_PAGES = 0x50;
export const ZERO_PAGE = 0x8000_0000;
export const DELTA_PAGE = 0x4000_0000;
const PAGE_FLAGS = ZERO_PAGE | DELTA_PAGE;
export const PAGES_PER_FRAME = 256;
const HEADER = 8;
/** The largest page frame: PAGES_PER_FRAME pages with data. */
export const MAX_FRAME_BYTES = HEADER + PAGES_PER_FRAME * (4 + PAGE_SIZE);

/** Whether a binary message is a page frame (by its first byte; `checkPageFrame` says if it is a good one). */
export function isPageFrame(frame: Uint8Array): boolean {
  return frame.length >= 1 && frame[0] === FRAME_PAGES;
}

/**
 * Checks a page frame from a peer against a RAM of `pages` pages: throws FerryError EPROTO
 * (nothing has been copied) unless it is well formed; returns its page count. Delta pages are
 * refused unless `deltas` (they apply only on top of pre-copy's earlier versions).
 */
export function checkPageFrame(frame: Uint8Array, pages: number, deltas = false): number {
  if (frame.length < HEADER || frame[0] !== FRAME_PAGES || frame[1] !== 0 || frame[2] !== 0 || frame[3] !== 0) {
    throw new FerryError('EPROTO', 'malformed page frame header');
  }
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const count = dv.getUint32(4, true);
  if (count > PAGES_PER_FRAME) throw new FerryError('EPROTO', `page frame of ${count} pages exceeds ${PAGES_PER_FRAME}`);
  if (HEADER + count * 4 > frame.length) throw new FerryError('EPROTO', 'page frame shorter than its page list');
  let data = HEADER + count * 4;
  for (let i = 0; i < count; i++) {
    const raw = dv.getUint32(HEADER + i * 4, true);
    const p = (raw & ~PAGE_FLAGS) >>> 0;
    if (p >= pages) throw new FerryError('EPROTO', `page ${p} is outside guest RAM (${pages} pages)`);
    if (raw & ZERO_PAGE) {
      if (raw & DELTA_PAGE) throw new FerryError('EPROTO', `page ${p} is marked both zero and delta`);
      continue;
    }
    if (raw & DELTA_PAGE) {
      if (!deltas) throw new FerryError('EPROTO', `a delta page (${p}) where only whole pages may come`);
      if (data + 2 > frame.length) throw new FerryError('EPROTO', 'page frame shorter than its page data');
      const len = dv.getUint16(data, true);
      if (data + 2 + len > frame.length) throw new FerryError('EPROTO', 'page frame shorter than its page data');
      if (!checkDelta(frame.subarray(data + 2, data + 2 + len))) throw new FerryError('EPROTO', `malformed delta for page ${p}`);
      data += 2 + len;
      continue;
    }
    data += PAGE_SIZE;
    if (data > frame.length) throw new FerryError('EPROTO', 'page frame shorter than its page data');
  }
  if (frame.length > data) throw new FerryError('EPROTO', 'page frame has trailing bytes');
  return count;
}

/**
 * Builds one page frame from guest RAM: numbers first, then the bytes of every page that is
 * not all zero. Copies each page once, from RAM into the frame.
 */
export function encodePages(
  ram: Uint8Array, pages: ArrayLike<number>, from: number, to: number, into?: Buffer,
): { frame: Buffer; zero: number } {
  const count = to - from;
  const size = HEADER + count * 4 + count * PAGE_SIZE;
  // Reusing frame buffers matters: a fresh 1 MiB allocation costs page faults on every frame.
  const frame = into !== undefined && into.length >= size ? into : Buffer.allocUnsafe(size);
  frame[0] = FRAME_PAGES;
  frame[1] = 0;
  frame.writeUInt16LE(0, 2);
  frame.writeUInt32LE(count, 4);
  let data = HEADER + count * 4;
  let zero = 0;
  for (let i = 0; i < count; i++) {
    const p = pages[from + i]!;
    const src = ram.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
    if (isZeroPage(src)) {
      frame.writeUInt32LE((p | ZERO_PAGE) >>> 0, HEADER + i * 4);
      zero++;
      continue;
    }
    frame.writeUInt32LE(p, HEADER + i * 4);
    frame.set(src, data);
    data += PAGE_SIZE;
  }
  return { frame: frame.subarray(0, data), zero };
}

/** What `encodePagesWithDeltas` put in a frame. */
export interface DeltaFrame {
  frame: Uint8Array;
  zero: number;
  /** Pages sent as deltas. */
  deltas: number;
  /** Pages sent whole that the cache did not hold (or a concurrent encoder held the slot). */
  misses: number;
}

/**
 * Builds one pre-copy page frame with XBZRLE: a page the cache holds goes as its delta against
 * that version, if the delta is small enough; every page sent non-zero becomes the cache's
 * version. Each page is first copied into `scratch` (4096 bytes, 4-byte aligned): the running
 * guest may write it meanwhile, and the cache must hold exactly what was sent (as QEMU's does).
 */
export function encodePagesWithDeltas(
  ram: Uint8Array, pages: ArrayLike<number>, from: number, to: number, into: Uint8Array, cache: XbzrleCache, scratch: Uint8Array,
): DeltaFrame {
  const count = to - from;
  if (into.length < HEADER + count * (4 + PAGE_SIZE)) throw new RangeError('frame buffer too small');
  const frame = into;
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const scratch32 = new Int32Array(scratch.buffer, scratch.byteOffset, PAGE_SIZE / 4);
  dv.setUint32(0, FRAME_PAGES, true);
  dv.setUint32(4, count, true);
  let data = HEADER + count * 4;
  let zero = 0;
  let deltas = 0;
  let misses = 0;
  for (let i = 0; i < count; i++) {
    const p = pages[from + i]!;
    scratch.set(ram.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE));
    if (isZeroWords(scratch32)) {
      dv.setUint32(HEADER + i * 4, (p | ZERO_PAGE) >>> 0, true);
      cache.forget(p);
      zero++;
      continue;
    }
    const slot = cache.slotOf(p);
    if (!cache.tryLock(slot)) {
      cache.forget(p); // the destination's version will no longer be the cached one
      dv.setUint32(HEADER + i * 4, p, true);
      frame.set(scratch, data);
      data += PAGE_SIZE;
      misses++;
      continue;
    }
    try {
      if (cache.holds(slot, p)) {
        const end = encodeDelta(cache.data32, slot * (PAGE_SIZE / 4), scratch32, 0, frame, data + 2);
        if (end >= 0) {
          dv.setUint32(HEADER + i * 4, (p | DELTA_PAGE) >>> 0, true);
          dv.setUint16(data, end - data - 2, true);
          cache.patch(slot, frame.subarray(data + 2, end)); // the sent version, by what changed: less to copy than the page
          data = end;
          deltas++;
          continue;
        }
      } else {
        misses++;
      }
      dv.setUint32(HEADER + i * 4, p, true);
      frame.set(scratch, data);
      data += PAGE_SIZE;
      cache.store(slot, p, scratch);
    } finally {
      cache.unlock(slot);
    }
  }
  return { frame: frame.subarray(0, data), zero, deltas, misses };
}

function isZeroPage(page: Uint8Array): boolean {
  return isZeroWords(new Int32Array(page.buffer, page.byteOffset, PAGE_SIZE / 4));
}

function isZeroWords(words: Int32Array): boolean {
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  return true;
}

/**
 * Walks a page frame checked whole first: `fn(page, bytes, delta)`, bytes undefined for a zero
 * page, and an XBZRLE delta when `delta`.
 */
export function decodePages(
  frame: Uint8Array, pages: number, fn: (page: number, bytes: Uint8Array | undefined, delta: boolean) => void, deltas = false,
): number {
  const count = checkPageFrame(frame, pages, deltas);
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  let data = HEADER + count * 4;
  for (let i = 0; i < count; i++) {
    const raw = dv.getUint32(HEADER + i * 4, true);
    if (raw & ZERO_PAGE) {
      fn((raw & ~ZERO_PAGE) >>> 0, undefined, false);
      continue;
    }
    if (raw & DELTA_PAGE) {
      const len = dv.getUint16(data, true);
      fn((raw & ~DELTA_PAGE) >>> 0, frame.subarray(data + 2, data + 2 + len), true);
      data += 2 + len;
      continue;
    }
    fn(raw, frame.subarray(data, data + PAGE_SIZE), false);
    data += PAGE_SIZE;
  }
  return count;
}

/** Pages named by a frame, read from its header (the frame has been checked). */
export function pageFrameCount(frame: Uint8Array): number {
  return new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(4, true);
}

/**
 * Writes one page frame into guest memory (destination side, before the guest runs there): page
 * bytes copied in, zero pages cleared if they had been written, every non-zero page marked
 * ever-written, a delta applied to the version there. Runs on the destination VM's own (still
 * idle) vCPU thread, so the first-touch cost of fresh guest RAM is paid beside the thread that
 * receives the stream, not on it.
 */
export function applyPageFrame(ram: Uint8Array, pageState: Int32Array, pages: number, frame: Uint8Array): { pages: number; zero: number } {
  let zero = 0;
  const n = decodePages(frame, pages, (p, data, delta) => {
    const off = p * PAGE_SIZE;
    if (data === undefined) {
      if (Atomics.load(pageState, p) & PAGE_EVER_WRITTEN) ram.fill(0, off, off + PAGE_SIZE);
      zero++;
      return;
    }
    if (delta) applyDelta(ram, off, data);
    else ram.set(data, off);
    if ((Atomics.load(pageState, p) & PAGE_EVER_WRITTEN) === 0) Atomics.or(pageState, p, PAGE_EVER_WRITTEN);
  }, true);
  return { pages: n, zero };
}

/**
 * Post-copy page fill on the destination while the guest runs, from the host thread (a fault's
 * page) or the vCPU thread (pushed frames): a page is written only by the thread that claims it
 * while it is missing, then published as present (the protocol is in post-copy-pages.ts), so a
 * late duplicate is dropped and a present page is never overwritten. Whoever waits for the page
 * is woken by the caller (the vCPU waits on its doorbell). Returns the pages filled.
 */
export function fillMissingPages(ram: Uint8Array, pageState: Int32Array, pages: number, frame: Uint8Array): number[] {
  const filled: number[] = [];
  decodePages(frame, pages, (p, data) => {
    if (!claimMissingPage(pageState, p)) return;
    const off = p * PAGE_SIZE;
    if (data === undefined) ram.fill(0, off, off + PAGE_SIZE);
    else ram.set(data, off);
    publishFilledPage(pageState, p);
    filled.push(p);
  });
  return filled;
}
