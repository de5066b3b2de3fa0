/**
 * The migration stream between two hosts (`/migrate`), sectioned like QEMU's:
 *
 *   source (client)                                   destination (host)
 *   bulk:  hello {v, role:'bulk', id, mac} ------->   (same hello/ready + HMAC as /control)
 *          setup {vm, config, ram, isa, devices} ->   compatibility check; reserves the name,
 *                                           <-----    setup-ok | refused {code, message}   (nothing changed yet)
 *   prio:  hello {v, role:'prio', id, mac} ------->   the priority channel joins migration `id`
 *   bulk:  PAGES frames (binary, see below) ------>   copied straight into guest RAM
 *          round-end {round} ------------------>
 *                                           <-----    round-ack {round, pages}      (paces rounds, measures bandwidth)
 *          ... more rounds ...
 *          state {vm state, run} -------------->   device + CPU section, after the last pages
 *                                           <-----    completed {resumedAt}          VM runs on the destination
 *   prio:  cancel {reason} -------------------->   destination discards its half
 *
 * Post-copy (DESIGN §5), hybrid after its pre-copy rounds:
 *
 *   bulk:  postcopy-advise {missing bitmap} --->   page states prepared, queued frames written
 *                                           <-----    advise-ok                      (the source pauses only now)
 *          state {..., postcopy {late pages}} ->   late pages join the missing set; the vCPU resumes
 *                                           <-----    resumed                        (downtime ends)
 *   prio:                                   <-----    page-req {page}                for each fault
 *          page frame ------------------------->   written, PRESENT stored, the vCPU woken
 *   bulk:  pushed page frames ----------------->   written between polls (faults first)
 *   prio:                                   <-----    pushed {bytes}                 paces the push window
 *   bulk:  postcopy-done ---------------------->
 *                                           <-----    completed                      every page is there
 * If the link drops in post-copy both sides keep their state (postcopy-paused) and the source
 * reconnects with the same id:
 *
 *   bulk:  hello {role:'bulk', id, recover:true} ->
 *          recover ---------------------------->   the paused migration takes the new link
 *                                           <-----    recv-bitmap {received} | completed | failed
 *   prio:  hello {role:'prio', id} ------------->   outstanding faults are asked again
 *          ... the push goes on with the pages the bitmap does not have ...
 *
 * Control messages are msgpack maps with a string `t`. Page frames are raw binary so page bytes
 * are never copied through the encoder:
 *
 *   u8 FRAME_PAGES | u8 0 | u16 0 | u32 count | u32 page[count] | 4096 bytes per non-zero page
 *
 * A page number with ZERO_PAGE set carries no bytes: the destination page is zero.
 */
import { Packr } from 'msgpackr';
import { FerryError } from '../errors.ts';
import { PAGE_EVER_WRITTEN as PAGE_EVER_WRITTEN_BIT, PAGE_FILLING, PAGE_PRESENT as PAGE_PRESENT_BIT, PAGE_SIZE } from '../memory/layout.ts';
import type { MachineConfig } from '../vm/machine.ts';
import type { VmStateExport } from '../vm/vm.ts';

export const MIGRATION_PROTOCOL_VERSION = 1;
export const ISA = 'rv32im_zicsr';
export const DEVICES = ['uart16550@0x10000000', 'clint@0x2000000', 'test-finisher@0x100000'];
export const FRAME_PAGES = 0x50;
export const ZERO_PAGE = 0x8000_0000;
export const PAGES_PER_FRAME = 256;
const HEADER = 8;
/** The largest page frame: PAGES_PER_FRAME pages with data. */
export const MAX_FRAME_BYTES = HEADER + PAGES_PER_FRAME * (4 + PAGE_SIZE);
/** A page frame at most: header, numbers, data. */
export const MIGRATION_MAX_PAYLOAD = HEADER + PAGES_PER_FRAME * (4 + PAGE_SIZE) + 1024 * 1024;

export type RunState = 'running' | 'paused' | 'created' | 'halted';

/**
 * Post-copy liveness: the source pings its priority channel this often, and either side takes
 * a link that has said nothing (no message, ping or pong) for LINK_SILENT_MS as lost, so a
 * partition that sends no FIN or RST still pauses both sides and leads to a recovery.
 */
