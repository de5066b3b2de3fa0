import { FerryError } from '../errors.ts';
import { MAX_RAM_SIZE, MIN_RAM_SIZE, PAGE_EVER_WRITTEN, PAGE_PRESENT, PAGE_SHIFT, PAGE_SIZE } from './layout.ts';

/** The shared buffers behind one VM's memory; plain data, so it can go to a worker. */
export interface GuestMemoryBuffers {
  ram: SharedArrayBuffer;
  /** One Int32 per page: PRESENT | EVER_WRITTEN | REQUESTED. */
  pageState: SharedArrayBuffer;
  /** Two dirty logs of one byte per page, back to back. */
  dirty: SharedArrayBuffer;
  /** Int32 words of the dirty-log handshake: DIRTY_ACTIVE, DIRTY_REQ, DIRTY_ACK, then FIRST_WRITES. */
  dirtyCtl: SharedArrayBuffer;
  /** A ring of FIRST_WRITE_RING page numbers: each page as it becomes ever-written (see FIRST_WRITES). */
  firstWrites: SharedArrayBuffer;
}

/** Which dirty log the vCPU writes into (0 or 1); switched only by the vCPU. */
export const DIRTY_ACTIVE = 0;
/** Sync requests raised by the host (a counter). */
export const DIRTY_REQ = 1;
/** The last request the vCPU has switched logs for. */
export const DIRTY_ACK = 2;
/**
 * Pages that became ever-written so far (a counter); page number i of them is at
 * firstWrites[i % FIRST_WRITE_RING]. Written by whichever thread writes a page first, after it
 * set EVER_WRITTEN with Atomics.or; read by the host with the vCPU stopped, so "which pages
 * were first written since then" costs what was written, not a scan of every page state.
 */
export const FIRST_WRITES = 3;
export const FIRST_WRITE_RING = 65536;

/**
 * Guest RAM plus its page-state map and the double-buffered dirty log (DESIGN §3).
 * The same object shape is built on the host thread and inside the vCPU worker over the same buffers.
 */
export class GuestMemory {
  readonly size: number;
  readonly pages: number;
  readonly ram: Uint8Array;
  readonly pageState: Int32Array;
  readonly dirtyLogs: readonly [Uint8Array, Uint8Array];
  readonly dirtyCtl: Int32Array;
  readonly firstWrites: Uint32Array;

  constructor(readonly buffers: GuestMemoryBuffers) {
    this.size = buffers.ram.byteLength;
    this.pages = this.size >>> PAGE_SHIFT;
    // Fixed-length views: the buffers are growable (see sharedZeroed) but never grow.
    this.ram = new Uint8Array(buffers.ram, 0, this.size);
    this.pageState = new Int32Array(buffers.pageState, 0, this.pages);
    this.dirtyLogs = [
      new Uint8Array(buffers.dirty, 0, this.pages),
      new Uint8Array(buffers.dirty, logStride(this.pages), this.pages),
    ];
    this.dirtyCtl = new Int32Array(buffers.dirtyCtl);
    this.firstWrites = new Uint32Array(buffers.firstWrites, 0, FIRST_WRITE_RING);
  }

  /** Sets EVER_WRITTEN on a page; the first time, the page joins the first-write ring. */
  markEverWritten(page: number): void {
    if ((Atomics.or(this.pageState, page, PAGE_EVER_WRITTEN) & PAGE_EVER_WRITTEN) !== 0) return;
    const i = Atomics.add(this.dirtyCtl, FIRST_WRITES, 1);
    Atomics.store(this.firstWrites, i % FIRST_WRITE_RING, page);
  }

  /** How many pages have become ever-written so far (a position in the first-write ring). */
  firstWriteCount(): number {
    return Atomics.load(this.dirtyCtl, FIRST_WRITES);
  }

  /**
   * The pages first written since `since` (a firstWriteCount), or undefined if the ring has
   * wrapped since. Call with the vCPU stopped (or accept a list that may miss the last ones).
   */
  firstWritesSince(since: number): Uint32Array | undefined {
    const n = this.firstWriteCount() - since;
    if (n < 0 || n > FIRST_WRITE_RING) return undefined;
    const out = new Uint32Array(n);
    for (let k = 0; k < n; k++) out[k] = Atomics.load(this.firstWrites, (since + k) % FIRST_WRITE_RING);
    return out;
  }

