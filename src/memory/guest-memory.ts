import { fmtBytes } from '../units.ts';
import { FerryError } from '../errors.ts';
import { DIRTY_CTL_BYTES, DirtyLog, FIRST_WRITE_RING, logStride } from './dirty-log.ts';
import { MAX_RAM_SIZE, MIN_RAM_SIZE, PAGE_EVER_WRITTEN, PAGE_PRESENT, PAGE_SHIFT, PAGE_SIZE } from './layout.ts';

/** The shared buffers behind one VM's memory; plain data, so it can go to a worker. */
export interface GuestMemoryBuffers {
  ram: SharedArrayBuffer;
  /** One Int32 per page: PRESENT | EVER_WRITTEN | REQUESTED | FILLING (layout.ts; post-copy-pages.ts). */
  pageState: SharedArrayBuffer;
  /** Two dirty logs of one byte per page, back to back. */
  dirty: SharedArrayBuffer;
  /** Int32 words of the dirty-log handshake and the first-write ring's head (see dirty-log.ts). */
  dirtyCtl: SharedArrayBuffer;
  /** A ring of page numbers: each page as it becomes ever-written (see dirty-log.ts). */
  firstWrites: SharedArrayBuffer;
}

/**
 * Guest RAM plus its page-state map and the double-buffered dirty log (DESIGN §3).
 * The same object shape is built on the host thread and inside the vCPU worker over the same buffers.
 */
export class GuestMemory {
  readonly size: number;
  readonly pages: number;
  readonly ram: Uint8Array;
  readonly pageState: Int32Array;
  /** The dirty log's handshake (DESIGN §3) and the first-write ring. */
  readonly dirtyLog: DirtyLog;
  /** The two dirty logs (the CPU marks the active one). */
  readonly dirtyLogs: readonly [Uint8Array, Uint8Array];

  constructor(readonly buffers: GuestMemoryBuffers) {
    this.size = buffers.ram.byteLength;
    this.pages = this.size >>> PAGE_SHIFT;
    // Fixed-length views: the buffers are growable (see sharedZeroed) but never grow.
    this.ram = new Uint8Array(buffers.ram, 0, this.size);
    this.pageState = new Int32Array(buffers.pageState, 0, this.pages);
    this.dirtyLog = new DirtyLog(buffers.dirty, buffers.dirtyCtl, buffers.firstWrites, this.pages);
    this.dirtyLogs = this.dirtyLog.logs;
  }

  /** Sets EVER_WRITTEN on a page; the first time, the page joins the first-write ring. */
  markEverWritten(page: number): void {
    if ((Atomics.or(this.pageState, page, PAGE_EVER_WRITTEN) & PAGE_EVER_WRITTEN) !== 0) return;
    this.dirtyLog.recordFirstWrite(page);
  }

  /** How many pages have become ever-written so far (a position in the first-write ring). */
  firstWriteCount(): number {
    return this.dirtyLog.firstWriteCount();
  }

  /**
   * The pages first written since `since` (a firstWriteCount), or undefined if the ring has
   * wrapped since. Call with the vCPU stopped (or accept a list that may miss the last ones).
   */
  firstWritesSince(since: number): Uint32Array | undefined {
    return this.dirtyLog.firstWritesSince(since);
  }

  /** Fresh, zeroed RAM whose pages are all present (a VM booted here, not migrated in). */
  static allocate(size: number): GuestMemory {
    checkRamSize(size);
    const pages = size / PAGE_SIZE;
    const mem = new GuestMemory({
      ram: sharedZeroed(size),
      pageState: sharedZeroed(pages * 4),
      dirty: sharedZeroed(logStride(pages) * 2),
      dirtyCtl: new SharedArrayBuffer(DIRTY_CTL_BYTES),
      firstWrites: sharedZeroed(FIRST_WRITE_RING * 4),
    });
    mem.pageState.fill(PAGE_PRESENT);
    return mem;
  }

  /**
   * Host-side write into guest RAM (loader, and later migration fills). Every write marks
   * the page ever-written and dirty in the active log, like a vCPU write.
   */
  hostWrite(offset: number, bytes: Uint8Array): void {
    if (offset < 0 || offset + bytes.length > this.size) {
      throw new FerryError('EFAULT', `host write of ${bytes.length} bytes at RAM offset ${offset} is outside RAM`);
    }
    this.ram.set(bytes, offset);
    const first = offset >>> PAGE_SHIFT;
    const last = (offset + Math.max(bytes.length, 1) - 1) >>> PAGE_SHIFT;
    // If the vCPU switches logs right after this load, the mark lands in the log the host
    // harvests next; harvesting runs on this same thread, so it cannot be missed.
    const log = this.dirtyLog.activeLog();
    for (let p = first; p <= last; p++) {
      this.markEverWritten(p);
      log[p] = 1;
    }
  }

  everWritten(page: number): boolean {
    return (Atomics.load(this.pageState, page) & PAGE_EVER_WRITTEN) !== 0;
  }
}

/**
 * A zeroed shared buffer backed by pages the OS maps lazily and takes back when the buffer is
 * collected. A growable SharedArrayBuffer is reserved and committed by V8's page allocator, not
 * malloc: a plain one of a few MiB comes from the malloc heap once glibc's dynamic mmap threshold
 * has risen (it does after the first large buffer is freed), is zeroed in full there (resident at
 * once) and stays in the heap after its VM is gone (measured: 300 aborted 16 MiB migrations,
 * 860 MiB resident against 200 MiB this way). It never grows; views over it have a fixed length.
 */
export function sharedZeroed(bytes: number): SharedArrayBuffer {
  return new SharedArrayBuffer(bytes, { maxByteLength: bytes });
}

export function checkRamSize(size: number): void {
  if (!Number.isInteger(size) || size < MIN_RAM_SIZE || size > MAX_RAM_SIZE || size % PAGE_SIZE !== 0) {
    throw new FerryError(
      'EINVAL',
      `RAM size ${Number.isInteger(size) && size % PAGE_SIZE === 0 ? fmtBytes(size) : `${size} bytes`} must be a multiple of 4 KiB between ${fmtBytes(MIN_RAM_SIZE)} and ${fmtBytes(MAX_RAM_SIZE)}`,
    );
  }
}