export const LINK_PING_MS = 1_000;
export const LINK_SILENT_MS = 5_000;

/**
 * Post-copy advice, sent while the guest still runs: which pages the destination will have to
 * receive (one bit per page). Every other page is zero or already there, and is present at once.
 */
export interface PostcopyAdvice {
  missing: Uint8Array;
  missingCount: number;
}

/** Post-copy switch-over: the pages that join the advised missing set (written since the advice). */
export interface PostcopySwitch {
  late: Uint32Array;
  /** Missing pages in all, advised and late. */
  missingCount: number;
}

export interface SetupMsg {
  t: 'setup';
  vm: string;
  program: string;
  mode: 'precopy' | 'cold' | 'postcopy' | 'hybrid';
  config: MachineConfig;
  insnLimit: number;
  pageSize: number;
  isa: string;
  devices: string[];
  /** The source host's control URL: a destination left without its link asks it whether the guest still has a source. */
  source?: string;
}

export type MigrationMsg =
  | SetupMsg
  | { t: 'setup-ok' }
  | { t: 'refused'; code: string; message: string }
  | { t: 'round-end'; round: number }
  | { t: 'round-ack'; round: number; pages: number }
  | { t: 'state'; state: VmStateExport; run: RunState; console: Uint8Array; postcopy?: PostcopySwitch }
  /** Post-copy: the destination runs the VM now (the source's downtime clock stops). */
  | { t: 'resumed' }
  /** Post-copy, on the priority channel: the vCPU faulted on this page. */
  | { t: 'page-req'; page: number }
  /** Post-copy, before the switch-over: the pages the destination will have to fetch, so it can prepare. */
  | { t: 'postcopy-advise'; advice: PostcopyAdvice }
  /** The destination has prepared its page states: the source may pause (so that work is not downtime). */
  | { t: 'advise-ok' }
  /**
   * Post-copy, destination -> source on prio: bytes of pushed (bulk) frames written into guest
   * RAM so far on this link. The source keeps at most a small window beyond it, so pushed data
   * never queues up in socket buffers ahead of a fault's page.
   */
  | { t: 'pushed'; bytes: number }
  /** Post-copy: every page has been sent once. */
  | { t: 'postcopy-done'; pages: number }
  /**
   * Post-copy recovery, destination -> source on the new bulk link: one bit per page, set for
   * the pages that are present here. The source sends every other page of its list again.
   */
  /** Post-copy recovery, source -> destination, first on a bulk link opened with `recover` in its hello. */
  | { t: 'recover' }
  | { t: 'recv-bitmap'; received: Uint8Array; receivedCount: number }
  | { t: 'completed'; resumedAt: number }
  | { t: 'cancel'; reason: string }
  | { t: 'failed'; code: string; message: string };

const packr = new Packr({ useRecords: false, moreTypes: true });

export function encodeMsg(m: MigrationMsg): Buffer {
  return packr.pack(m);
}