  /** Fresh, zeroed RAM whose pages are all present (a VM booted here, not migrated in). */
  static allocate(size: number): GuestMemory {
    checkRamSize(size);
    const pages = size / PAGE_SIZE;
    const mem = new GuestMemory({
      ram: sharedZeroed(size),
      pageState: sharedZeroed(pages * 4),
      dirty: sharedZeroed(logStride(pages) * 2),
      dirtyCtl: new SharedArrayBuffer(16),
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
    const log = this.dirtyLogs[Atomics.load(this.dirtyCtl, DIRTY_ACTIVE) & 1]!;
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

/** Each dirty log starts on an 8-byte boundary so it can be scanned by words. */
function logStride(pages: number): number {
  return Math.ceil(pages / 8) * 8;
}

export function checkRamSize(size: number): void {
  if (!Number.isInteger(size) || size < MIN_RAM_SIZE || size > MAX_RAM_SIZE || size % PAGE_SIZE !== 0) {
    throw new FerryError(
      'EINVAL',
      `RAM size ${size} must be a multiple of 4 KiB between ${MIN_RAM_SIZE / 1048576} MiB and ${MAX_RAM_SIZE / 1073741824} GiB`,
    );
  }
}

/**
 * Host side of a dirty-log sync, after the vCPU acknowledged the switch: collects the pages of
 * the log it just left and clears that log for the next switch.
 */
export function harvestDirty(mem: GuestMemory): Uint32Array {
  return harvestLog(mem, (Atomics.load(mem.dirtyCtl, DIRTY_ACTIVE) & 1) ^ 1);
}

/**
 * Takes and clears both logs at once. Only while no vCPU runs (paused or halted): then nobody
 * writes either log and no switch is needed.
 */
export function harvestBothLogsStopped(mem: GuestMemory): Uint32Array {
  const a = harvestLog(mem, 0);
  const b = harvestLog(mem, 1);
  if (b.length === 0) return a;
  if (a.length === 0) return b;
  const both = new Uint32Array(a.length + b.length);
  both.set(a);
  both.set(b, a.length);
  both.sort();
  let n = 0;
  for (let i = 0; i < both.length; i++) if (i === 0 || both[i] !== both[i - 1]) both[n++] = both[i]!;
  return both.slice(0, n);
}

/**
 * Like harvestBothLogsStopped, but returns only the dirty pages whose bit in `known` is clear
 * (a post-copy switch-over wants the pages outside its advice): when nearly every page is dirty
 * the cost is one pass over the logs, with no list of them all.
 */
export function harvestBothLogsStoppedExcept(mem: GuestMemory, known: Uint8Array): number[] {
  const out: number[] = [];
  const [a, b] = mem.dirtyLogs;
  const wordsA = new Float64Array(a.buffer, a.byteOffset, logStride(mem.pages) >>> 3);
  const wordsB = new Float64Array(b.buffer, b.byteOffset, logStride(mem.pages) >>> 3);
  for (let w = 0; w < wordsA.length; w++) {
    if (wordsA[w] === 0 && wordsB[w] === 0) continue;
    const k = known[w]!; // eight pages per log word, eight pages per bitmap byte
    if (k !== 0xff) {
      for (let bit = 0; bit < 8; bit++) {
        const p = w * 8 + bit;
        if ((a[p]! | b[p]!) !== 0 && (k & (1 << bit)) === 0) out.push(p);
      }
    }
    wordsA[w] = 0;
    wordsB[w] = 0;
  }
  return out;
}

function harvestLog(mem: GuestMemory, index: number): Uint32Array {
  const log = mem.dirtyLogs[index]!;
  // Scan eight pages at a time; a log is mostly zeros. Log bytes are 0 or 1, so a nonzero
  // group never reads as a float64 zero (that would need a 0x80 byte for -0).
  const words = new Float64Array(log.buffer, log.byteOffset, logStride(mem.pages) >>> 3);
  let out = new Uint32Array(256);
  let n = 0;
  for (let w = 0; w < words.length; w++) {
    if (words[w] === 0) continue;
    for (let p = w * 8; p < w * 8 + 8; p++) {
      if (log[p] === 0) continue;
      if (n === out.length) {
        const bigger = new Uint32Array(out.length * 4);
        bigger.set(out);
        out = bigger;
      }
      out[n++] = p;
    }
    words[w] = 0;
  }
  return out.slice(0, n);
}
