// Page deltas (XBZRLE), the shared delta cache, delta page frames and LZ4 frames
// (src/memory/xbzrle.ts, xbzrle-cache.ts, page-frame.ts, page-compression.ts): what the source
// builds, the destination rebuilds byte for byte; what a peer sends is checked whole first, and
// anything malformed is refused with EPROTO before a byte of guest RAM changes.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/memory/layout.ts';
import { compressPageFrame, FRAME_LZ4, inflatePageFrame } from '../../src/memory/page-compression.ts';
import {
  applyPageFrame, checkPageFrame, DELTA_PAGE, encodePages, encodePagesWithDeltas, MAX_FRAME_BYTES, ZERO_PAGE,
} from '../../src/memory/page-frame.ts';
import { applyDelta, checkDelta, encodeDelta, MAX_DELTA_BYTES } from '../../src/memory/xbzrle.ts';
import { XbzrleCache } from '../../src/memory/xbzrle-cache.ts';

const PAGES = 64;
const words = (b: Uint8Array) => new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4);

function eproto(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect((e as { code?: string }).code).toBe('EPROTO');
    return (e as Error).message;
  }
  throw new Error('accepted');
}

describe('XBZRLE deltas', () => {
  it('rebuild the new page from the old for changes of every shape', () => {
    for (let trial = 0; trial < 200; trial++) {
      const old = new Uint8Array(randomBytes(PAGE_SIZE));
      const cur = old.slice();
      const changes = trial % 40;
      for (let k = 0; k < changes; k++) {
        const at = Math.floor(Math.random() * PAGE_SIZE);
        cur.fill(Math.floor(Math.random() * 256), at, Math.min(PAGE_SIZE, at + 1 + Math.floor(Math.random() * 64)));
      }
      const out = new Uint8Array(PAGE_SIZE);
      const end = encodeDelta(words(old), 0, words(cur), 0, out, 0);
      expect(end).toBeGreaterThanOrEqual(0);
      const delta = out.subarray(0, end);
      expect(checkDelta(delta)).toBe(true);
      const page = old.slice();
      applyDelta(page, 0, delta);
      expect(Buffer.from(page).equals(Buffer.from(cur))).toBe(true);
      if (changes === 0) expect(end).toBe(0);
    }
  });

  it('give up on a page that changed too much to be worth a delta', () => {
    const old = new Uint8Array(randomBytes(PAGE_SIZE));
    const cur = new Uint8Array(randomBytes(PAGE_SIZE));
    expect(encodeDelta(words(old), 0, words(cur), 0, new Uint8Array(PAGE_SIZE), 0)).toBe(-1);
  });

  it('from a peer: runs past the page, empty changed runs, truncation and over-long numbers are refused', () => {
    expect(checkDelta(Uint8Array.of(0x80, 0x08, 1, 1, 2, 3, 4))).toBe(false); // 1024 unchanged, then one more word: past the page
    expect(checkDelta(Uint8Array.of(0, 0))).toBe(false); // a changed run of nothing
    expect(checkDelta(Uint8Array.of(0, 2, 1, 2, 3, 4))).toBe(false); // two words announced, one there
    expect(checkDelta(Uint8Array.of(0x80))).toBe(false); // a number cut short
    expect(checkDelta(Uint8Array.of(0x80, 0x80, 0x01, 1, 1, 2, 3, 4))).toBe(false); // three-byte number
    expect(checkDelta(Uint8Array.of(0x80, 0x00, 1, 1, 2, 3, 4))).toBe(false); // not the shortest form
    expect(checkDelta(Uint8Array.of(0xff, 0x07, 1, 1, 2, 3, 4))).toBe(true); // the last word of the page
    expect(checkDelta(new Uint8Array(0))).toBe(true); // unchanged
    expect(MAX_DELTA_BYTES).toBeLessThan(PAGE_SIZE);
  });
});

