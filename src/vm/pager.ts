/**
 * Page frames into a VM's RAM, and the post-copy pager (DESIGN §3), as two typed objects:
 * `HostPager` on the host thread (inside `Vm`) and `VcpuPager` on the vCPU thread.
 *
 * Frames: the host posts each frame on the pages port, then counts it posted and rings the
 * doorbell (control-block.ts); the vCPU thread writes frames in order and counts them done. Frames
 * posted before the restore request are pre-copy frames (written whole, applyPageFrame); later
 * ones are post-copy pushes, which fill missing pages only (fillMissingPages). The message is in
 * the port's queue before the posted counter moves, so a vCPU that sees the counter ahead of its
 * own count finds the frame there.
 *
 * Post-copy trap (vCPU): an access to a page that is not PRESENT counts a trap, writes whatever
 * frames are posted (one of them may hold the page), requests the page once (REQUESTED, CAS; the
 * first request posts a 'fault' message), then waits on the doorbell, reading the doorbell before
 * each check of the page so no ring is lost. It wakes when the host has filled the page itself
 * (the host rings after a fill) or posted a frame (written one at a time, so the page is taken as
 * soon as it is here). It also wakes for an Exit command and then unwinds the thread, since a page
 * may never come. Page claims and publication are in memory/post-copy-pages.ts.
 */
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type { GuestMemory } from '../memory/guest-memory.ts';
import { applyPageFrame, fillMissingPages } from '../memory/page-frame.ts';
import { isPresent, requestMissingPage } from '../memory/post-copy-pages.ts';
import type { WaitResult } from '../memory/wait-async.ts';
import type { HostControlBlock, VcpuControlBlock } from './control-block.ts';

/** Thrown on the vCPU thread by a wait that an Exit command ended; the thread then exits. */
export class VcpuExitRequested extends Error {
  constructor() {
    super('exit requested');
    this.name = 'VcpuExitRequested';
  }
}

/** How long a blocked vCPU sleeps between checks that nothing rang for (a safety net, not the wake-up). */
const RECHECK_MS = 1000;

export class HostPager {
  constructor(private readonly control: HostControlBlock, private readonly memory: GuestMemory, private readonly port: MessagePort) {}

  /** Hands a page frame to the vCPU thread; a frame owning its whole ArrayBuffer moves without a copy. */
  /** Posts a frame to the vCPU thread: its buffer moves there when `owned` (nothing else uses it), else it is copied. */
  post(frame: Uint8Array, owned = frame.byteOffset === 0 && frame.byteLength === frame.buffer.byteLength && frame.buffer instanceof ArrayBuffer): void {
    this.port.postMessage(frame, owned ? [frame.buffer as ArrayBuffer] : []);
    this.control.framePosted();
  }

  pending(): number {
    return this.control.framesPending();
  }

  done(): number {
    return this.control.framesDone();
  }

  doneAfter(seen: number, ms: number): Promise<WaitResult> {
    return this.control.framesDoneAfter(seen, ms);
  }

  /** Post-copy, on the host thread: fills the missing pages of a checked frame and wakes the vCPU if any were. */
  fill(frame: Uint8Array): number[] {
    const filled = fillMissingPages(this.memory.ram, this.memory.pageState, this.memory.pages, frame);
    if (filled.length > 0) this.wake();
    return filled;
  }

  /** Wakes a vCPU blocked on a missing page (after the host filled pages by other means). */
  wake(): void {
    this.control.ring();
  }

  traps(): number {
    return this.control.traps();
  }

  pagesFilled(): number {
    return this.control.pagesFilled();
  }

  blockedMs(): number {
    return this.control.blockedUs() / 1000;
  }

  blockedHistogram(): number[] {
    return this.control.blockedHistogram();
  }
}

export class VcpuPager {
  constructor(
    private readonly control: VcpuControlBlock,
    private readonly memory: GuestMemory,
    private readonly port: MessagePort,
    /** Reports a page's first request to the host. */
    private readonly onFault: (page: number) => void,
  ) {}

  /** Whether frames are posted and not yet written (two loads; a slice-boundary check). */
  framesWaiting(): boolean {
    return this.control.framesPosted() !== this.control.framesDone();
  }

  /** Writes up to `max` posted frames, in order, and wakes the host's waits for them; returns how many. */
  applyPosted(max = Infinity): number {
    let n = 0;
    while (n < max) {
      const got = receiveMessageOnPort(this.port);
      if (got === undefined) break;
      const frame = got.message as Uint8Array;
      const m = this.memory;
      if (this.control.framesDone() >= this.control.framesBeforeRestore()) {
        this.control.addPagesFilled(fillMissingPages(m.ram, m.pageState, m.pages, frame).length);
      } else {
        applyPageFrame(m.ram, m.pageState, m.pages, frame);
      }
      this.control.frameDone();
      n++;
    }
    if (n > 0) this.control.frameNotify();
    return n;
  }

  /**
   * At a restore: writes every frame posted before it. Those were posted before the request was
   * made, so they are here; waits on the doorbell (rung after each post) until `deadline` all the
   * same, then fails loudly.
   */
  applyFramesBefore(framesBefore: number, deadline: number): void {
    for (;;) {
      const bell = this.control.bell();
      this.applyPosted();
      const done = this.control.framesDone();
      if (done >= framesBefore) return;
      if (this.control.exitRequested()) throw new VcpuExitRequested();
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`restore requested after ${framesBefore} page frames, but only ${done} arrived`);
      this.control.waitBell(bell, left);
    }
  }

  /** The post-copy trap: returns once `page` is present (the CPU's missingPage hook). */
  trap(page: number): void {
    const ps = this.memory.pageState;
    this.control.addTrap();
    // Safe mid-instruction: only missing pages are written, and a missing page is in no TLB or decode cache.
    this.applyPosted();
    if (isPresent(ps, page)) return;
    if (requestMissingPage(ps, page)) this.onFault(page);
    const t0 = performance.now();
    for (;;) {
      const bell = this.control.bell();
      while (!isPresent(ps, page) && this.applyPosted(1) > 0);
      if (isPresent(ps, page)) break;
      if (this.control.exitRequested()) throw new VcpuExitRequested();
      this.control.waitBell(bell, RECHECK_MS);
    }
    this.control.addBlockedUs(Math.round((performance.now() - t0) * 1000));
  }
}
