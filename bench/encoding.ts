/**
 * Page encoding: what the piscina pool buys over encoding on the host thread. Guest-like RAM
 * (64 MiB of pages, one byte of each changed per pass, as memstress does), encoded as pre-copy
 * re-sends it: XBZRLE deltas against a warm cache, then LZ4; inline on this thread, then on the
 * pool (ENCODE_THREADS threads, ENCODE_AHEAD frames in flight as the page sender keeps them).
 * Prints one JSON line per case and the pool ÷ inline ratio measured in the same run.
 *
 *   npx tsx bench/encoding.ts
 */
import { closeEncodePool, ENCODE_THREADS, encodeOnPool, type EncodeResult } from '../src/migration/encode-pool.ts';
import { PAGE_SIZE } from '../src/memory/layout.ts';
import { compressPageFrame } from '../src/memory/page-compression.ts';
import { encodePagesWithDeltas, MAX_FRAME_BYTES, PAGES_PER_FRAME } from '../src/memory/page-frame.ts';
import { XbzrleCache } from '../src/memory/xbzrle-cache.ts';

const PAGES = 16384;
const PASSES = 6;
const ram = new Uint8Array(new SharedArrayBuffer(PAGES * PAGE_SIZE));
for (let p = 0; p < PAGES; p++) ram[p * PAGE_SIZE] = 1;
const pages = Uint32Array.from({ length: PAGES }, (_, i) => i);

function dirtyAll(): void {
  for (let p = 0; p < PAGES; p++) ram[p * PAGE_SIZE] = (ram[p * PAGE_SIZE]! + 1) & 0xff || 1;
}

/**
 * PASSES passes over the RAM, each after dirtying every page, each encoding all of it with
 * `encodeAll` against one cache (returning the bytes it built); MB/s of page bytes taken in, for
 * the best pass after the first (which fills the cache).
 */
async function measure(name: string, encodeAll: (cache: XbzrleCache) => Promise<number> | number): Promise<number> {
  const cache = XbzrleCache.create(PAGES * PAGE_SIZE);
  const times: number[] = [];
  let wire = 0;
  for (let pass = 0; pass < PASSES; pass++) {
    dirtyAll();
    const t0 = performance.now();
    wire = await encodeAll(cache);
    times.push(performance.now() - t0);
  }
  const best = Math.min(...times.slice(1));
  const mbs = (PAGES * PAGE_SIZE) / best / 1000;
  process.stdout.write(`${JSON.stringify({ name, unit: 'MB/s', value: Math.round(mbs), passMs: Math.round(best * 100) / 100, wireBytesPerPass: wire })}\n`);
  return mbs;
}

/** On this thread, frame after frame. */
function inline(compress: boolean): Promise<number> {
  const into = Buffer.alloc(MAX_FRAME_BYTES);
  const scratch = new Uint8Array(PAGE_SIZE);
  return measure(`inline.xbzrle${compress ? '+lz4' : ''}`, (cache) => {
    let wire = 0;
    for (let i = 0; i < PAGES; i += PAGES_PER_FRAME) {
      const { frame } = encodePagesWithDeltas(ram, pages, i, i + PAGES_PER_FRAME, into, cache, scratch);
      wire += compress ? (compressPageFrame(frame)?.length ?? frame.length) : frame.length;
    }
    return wire;
  });
}

/** On the pool, two frames a thread in flight, as the page sender keeps them. */
function pooled(compress: boolean): Promise<number> {
  return measure(`pool.xbzrle${compress ? '+lz4' : ''}`, async (cache) => {
    let wire = 0;
    const ahead: Promise<EncodeResult>[] = [];
    for (let i = 0; i < PAGES || ahead.length > 0;) {
      if (i < PAGES && ahead.length < ENCODE_THREADS * 2) {
        ahead.push(encodeOnPool({ ram: ram.buffer as SharedArrayBuffer, ramBytes: ram.length, pages: pages.slice(i, i + PAGES_PER_FRAME), compress, cache: cache.buffers }));
        i += PAGES_PER_FRAME;
        continue;
      }
      wire += (await ahead.shift()!).frame.length;
    }
    return wire;
  });
}

for (const compress of [false, true]) {
  const a = await inline(compress);
  const b = await pooled(compress);
  process.stdout.write(`${JSON.stringify({ name: `pool-vs-inline.xbzrle${compress ? '+lz4' : ''}`, unit: 'ratio', value: Math.round((b / a) * 100) / 100, threads: ENCODE_THREADS })}\n`);
}
await closeEncodePool();
