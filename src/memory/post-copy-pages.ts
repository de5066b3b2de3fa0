/**
 * The post-copy protocol on a page's state word (one Int32 per page, bits in layout.ts), shared by
 * the two threads that may fill a missing page: the host thread (a fault's page from the source)
 * and the vCPU thread (pushed frames). Every access is an Atomics operation on the word; the page's
 * RAM bytes are written plainly by the one thread that claimed the page, and published by its
 * Atomics.store of PRESENT.
 *
 *   missing ──request (vCPU, CAS, once)──> missing|REQUESTED
 *   missing[|REQUESTED] ──claim (either thread, CAS)──> |FILLING ──publish (claimer, store)──> PRESENT|EVER_WRITTEN
 *
 * - A page is claimed only while neither PRESENT nor FILLING, so exactly one thread writes it; a
 *   late duplicate is dropped and a present page is never overwritten.
 * - Publishing stores PRESENT|EVER_WRITTEN over the word: REQUESTED (the fault it answers) and
 *   FILLING go; nothing else can have been set meanwhile (a missing page is already EVER_WRITTEN,
 *   and only the vCPU's request changes a missing page's word, which the claim's CAS saw or the
 *   store answers).
 * - The vCPU reads its RAM bytes only after it has loaded PRESENT (Atomics.load), which orders
 *   them after the claimer's plain writes.
 * Whoever fills a page must then wake the vCPU (it waits on its doorbell; see vm/pager.ts).
 */
import { PAGE_EVER_WRITTEN, PAGE_FILLING, PAGE_PRESENT, PAGE_REQUESTED } from './layout.ts';

export function isPresent(pageState: Int32Array, page: number): boolean {
  return (Atomics.load(pageState, page) & PAGE_PRESENT) !== 0;
}

/**
 * vCPU: marks a missing page as requested. True only the first time (the caller reports the
 * fault); false if the page is present or was requested before.
 */
export function requestMissingPage(pageState: Int32Array, page: number): boolean {
  for (;;) {
    const s = Atomics.load(pageState, page);
    if (s & (PAGE_PRESENT | PAGE_REQUESTED)) return false;
    if (Atomics.compareExchange(pageState, page, s, s | PAGE_REQUESTED) === s) return true;
  }
}

/** Either filler: takes a missing page for writing. False if it is present or another thread has it. */
export function claimMissingPage(pageState: Int32Array, page: number): boolean {
  for (;;) {
    const s = Atomics.load(pageState, page);
    if (s & (PAGE_PRESENT | PAGE_FILLING)) return false;
    if (Atomics.compareExchange(pageState, page, s, s | PAGE_FILLING) === s) return true;
  }
}

/** The claimer, once the page's bytes are in RAM: makes it present. */
export function publishFilledPage(pageState: Int32Array, page: number): void {
  Atomics.store(pageState, page, PAGE_PRESENT | PAGE_EVER_WRITTEN);
}