export function decodeMsg(frame: Uint8Array): MigrationMsg {
  let v: unknown;
  try {
    v = packr.unpack(frame);
  } catch (e) {
    throw new FerryError('EPROTO', `malformed migration message: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== 'object' || typeof (v as { t?: unknown }).t !== 'string') {
    throw new FerryError('EPROTO', 'malformed migration message: expected a map with a string "t"');
  }
  return v as MigrationMsg;
}

/**
 * Runs the codec over messages shaped like a switch-over's, so a host's first migration does
 * not compile msgpack paths inside its downtime (measured: about 2 ms on a fresh host).
 */
export function warmCodec(): void {
  const samples: unknown[] = [
    {
      t: 'state', run: 'running', console: new Uint8Array(64),
      state: {
        version: 1, config: { ramSize: 1 << 20, clock: 'icount', tohost: 0 }, insnLimit: 0, cpu: new Array<number>(48).fill(1 << 20),
        devices: { uart: { ier: 0, lcr: 3, fifo: [1, 2] }, clint: { mtime: 1.5, mtimecmp: [0, 1] }, clock: { base: 2 } },
      },
      postcopy: { late: new Uint32Array(8), missingCount: 8 },
    },
    { t: 'resumed' }, { t: 'page-req', page: 123_456 }, { t: 'pushed', bytes: 1 << 30 }, { t: 'advise-ok' },
  ];
  for (let i = 0; i < 4; i++) for (const m of samples) packr.unpack(packr.pack(m));
}

export function isPageFrame(frame: Uint8Array): boolean {
  return frame.length >= HEADER && frame[0] === FRAME_PAGES;
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

function isZeroPage(page: Uint8Array): boolean {
  const words = new Int32Array(page.buffer, page.byteOffset, PAGE_SIZE / 4);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  return true;
}

/** Walks a page frame: `fn(page, bytes | undefined)` (undefined for a zero page). */
export function decodePages(frame: Uint8Array, pages: number, fn: (page: number, bytes: Uint8Array | undefined) => void): number {
  if (!isPageFrame(frame)) throw new FerryError('EPROTO', 'not a page frame');
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const count = dv.getUint32(4, true);
  if (HEADER + count * 4 > frame.length) throw new FerryError('EPROTO', 'page frame shorter than its page list');
  let data = HEADER + count * 4;
  for (let i = 0; i < count; i++) {
    const raw = dv.getUint32(HEADER + i * 4, true);
    const p = raw & ~ZERO_PAGE;
    if (p >= pages) throw new FerryError('EPROTO', `page ${p} is outside guest RAM (${pages} pages)`);
    if (raw & ZERO_PAGE) {
      fn(p, undefined);
      continue;
    }
    if (data + PAGE_SIZE > frame.length) throw new FerryError('EPROTO', 'page frame shorter than its page data');
    fn(p, frame.subarray(data, data + PAGE_SIZE));
    data += PAGE_SIZE;
  }
  if (data !== frame.length) throw new FerryError('EPROTO', 'page frame has trailing bytes');
  return count;
}

/**
 * Writes one page frame into guest memory (destination side): page bytes copied in, zero pages
 * cleared if they had been written, every non-zero page marked ever-written. Runs on the
 * destination VM's own (still idle) vCPU thread, so the first-touch cost of fresh guest RAM is
 * paid beside the thread that receives the stream, not on it.
 */
export function applyPageFrame(ram: Uint8Array, pageState: Int32Array, pages: number, frame: Uint8Array): { pages: number; zero: number } {
  let zero = 0;
  const n = decodePages(frame, pages, (p, data) => {
    const off = p * PAGE_SIZE;
    if (data === undefined) {
      if (Atomics.load(pageState, p) & PAGE_EVER_WRITTEN_BIT) ram.fill(0, off, off + PAGE_SIZE);
      zero++;
      return;
    }
    ram.set(data, off);
    if ((Atomics.load(pageState, p) & PAGE_EVER_WRITTEN_BIT) === 0) Atomics.or(pageState, p, PAGE_EVER_WRITTEN_BIT);
  });
  return { pages: n, zero };
}

/** Pages named by a frame, read from its header. */
export function pageFrameCount(frame: Uint8Array): number {
  return new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(4, true);
}

/**
 * Post-copy page fill on the destination while the guest runs, from the host thread (a fault's
 * page) or the vCPU thread (pushed frames): a page is written only by the thread that claims it
 * while it is missing (compareExchange to FILLING), so a late duplicate is dropped and a present
 * page is never overwritten; then PRESENT is published with Atomics.store. Whoever waits for the
 * page is woken by the caller (the vCPU waits on its doorbell). Returns the pages filled.
 */
export function fillMissingPages(ram: Uint8Array, pageState: Int32Array, pages: number, frame: Uint8Array): number[] {
  const filled: number[] = [];
  decodePages(frame, pages, (p, data) => {
    for (;;) {
      const s = Atomics.load(pageState, p);
      if (s & (PAGE_PRESENT_BIT | PAGE_FILLING)) return;
      if (Atomics.compareExchange(pageState, p, s, s | PAGE_FILLING) === s) break;
    }
    const off = p * PAGE_SIZE;
    if (data === undefined) ram.fill(0, off, off + PAGE_SIZE);
    else ram.set(data, off);
    Atomics.store(pageState, p, PAGE_PRESENT_BIT | PAGE_EVER_WRITTEN_BIT);
    filled.push(p);
  });
  return filled;
}
