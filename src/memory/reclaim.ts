/**
 * Guest RAM goes back to the operating system when a VM is gone, not when V8 gets round to it.
 * A VM's RAM is a SharedArrayBuffer; its memory is released only once a garbage collection of
 * this thread finds it unreferenced, and V8 counts none of it as pressure on its small heap, so
 * destroyed VMs' RAM could stay resident for hundreds of megabytes (measured: 3,000 aborted 1 MiB
 * migrations left 500 MB of dead buffers and 700 MB resident). After a VM is destroyed a full
 * collection is run soon, at most once a second, through V8's own `gc` (exposed at run time).
 *
 * That collection stops this thread while it frees the RAM: 30-45 ms for a 1 GiB VM with 256 MiB
 * touched. Landing in another migration's switch-over it made a 2 ms downtime 17-20 ms (2 of 5
 * idle migrations started 30 ms after a 256 MiB VM left: scratch measurement, issue 12). So a
 * migration in progress on this host holds collections back; one waits for the last hold to go,
 * but never more than MAX_DEFER_MS after it was asked for (a migration can last minutes).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export const MIN_INTERVAL_MS = 1_000;
/** After a VM is gone, the collection waits at least this long (a burst of destroys makes one). */
export const COALESCE_MS = 50;
export const MAX_DEFER_MS = 30_000;

export class Reclaimer {
  private timer: NodeJS.Timeout | undefined;
  private last = -Infinity;
  private holds = 0;
  /** When the pending collection was asked for (undefined: none pending). */
  private pendingSince: number | undefined;

  constructor(private readonly collect: () => void) {}

  /** Asks for a collection soon (coalesced; never more than one a second, held back by migrations); returns at once. */
  soon(): void {
    this.pendingSince ??= performance.now();
    this.arm();
  }

  /** Holds collections back until the returned function is called (idempotent). */
  hold(): () => void {
    this.holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds--;
      if (this.holds === 0 && this.pendingSince !== undefined) this.rearm();
    };
  }

  private rearm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.arm();
  }

  private arm(): void {
    if (this.pendingSince === undefined || this.timer !== undefined) return;
    const now = performance.now();
    const spaced = Math.max(this.last + MIN_INTERVAL_MS - now, COALESCE_MS);
    const delay = this.holds > 0 ? Math.max(this.pendingSince + MAX_DEFER_MS - now, spaced) : spaced;
    this.timer = setTimeout(() => this.run(), delay);
    this.timer.unref();
  }

  private run(): void {
    this.timer = undefined;
    const now = performance.now();
    if (this.pendingSince === undefined) return;
    if (this.holds > 0 && now < this.pendingSince + MAX_DEFER_MS) return this.arm(); // a hold came meanwhile
    this.pendingSince = undefined;
    this.last = now;
    this.collect();
  }
}

let collect: (() => void) | undefined;

function collector(): () => void {
  if (collect) return collect;
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return (collect = g);
  setFlagsFromString('--expose-gc');
  return (collect = runInNewContext('gc') as () => void);
}

/** This thread's reclaimer. */
const shared = new Reclaimer(() => collector()());

/** Asks for a collection soon (see Reclaimer.soon). */
export function reclaimSoon(): void {
  shared.soon();
}

/** Holds this thread's collections back while a migration runs (see Reclaimer.hold). */
export function holdReclaim(): () => void {
  return shared.hold();
}
