/**
 * The post-copy push queue (source side), kept across link losses: every page the destination
 * lacked at the switch-over goes out exactly once, in order from a cursor that each fault moves
 * to the faulted page (so its neighbourhood follows it), in chunks that grow while no fault
 * comes and shrink on one (CRIU's lazy-pages policy). After a recovery the destination's
 * received-page bitmap says which pages to send again.
 */

import { PushWindow } from './push-window.ts';

const MIN_CHUNK = 16;
/** 256 KiB at most: faults interleave with the push. */
const MAX_CHUNK = 64;

export class PushQueue {
  /** Pages handed to a socket (reset from the destination's bitmap after a recovery). */
  private readonly sent: Uint8Array;
  private cursor = 0;
  private chunkPages = MIN_CHUNK;
  /** Pages not sent yet. */
  left: number;
  /** The background push waits until then (pushDelayMs). */
  notBefore = 0;
  /** How far the push may run ahead of the destination on this link. */
  window: PushWindow;

  /**
   * `order`: the pages the destination lacks, in push order; `indexOf`: each page's position in
   * it, -1 for the others.
   */
  /** One byte per page, non-zero once handed to a socket (read by the page map). */
  get sentPages(): Uint8Array {
    return this.sent;
  }

  /** `linkRttMs`: the current link's round trip (its pings), for the push window. */
  constructor(readonly order: Uint32Array, private readonly indexOf: Int32Array, pages: number, linkRttMs?: () => number | undefined) {
    this.window = new PushWindow(linkRttMs);
    this.sent = new Uint8Array(pages);
    this.left = order.length;
  }

  /**
   * The next chunk of unsent pages from the cursor on, wrapping around (marked sent), of at most
   * `maxPages`; empty when all went.
   */
  nextChunk(maxPages = MAX_CHUNK): number[] {
    const chunk: number[] = [];
    const { order, sent } = this;
    const size = Math.max(1, Math.min(maxPages, this.chunkPages));
    for (let k = 0; k < order.length && chunk.length < size; k++) {
      const p = order[(this.cursor + k) % order.length]!;
      if (sent[p]) continue;
      sent[p] = 1;
      chunk.push(p);
    }
    if (chunk.length === 0) return chunk;
    this.cursor = (this.indexOf[chunk[chunk.length - 1]!]! + 1) % order.length;
    this.left -= chunk.length;
    this.chunkPages = Math.min(MAX_CHUNK, this.chunkPages * 2);
    return chunk;
  }

  /**
   * A fault on `page`: true when it has not gone out yet (the caller sends it now; it is marked
   * sent), and the scan moves there in small chunks until faults stop. False when it is already
   * on its way (or not part of the push).
   */
  fault(page: number): boolean {
    if (this.sent[page]) return false;
    if (this.indexOf[page]! >= 0) this.cursor = this.indexOf[page]!;
    this.chunkPages = MIN_CHUNK;
    this.sent[page] = 1;
    this.left--;
    return true;
  }

  /**
   * A new link after a recovery: pages whose bit is set in `received` are there; every other
   * page of the push goes out (again, if it was sent before and lost). Returns how many of those
   * had been sent already. The destination counts acknowledged bytes per link.
   */
  resync(received: Uint8Array, linkRttMs?: () => number | undefined): number {
    let left = 0;
    let resent = 0;
    for (let i = 0; i < this.order.length; i++) {
      const p = this.order[i]!;
      if (received[p >>> 3]! & (1 << (p & 7))) {
        this.sent[p] = 1;
        continue;
      }
      if (this.sent[p]) resent++;
      this.sent[p] = 0;
      left++;
    }
    this.left = left;
    this.window = new PushWindow(linkRttMs);
    return resent;
  }
}
