/**
 * A picture of a VM's RAM, one code per 4 KiB page, for the dashboard's live page map. It is read
 * on the host thread while the vCPU runs: each word is an Atomics.load of its own (a page's code
 * may be a moment old, never torn), and nothing is written, so the vCPU does not slow down for
 * it. Reading a 1 GiB VM's 262144 pages, dirty log included, takes about 4 ms (bench/dashboard.ts
 * pageMap1GiBMs).
 */
import { PAGE_EVER_WRITTEN, PAGE_FILLING, PAGE_PRESENT, PAGE_REQUESTED } from '../memory/layout.ts';
import type { GuestMemory } from '../memory/guest-memory.ts';

/** The codes, in the order the dashboard's legend lists them. */
export const PAGE_CODES = {
  /** Never written (zero: migrations skip it). */
  never: 0,
  /** Written, present, not dirty since the last pre-copy round. */
  clean: 1,
  /** Source: written since the last pre-copy round (in the active dirty log). */
  dirty: 2,
  /** Source: taken for the current pass, not yet handed to the link. */
  queued: 3,
  /** Source: handed to the link, not yet written out by it. */
  inFlight: 4,
  /** Destination, post-copy: not here yet. */
  missing: 5,
  /** Destination: came because the guest faulted on it. */
  faulted: 6,
  /** Destination: the guest is blocked on it right now. */
  waiting: 7,
} as const;

/** The current pass of an outgoing migration: its pages in sending order, how many were handed to the link and how many it has written. */
export interface PassProgress {
  readonly pages: ArrayLike<number>;
  readonly handed: number;
  readonly written: number;
}

export interface PageMapMarks {
  /** Outgoing migration in pre-copy: show the active dirty log. */
  dirtyLog?: boolean;
  pass?: PassProgress | undefined;
  /** Source, post-copy: the pages the destination lacked at the switch-over (`order`), and which have gone (`sent`, one byte per page). */
  push?: { order: ArrayLike<number>; sent: Uint8Array } | undefined;
  /** Pages this VM faulted on since it arrived (one byte each, non-zero: faulted). */
  faulted?: Uint8Array | undefined;
}

export function pageMap(mem: GuestMemory, marks: PageMapMarks = {}): Uint8Array {
  const n = mem.pages;
  const out = new Uint8Array(n);
  const ps = mem.pageState;
  const faulted = marks.faulted;
  for (let p = 0; p < n; p++) {
    const s = Atomics.load(ps, p);
    let code: number;
    if ((s & PAGE_PRESENT) === 0) code = (s & (PAGE_REQUESTED | PAGE_FILLING)) !== 0 ? PAGE_CODES.waiting : PAGE_CODES.missing;
    else if (faulted !== undefined && faulted[p] !== 0) code = PAGE_CODES.faulted;
    else code = (s & PAGE_EVER_WRITTEN) !== 0 ? PAGE_CODES.clean : PAGE_CODES.never;
    out[p] = code;
  }
  if (marks.dirtyLog) {
    // The vCPU marks the active log with plain byte stores; read it a word (4 pages) at a time with Atomics.
    const log = mem.dirtyLog.activeLog();
    const words = new Int32Array(log.buffer, log.byteOffset, Math.floor(n / 4));
    for (let w = 0; w < words.length; w++) {
      const v = Atomics.load(words, w);
      if (v === 0) continue;
      for (let b = 0; b < 4; b++) if ((v >>> (b * 8)) & 0xff) out[w * 4 + b] = PAGE_CODES.dirty;
    }
    for (let p = words.length * 4; p < n; p++) if (Atomics.load(log, p) !== 0) out[p] = PAGE_CODES.dirty;
  }
  const push = marks.push;
  if (push !== undefined) for (let i = 0; i < push.order.length; i++) if (push.sent[push.order[i]!] === 0) out[push.order[i]!] = PAGE_CODES.queued;
  const pass = marks.pass;
  if (pass !== undefined) {
    for (let i = pass.written; i < pass.handed; i++) out[pass.pages[i]!] = PAGE_CODES.inFlight;
    // A queued page dirtied again goes with its new bytes in this pass: queued, not dirty.
    for (let i = pass.handed; i < pass.pages.length; i++) out[pass.pages[i]!] = PAGE_CODES.queued;
  }
  return out;
}

/** How many pages have each code (index: the code). */
export function pageCounts(map: Uint8Array): number[] {
  const counts = new Array<number>(8).fill(0);
  for (let i = 0; i < map.length; i++) counts[map[i]!]!++;
  return counts;
}

/**
 * The map as runs, for the wire: one word per run, (length << 3) | code, in page order. A map is
 * mostly long runs (a working set, a region not yet sent), so a 1 GiB VM's 256 KiB map is a few
 * KiB this way; undefined when runs would not be smaller than the map itself. The page expands
 * them (dashboard/page-map.js expandPageRuns).
 */
export function pageRuns(map: Uint8Array): Uint32Array | undefined {
  const limit = map.length >>> 2;
  const runs = new Uint32Array(Math.max(1, limit));
  let n = 0;
  for (let p = 0; p < map.length;) {
    const code = map[p]!;
    let end = p + 1;
    while (end < map.length && map[end] === code) end++;
    if (n === limit) return undefined;
    runs[n++] = ((end - p) << 3) | code;
    p = end;
  }
  return runs.slice(0, n);
}

