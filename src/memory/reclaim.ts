/**
 * Guest RAM goes back to the operating system when a VM is gone, not when V8 gets round to it.
 * A VM's RAM is a SharedArrayBuffer; its memory is released only once a garbage collection of
 * this thread finds it unreferenced, and V8 counts none of it as pressure on its small heap, so
 * destroyed VMs' RAM could stay resident for hundreds of megabytes (measured: 3,000 aborted 1 MiB
 * migrations left 500 MB of dead buffers and 700 MB resident). After a VM is destroyed a full
 * collection is run soon, at most once a second, through V8's own `gc` (exposed at run time).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const MIN_INTERVAL_MS = 1_000;

let collect: (() => void) | undefined;
let timer: NodeJS.Timeout | undefined;
let last = -Infinity;

function collector(): () => void {
  if (collect) return collect;
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return (collect = g);
  setFlagsFromString('--expose-gc');
  return (collect = runInNewContext('gc') as () => void);
}

/** Asks for a collection soon (coalesced; never more than one a second); returns at once. */
export function reclaimSoon(): void {
  if (timer) return;
  const wait = Math.max(0, last + MIN_INTERVAL_MS - performance.now());
  timer = setTimeout(() => {
    timer = undefined;
    last = performance.now();
    collector()();
  }, Math.max(wait, 50));
  timer.unref();
}
