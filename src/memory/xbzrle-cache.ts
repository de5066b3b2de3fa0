/**
 * The source's XBZRLE cache: the version of each page last sent, for the page's next delta. It is
 * shared by the encoding threads (migration/encode-pool.ts), direct-mapped (page p lives in slot
 * p mod slots), and each slot has a lock taken with Atomics.compareExchange and given back with
 * Atomics.store: the lock is what orders one thread's plain writes to a slot's bytes before
 * another thread's reads of them (docs/shared-memory.md). A thread that finds a slot locked (two
 * pages of one slot encoded at once) sends its page whole and leaves the slot alone.
 */
import { PAGE_SIZE } from './layout.ts';
import { applyDelta } from './xbzrle.ts';

/** What crosses to an encoding thread: the slots' bytes, and per slot [page + 1 or 0, lock]. */
export interface XbzrleCacheBuffers {
  data: SharedArrayBuffer;
  tags: SharedArrayBuffer;
}

export class XbzrleCache {
  readonly slots: number;
  readonly data: Uint8Array;
  readonly data32: Int32Array;
  private readonly tags: Int32Array;

  constructor(readonly buffers: XbzrleCacheBuffers) {
    this.data = new Uint8Array(buffers.data);
    this.data32 = new Int32Array(buffers.data);
    this.tags = new Int32Array(buffers.tags);
    this.slots = this.data.length / PAGE_SIZE;
  }

  /** A cache of `bytes` (rounded down to whole pages, at least one). */
  static create(bytes: number): XbzrleCache {
    const slots = Math.max(1, Math.floor(bytes / PAGE_SIZE));
    return new XbzrleCache({ data: new SharedArrayBuffer(slots * PAGE_SIZE), tags: new SharedArrayBuffer(slots * 8) });
  }

  slotOf(page: number): number {
    return page % this.slots;
  }

  /** Takes the slot's lock; false if another thread holds it. */
  tryLock(slot: number): boolean {
    return Atomics.compareExchange(this.tags, slot * 2 + 1, 0, 1) === 0;
  }

  unlock(slot: number): void {
    Atomics.store(this.tags, slot * 2 + 1, 0);
  }

  /** Under the slot's lock: whether the slot holds `page`. */
  holds(slot: number, page: number): boolean {
    return Atomics.load(this.tags, slot * 2) === page + 1;
  }

  /** Under the slot's lock: the slot now holds `bytes` as `page`'s last version sent. */
  store(slot: number, page: number, bytes: Uint8Array): void {
    this.data.set(bytes, slot * PAGE_SIZE);
    Atomics.store(this.tags, slot * 2, page + 1);
  }

  /** Under the slot's lock: the slot's page changed by `delta` (xbzrle.ts), as it was sent. */
  patch(slot: number, delta: Uint8Array): void {
    applyDelta(this.data, slot * PAGE_SIZE, delta);
  }

  /** `page` was sent as something the cache does not hold (a zero page): no delta against it. Needs no lock. */
  forget(page: number): void {
    Atomics.compareExchange(this.tags, this.slotOf(page) * 2, page + 1, 0);
  }
}