describe('delta page frames with the cache', () => {
  function ramOf(pages: number): Uint8Array {
    return new Uint8Array(new SharedArrayBuffer(pages * PAGE_SIZE));
  }

  it('the destination, applying each frame in order, holds exactly the source RAM as each frame was built', () => {
    const src = ramOf(PAGES);
    const dst = ramOf(PAGES);
    const state = new Int32Array(PAGES);
    const cache = XbzrleCache.create(48 * PAGE_SIZE); // smaller than the RAM: pages 48-63 share slots with 0-15
    const scratch = new Uint8Array(PAGE_SIZE);
    const all = Uint32Array.from({ length: PAGES }, (_, i) => i);
    src.set(randomBytes(src.length));
    let deltas = 0;
    for (let round = 0; round < 8; round++) {
      for (let k = 0; k < 300; k++) src[Math.floor(Math.random() * src.length)] = Math.floor(Math.random() * 256);
      src.fill(0, 5 * PAGE_SIZE, 6 * PAGE_SIZE - (round % 2) * 8); // page 5 goes zero and back
      const into = Buffer.alloc(MAX_FRAME_BYTES);
      const built = encodePagesWithDeltas(src, all, 0, PAGES, into, cache, scratch);
      deltas += built.deltas;
      expect(checkPageFrame(built.frame, PAGES, true)).toBe(PAGES);
      applyPageFrame(dst, state, PAGES, built.frame);
      expect(Buffer.from(dst).equals(Buffer.from(src))).toBe(true);
    }
    expect(deltas).toBeGreaterThan(0);
  });

  it('a page copied while the guest writes it: the cache keeps the version sent, not the later one', () => {
    const src = ramOf(4);
    const cache = XbzrleCache.create(4 * PAGE_SIZE);
    const scratch = new Uint8Array(PAGE_SIZE);
    src.fill(7);
    encodePagesWithDeltas(src, [1], 0, 1, Buffer.alloc(MAX_FRAME_BYTES), cache, scratch);
    src[PAGE_SIZE + 10] = 99; // after the send
    expect(cache.data[cache.slotOf(1) * PAGE_SIZE + 10]).toBe(7);
  });

  it('a slot another encoder holds: the page goes whole and the slot forgets it', () => {
    const src = ramOf(8);
    src.fill(3);
    const cache = XbzrleCache.create(4 * PAGE_SIZE);
    const scratch = new Uint8Array(PAGE_SIZE);
    encodePagesWithDeltas(src, [1], 0, 1, Buffer.alloc(MAX_FRAME_BYTES), cache, scratch);
    const slot = cache.slotOf(1);
    expect(cache.tryLock(slot)).toBe(true); // another thread, encoding page 5 (same slot)
    const built = encodePagesWithDeltas(src, [1], 0, 1, Buffer.alloc(MAX_FRAME_BYTES), cache, scratch);
    cache.unlock(slot);
    expect(built.deltas).toBe(0);
    expect(built.frame.length).toBe(8 + 4 + PAGE_SIZE);
    expect(cache.holds(slot, 1)).toBe(false);
  });

  it('a delta page is refused where only whole pages may come (post-copy, the priority channel)', () => {
    const frame = Buffer.alloc(8 + 4 + 2);
    frame[0] = 0x50;
    frame.writeUInt32LE(1, 4);
    frame.writeUInt32LE((3 | DELTA_PAGE) >>> 0, 8);
    expect(checkPageFrame(frame, PAGES, true)).toBe(1);
    expect(eproto(() => checkPageFrame(frame, PAGES))).toMatch(/delta page/);
    frame.writeUInt32LE((3 | DELTA_PAGE | ZERO_PAGE) >>> 0, 8);
    expect(eproto(() => checkPageFrame(frame, PAGES, true))).toMatch(/both zero and delta/);
  });

  it('a malformed delta or a delta longer than its frame fails the whole frame before RAM changes', () => {
    const dst = ramOf(PAGES);
    const state = new Int32Array(PAGES);
    const good = Uint8Array.of(0, 1, 9, 9, 9, 9);
    const bad = Uint8Array.of(0x80, 0x08, 1, 1, 2, 3, 4);
    const frame = Buffer.alloc(8 + 8 + 2 + good.length + 2 + bad.length);
    frame[0] = 0x50;
    frame.writeUInt32LE(2, 4);
    frame.writeUInt32LE((1 | DELTA_PAGE) >>> 0, 8);
    frame.writeUInt32LE((2 | DELTA_PAGE) >>> 0, 12);
    frame.writeUInt16LE(good.length, 16);
    frame.set(good, 18);
    frame.writeUInt16LE(bad.length, 18 + good.length);
    frame.set(bad, 20 + good.length);
    expect(eproto(() => applyPageFrame(dst, state, PAGES, frame))).toMatch(/malformed delta for page 2/);
    expect(dst.every((b) => b === 0)).toBe(true);
    frame.writeUInt16LE(500, 18 + good.length);
    expect(eproto(() => checkPageFrame(frame, PAGES, true))).toMatch(/shorter than its page data/);
  });
});

describe('LZ4 page frames', () => {
  it('inflate to the frame compressed', () => {
    const ram = new Uint8Array(PAGES * PAGE_SIZE);
    for (let p = 0; p < PAGES; p++) ram[p * PAGE_SIZE] = p + 1;
    const { frame } = encodePages(ram, Uint32Array.from({ length: PAGES }, (_, i) => i), 0, PAGES);
    const z = compressPageFrame(frame)!;
    expect(z[0]).toBe(FRAME_LZ4);
    expect(z.length).toBeLessThan(frame.length / 20);
    expect(inflatePageFrame(z).equals(frame)).toBe(true);
  });

  it('a frame that would not shrink is not compressed', () => {
    const frame = Buffer.concat([Buffer.from([0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]), randomBytes(PAGE_SIZE)]);
    expect(compressPageFrame(frame)).toBeUndefined();
  });

  it('from a peer: a bad header, a stated size beyond the largest frame, a short or corrupt block are refused without inflating', () => {
    const ram = new Uint8Array(4 * PAGE_SIZE).fill(5);
    const z = compressPageFrame(encodePages(ram, [0, 1, 2, 3], 0, 4).frame)!;
    const bad = (f: (b: Uint8Array) => void) => {
      const b = z.slice();
      f(b);
      return eproto(() => inflatePageFrame(b));
    };
    expect(bad((b) => { b[1] = 1; })).toMatch(/header/);
    expect(bad((b) => new DataView(b.buffer).setUint32(4, 0x7fff_ffff, true))).toMatch(/exceeds the largest page frame/);
    expect(bad((b) => new DataView(b.buffer).setUint32(4, 100_000, true))).toMatch(/inflated to|corrupt/);
    expect(eproto(() => inflatePageFrame(z.subarray(0, z.length - 3)))).toMatch(/corrupt|inflated to/);
    expect(eproto(() => inflatePageFrame(Uint8Array.of(FRAME_LZ4, 0, 0, 0)))).toMatch(/header/);
  });
});
