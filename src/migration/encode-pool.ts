/**
 * The page-encoding pool (piscina): threads that build pre-copy page frames with XBZRLE deltas
 * and LZ4 (encode-worker.ts) while the host thread sends. One pool per process, started on first
 * use; its threads end after a few seconds idle, so an idle host runs none.
 */
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { XbzrleCacheBuffers } from '../memory/xbzrle-cache.ts';
import { FerryError } from '../errors.ts';
import { threadCode } from '../thread-code.ts';

export interface EncodeTask {
  /** Guest RAM (shared), and its size in bytes. */
  ram: SharedArrayBuffer;
  ramBytes: number;
  pages: Uint32Array;
  /** With XBZRLE: the migration's cache. */
  cache?: XbzrleCacheBuffers;
  compress: boolean;
}

export interface EncodeResult {
  /** What goes on the wire: a page frame, or an LZ4 frame holding one. */
  frame: Uint8Array;
  pages: number;
  zero: number;
  deltas: number;
  misses: number;
  /** The page frame's size before compression. */
  innerBytes: number;
  /** The thread's time on it. */
  ms: number;
}

/**
 * Threads the pool may run, one per core up to four: in pre-copy they share the cores with the
 * running vCPU, and in the stop-and-copy, the part that counts, the vCPU is paused and the host
 * thread only sends what they built.
 */
export const ENCODE_THREADS = Math.max(1, Math.min(4, availableParallelism()));
const IDLE_MS = 5_000;
/**
 * A frame takes milliseconds to encode; one still not back after this long is given up (its
 * thread is ended) and the send fails with EPOOL, so no wait on the pool is without an end.
 */
const TASK_DEADLINE_MS = 10_000;

let pool: Piscina<EncodeTask, EncodeResult> | undefined;

function thePool(): Piscina<EncodeTask, EncodeResult> {
  if (pool) return pool;
  const code = threadCode(new URL('./encode-worker.ts', import.meta.url), { packages: ['piscina', 'lz4-napi'], asFile: true });
  pool = new Piscina<EncodeTask, EncodeResult>({
    filename: fileURLToPath(code), minThreads: 0, maxThreads: ENCODE_THREADS, idleTimeout: IDLE_MS,
    // A parent under tsx's loader would pass its --import to every thread, for code that needs none.
    execArgv: [],
  });
  return pool;
}

/** Encodes one frame on the pool; a pool that cannot start or a task that fails is FerryError EPOOL. */
export async function encodeOnPool(task: EncodeTask): Promise<EncodeResult> {
  try {
    return await thePool().run(task, { signal: AbortSignal.timeout(TASK_DEADLINE_MS) });
  } catch (e) {
    throw new FerryError('EPOOL', `page encoding failed: ${(e as Error).message}`);
  }
}

/** Ends the pool's threads (tests; a host's exit ends them anyway). */
export async function closeEncodePool(): Promise<void> {
  const p = pool;
  pool = undefined;
  await p?.close({ force: true });
}
