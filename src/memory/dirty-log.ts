/**
 * The dirty log (DESIGN §3) and the first-write ring, over the shared buffers `dirty` (two logs
 * of one byte per page) and `dirtyCtl` (the handshake words). Word indices never leave this file;
 * docs/shared-memory.md lists every word with its writer, readers and atomics.
 *
 * The switch handshake (like KVM's dirty log): the vCPU marks writes in the active log with plain
 * byte stores. To sync, the host bumps REQUEST (Atomics.add) and rings the vCPU. At its next slice
 * boundary, and only there (never inside an instruction, which may have marked one page and not
 * yet stored to it), the vCPU points its writes at the other log (clearing its write TLB, so every
 * page's next write marks the new log), then stores ACTIVE and ACK (the request it answers) and
 * notifies ACK. The host, once ACK has reached its request, reads and clears the log the vCPU
 * left. Its plain reads and clears are safe: the vCPU's plain marks in that log all came before
 * its store of ACK, which the host's load of ACK read; the vCPU writes that log again only after a
 * later request, which this host thread raises only after the harvest. Rounds are serialized on
 * the host (a round requested while another waits would let the vCPU switch back into the log
 * being cleared).
 *
 * The first-write ring: whoever first sets a page's EVER_WRITTEN bit (Atomics.or) takes a slot
 * with Atomics.add on FIRST_WRITES and stores the page number there (Atomics.store), so the
 * pages first written since some point are listed without scanning every page state.
 */
import { FerryError } from '../errors.ts';
import { waitWord } from './wait-async.ts';

/** Which log the vCPU writes into (0 or 1); written only by the vCPU (and read by the host). */
const ACTIVE = 0;
/** Switch requests raised by the host (a counter). */
const REQUEST = 1;
/** The last request the vCPU has switched logs for. */
const ACK = 2;
/** Pages that became ever-written so far (a counter, the first-write ring's head). */
const FIRST_WRITES = 3;
export const DIRTY_CTL_BYTES = 16;
export const FIRST_WRITE_RING = 65536;

/** How long the host waits for the vCPU to answer a switch request before it fails the sync. */
const SWITCH_DEADLINE_MS = 30_000;

/** Each log starts on an 8-byte boundary so it can be scanned by words. */
export function logStride(pages: number): number {
  return Math.ceil(pages / 8) * 8;
}

export class DirtyLog {
  readonly logs: readonly [Uint8Array, Uint8Array];
  private readonly ctl: Int32Array;
  private readonly firstWrites: Uint32Array;
  private readonly words: number;
  /** The host's sync rounds, one at a time. */
  private rounds: Promise<unknown> = Promise.resolve();

  constructor(dirty: SharedArrayBuffer, dirtyCtl: SharedArrayBuffer, firstWrites: SharedArrayBuffer, readonly pages: number) {
    this.logs = [new Uint8Array(dirty, 0, pages), new Uint8Array(dirty, logStride(pages), pages)];
    this.ctl = new Int32Array(dirtyCtl, 0, DIRTY_CTL_BYTES / 4);
    this.firstWrites = new Uint32Array(firstWrites, 0, FIRST_WRITE_RING);
    this.words = logStride(pages) >>> 3;
  }

  /** The log writes go to now (the vCPU's at start; the host's own writes, see GuestMemory.hostWrite). */
  activeLog(): Uint8Array {
    return this.logs[Atomics.load(this.ctl, ACTIVE) & 1]!;
  }

  // ---- vCPU side ----

  /**
   * At a slice boundary: if the host asked for a switch, hands the other log to `useLog` (the
   * CPU, which must send every page's next write through its slow path) and acknowledges.
   */
  serveSwitch(useLog: (log: Uint8Array) => void): boolean {
    const req = Atomics.load(this.ctl, REQUEST);
    if (req === Atomics.load(this.ctl, ACK)) return false;
    const next = (Atomics.load(this.ctl, ACTIVE) & 1) ^ 1;
    useLog(this.logs[next]!);
    Atomics.store(this.ctl, ACTIVE, next);
    Atomics.store(this.ctl, ACK, req);
    Atomics.notify(this.ctl, ACK);
    return true;
  }

  // ---- host side ----

  /**
   * One round: request a switch, `wake` the vCPU, wait for its acknowledgement, then take and
   * clear the log it left. `check` throws if the vCPU is gone (it is called on each wake;
   * interruptWaits wakes the wait). Rounds run one at a time. Fails with ETIMEDOUT if the vCPU
   * does not answer within 30 s (it answers at its next slice boundary, or at once while paused).
   */
  sync(wake: () => void, check: () => void): Promise<Uint32Array> {
    const round = this.rounds.then(() => this.syncRound(wake, check));
    this.rounds = round.catch(() => undefined);
    return round;
  }

  /** Wakes a sync waiting for its acknowledgement, so it can see that the vCPU is gone. */
  interruptWaits(): void {
    Atomics.notify(this.ctl, ACK);
  }

  private async syncRound(wake: () => void, check: () => void): Promise<Uint32Array> {
    check();
    const req = Atomics.add(this.ctl, REQUEST, 1) + 1;
    wake();
    const deadline = performance.now() + SWITCH_DEADLINE_MS;
    for (;;) {
      const ack = Atomics.load(this.ctl, ACK);
      if (ack === req) break;
      check();
      const left = deadline - performance.now();
      if (left <= 0) throw new FerryError('ETIMEDOUT', `the vCPU did not switch dirty logs within ${SWITCH_DEADLINE_MS / 1000} s`);
      await waitWord(this.ctl, ACK, ack, left);
    }
    return this.harvestSwitched();
  }

  /** After an acknowledged switch: takes and clears the log the vCPU left. */
  harvestSwitched(): Uint32Array {
    return this.harvestLog((Atomics.load(this.ctl, ACTIVE) & 1) ^ 1);
  }

  /**
   * Takes and clears both logs at once. Only while no vCPU runs (paused or halted): then nobody
   * writes either log and no switch is needed. The vCPU forgets which pages it had marked when it
   * stops (before its `paused`/`halted` message), so every write after it runs again is marked.
   */
  harvestBothStopped(): Uint32Array {
    const a = this.harvestLog(0);
    const b = this.harvestLog(1);
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
   * Like harvestBothStopped, but returns only the dirty pages whose bit in `known` is clear (a
   * post-copy switch-over wants the pages outside its advice): when nearly every page is dirty
   * the cost is one pass over the logs, with no list of them all.
   */
  harvestBothStoppedExcept(known: Uint8Array): number[] {
    const out: number[] = [];
    const [a, b] = this.logs;
    const wordsA = new Float64Array(a.buffer, a.byteOffset, this.words);
    const wordsB = new Float64Array(b.buffer, b.byteOffset, this.words);
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

  private harvestLog(index: number): Uint32Array {
    const log = this.logs[index]!;
    // Scan eight pages at a time; a log is mostly zeros. Log bytes are 0 or 1, so a nonzero
    // group never reads as a float64 zero (that would need a 0x80 byte for -0).
    const words = new Float64Array(log.buffer, log.byteOffset, this.words);
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

  // ---- first-write ring (either thread) ----

  /** Lists `page` as first written now; call once per page, after setting its EVER_WRITTEN bit first. */
  recordFirstWrite(page: number): void {
    const i = Atomics.add(this.ctl, FIRST_WRITES, 1);
    Atomics.store(this.firstWrites, i % FIRST_WRITE_RING, page);
  }

  /** How many pages have become ever-written so far (a position in the first-write ring). */
  firstWriteCount(): number {
    return Atomics.load(this.ctl, FIRST_WRITES);
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
}
