/**
 * An encoding thread of the page pool (encode-pool.ts): builds one pre-copy page frame from guest
 * RAM (shared), with XBZRLE deltas against the shared cache and/or LZ4, and hands it back
 * transferred, not copied.
 */
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { PAGE_SIZE } from '../memory/layout.ts';
import { compressPageFrame } from '../memory/page-compression.ts';
import { encodePages, encodePagesWithDeltas, MAX_FRAME_BYTES, type DeltaFrame } from '../memory/page-frame.ts';
import { XbzrleCache } from '../memory/xbzrle-cache.ts';
import type { EncodeResult, EncodeTask } from './encode-pool.ts';

const frameBuf = Buffer.alloc(MAX_FRAME_BYTES);
const scratch = new Uint8Array(PAGE_SIZE);
const rams = new WeakMap<SharedArrayBuffer, Uint8Array>();
const caches = new WeakMap<SharedArrayBuffer, XbzrleCache>();

export default function encode(task: EncodeTask): unknown {
  const t0 = performance.now();
  let ram = rams.get(task.ram);
  if (!ram) rams.set(task.ram, (ram = new Uint8Array(task.ram, 0, task.ramBytes)));
  let built: DeltaFrame;
  if (task.cache) {
    let cache = caches.get(task.cache.data);
    if (!cache) caches.set(task.cache.data, (cache = new XbzrleCache(task.cache)));
    built = encodePagesWithDeltas(ram, task.pages, 0, task.pages.length, frameBuf, cache, scratch);
  } else {
    const { frame, zero } = encodePages(ram, task.pages, 0, task.pages.length, frameBuf);
    built = { frame, zero, deltas: 0, misses: 0 };
  }
  const compressed = task.compress ? compressPageFrame(built.frame) : undefined;
  const frame = compressed ?? new Uint8Array(built.frame); // a copy of its own: frameBuf is reused
  const result: EncodeResult = {
    frame, pages: task.pages.length, zero: built.zero, deltas: built.deltas, misses: built.misses, innerBytes: built.frame.length, ms: performance.now() - t0,
  };
  return move({
    get [transferableSymbol]() { return [frame.buffer]; },
    get [valueSymbol]() { return result; },
  });
}
