/** Guest physical memory map and page-state bits (DESIGN §2, §3). */

export const RAM_BASE = 0x8000_0000;
export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
export const DEFAULT_RAM_SIZE = 128 * 1024 * 1024;
export const MIN_RAM_SIZE = 1024 * 1024;
export const MAX_RAM_SIZE = 2 * 1024 * 1024 * 1024;

/** Page-state bits, one Int32 word per page so a vCPU can Atomics.wait on it. */
export const PAGE_PRESENT = 1 << 0;
/** Written at least once since boot; a page without it is known to be zero. */
export const PAGE_EVER_WRITTEN = 1 << 1;
/** A post-copy fault for this page is outstanding. */
export const PAGE_REQUESTED = 1 << 2;
/**
 * Post-copy: a thread has claimed this missing page (compareExchange) and is writing it; only
 * the claimer writes it, then stores PRESENT. Keeps two fillers (the host thread with a fault's
 * page, the vCPU thread with pushed frames) from writing one page twice.
 */
export const PAGE_FILLING = 1 << 3;
