/** Page frames for the migration stream, well-formed and corrupt in every way the format allows. */
import type { Rng } from '../rng.ts';
import { concat } from '../msgpack.ts';
import { compressPageFrame, FRAME_LZ4 } from '../../src/memory/page-compression.ts';
import { DELTA_PAGE } from '../../src/memory/page-frame.ts';
import { idlePage, PAGE_SIZE, pageFrame, pageFrameRaw, ZERO_PAGE } from '../wire.ts';

export const FRAME_CORRUPTIONS = [
  'count-more', 'count-less', 'beyond-ram', 'short-header', 'short-data', 'trailing', 'zero-with-data', 'huge-count',
  'flags', 'duplicates', 'empty', 'oversized', 'numbers-only', 'zero-beyond-ram',
  // Pre-copy's encoded frames (XBZRLE delta pages, LZ4 frames); in post-copy even good ones are refused.
  'delta-overrun', 'delta-garbage', 'delta-truncated', 'delta-and-zero', 'lz4-huge-size', 'lz4-lying-size', 'lz4-garbage', 'lz4-corrupt-inner',
] as const;
export type FrameCorruption = (typeof FRAME_CORRUPTIONS)[number];

function somePage(rng: Rng): Uint8Array {
  return rng.chance(0.5) ? idlePage() : rng.bytes(PAGE_SIZE);
}

/** A valid frame of 1..n pages inside RAM (data or zero pages). */
export function validFrame(rng: Rng, pages: number): Uint8Array {
  const n = rng.range(1, Math.min(8, pages));
  const specs = [];
  for (let i = 0; i < n; i++) {
    const page = rng.int(pages);
    specs.push(rng.chance(0.3) ? { page } : { page, data: somePage(rng) });
  }
  return pageFrame(specs);
}

/** A frame of one delta page: flag, then u16 `statedLength` and `delta`. */
function deltaFrame(page: number, delta: Uint8Array, statedLength = delta.length, flags = DELTA_PAGE): Uint8Array {
  const out = new Uint8Array(8 + 4 + 2 + delta.length);
  const dv = new DataView(out.buffer);
  out[0] = 0x50;
  dv.setUint32(4, 1, true);
  dv.setUint32(8, (page | flags) >>> 0, true);
  dv.setUint16(12, statedLength & 0xffff, true);
  out.set(delta, 14);
  return out;
}

/** `inner` as an LZ4 frame, its stated length moved by `lie`. */
function lz4Frame(inner: Uint8Array, lie = 0): Uint8Array {
  const z = compressPageFrame(inner) ?? Uint8Array.of(FRAME_LZ4, 0, 0, 0, 0, 0, 0, 0);
  const dv = new DataView(z.buffer, z.byteOffset, z.byteLength);
  dv.setUint32(4, (dv.getUint32(4, true) + lie) >>> 0, true);
  return z;
}

/** A frame broken as `kind` says, for a VM of `pages` pages. */
export function corruptFrame(rng: Rng, pages: number, kind: FrameCorruption = rng.pick(FRAME_CORRUPTIONS)): Uint8Array {
  const inRam = () => rng.int(pages);
  const beyond = () => rng.pick([pages, pages + 1, pages + rng.int(1 << 20), 0x7fff_ffff, 0x7fff_fffe, 1 << 30]);
  switch (kind) {
    case 'count-more': {
      const n = rng.range(1, 4);
      const nums = Array.from({ length: n }, inRam);
      return pageFrameRaw(n + rng.range(1, 1000), nums, concat(nums.map(() => somePage(rng))));
    }
    case 'count-less': {
      const n = rng.range(2, 5);
      const nums = Array.from({ length: n }, inRam);
      return pageFrameRaw(n - rng.range(1, n), nums, concat(nums.map(() => somePage(rng))));
    }
    case 'beyond-ram':
      return pageFrame([{ page: beyond(), data: somePage(rng) }, ...(rng.chance(0.5) ? [{ page: inRam(), data: somePage(rng) }] : [])]);
    case 'zero-beyond-ram':
      return pageFrame([{ page: beyond() & 0x7fff_ffff }]);
    case 'short-header':
      return Uint8Array.from([0x50, ...rng.bytes(rng.int(7))]);
    case 'short-data': {
      const full = pageFrame([{ page: inRam(), data: somePage(rng) }]);
      return full.subarray(0, full.length - rng.range(1, PAGE_SIZE));
    }
    case 'trailing':
      return concat([validFrame(rng, pages), rng.bytes(rng.range(1, 4096))]);
    case 'zero-with-data':
      return pageFrameRaw(1, [(inRam() | ZERO_PAGE) >>> 0], somePage(rng));
    case 'huge-count':
      return pageFrameRaw(rng.pick([0xffff_ffff, 0x4000_0000, 0x4000_0001, 0x1000_0000]), [inRam(), inRam()], rng.bytes(16));
    case 'flags':
      return pageFrameRaw(1, [inRam()], somePage(rng), rng.range(1, 255), rng.range(1, 0xffff));
    case 'duplicates': {
      const p = inRam();
      const n = rng.range(2, 64);
      return pageFrame(Array.from({ length: n }, () => (rng.chance(0.5) ? { page: p } : { page: p, data: somePage(rng) })));
    }
    case 'empty':
      return pageFrameRaw(0, [], new Uint8Array(0));
    case 'oversized': {
      // More pages than a frame may carry (256), towards the endpoint's payload limit.
      const n = rng.pick([257, 300, 520]);
      return pageFrameRaw(n, Array.from({ length: n }, inRam), new Uint8Array(n * PAGE_SIZE));
    }
    case 'numbers-only':
      return pageFrameRaw(rng.range(1, 64), Array.from({ length: rng.range(1, 64) }, () => rng.u32()), new Uint8Array(0));
    case 'delta-overrun': // 1024 words unchanged, then one more changed: past the page
      return deltaFrame(inRam(), Uint8Array.of(0x80, 0x08, 1, 1, 2, 3, 4));
    case 'delta-garbage':
      return deltaFrame(inRam(), rng.bytes(rng.range(1, 64)));
    case 'delta-truncated':
      return deltaFrame(inRam(), Uint8Array.of(0, 2, 1, 2, 3, 4), 6 + rng.range(1, 4000));
    case 'delta-and-zero':
      return deltaFrame(inRam(), Uint8Array.of(0, 1, 9, 9, 9, 9), 6, DELTA_PAGE | ZERO_PAGE);
    case 'lz4-huge-size':
      return Uint8Array.of(FRAME_LZ4, 0, 0, 0, 0xff, 0xff, 0xff, rng.pick([0x7f, 0xff, 0x10]), ...rng.bytes(rng.range(1, 64)));
    case 'lz4-lying-size':
      return lz4Frame(pageFrame([{ page: inRam(), data: idlePage() }]), rng.pick([-1, 1, 4096, -4000, 100_000]));
    case 'lz4-garbage':
      return concat([Uint8Array.of(FRAME_LZ4, 0, 0, 0), new Uint8Array(new Uint32Array([rng.range(1, 1 << 20)]).buffer), rng.bytes(rng.range(1, 4096))]);
    case 'lz4-corrupt-inner':
      return lz4Frame(corruptFrame(rng, pages, rng.pick(['beyond-ram', 'trailing', 'duplicates', 'delta-overrun', 'zero-with-data'] as const)));
  }
}
