/**
 * The control block: the words a VM's host thread and its vCPU thread share besides guest memory,
 * wrapped as two typed objects, `HostControlBlock` (the host thread, inside `Vm`) and
 * `VcpuControlBlock` (the vCPU worker). Word indices never leave this file; docs/shared-memory.md
 * lists every word with its writer, readers and atomics.
 *
 * Every cross-thread access to a word is an Atomics operation (sequentially consistent). The only
 * plain accesses are the console ring's bytes, published and consumed through its head and tail.
 *
 * Handshakes:
 * - Command (host -> vCPU): one word holds the command kind and its sequence number,
 *   `(seq << 3) | kind`, so the vCPU can never see one command's kind with another's number. A
 *   step's instruction count goes first into the 64-bit slot of its sequence number's parity, then
 *   the command word is stored; the vCPU reads the word, the slot, and the word again, and takes
 *   the count only if the word has not changed (a later command reuses the slot only after it has
 *   stored another command word in between). The host then rings the doorbell. A pause, step or
 *   halt is answered by a 'paused' (or 'halted') message carrying the sequence number.
 * - Doorbell (host -> vCPU): bumped and notified for anything the host wants the vCPU to look at
 *   (a command, a dirty-log request, console input, a page frame, a page filled for a fault). The
 *   vCPU reads it before it checks for work and waits on that value, so no ring is lost.
 * - State (vCPU -> host): Paused, Running or Halted, as the vCPU last published it.
 * - Throttle (host -> vCPU): percent of each slice to sleep (auto-converge), read per slice.
 * - Progress (vCPU -> host): pc (32 bits) and instret (one 64-bit word, so it never tears),
 *   each stored at every slice boundary and before every 'paused'/'halted' message. The host
 *   stores them itself only while the vCPU cannot: before the thread exists and at a restore.
 * - Console input: a single-producer/single-consumer byte ring; the host writes bytes (plain),
 *   then stores the head; the vCPU loads the head, reads a byte (plain), then stores the tail.
 * - Restore (host -> vCPU): the host writes the CPU words, posts the device state, stores how many
 *   page frames it has posted so far (frames before the restore), then bumps the restore counter;
 *   the vCPU checks the counter right after it reads the command word, before acting on it.
 * - Page frames (host -> vCPU): the host posts a frame on the pages port, then bumps the posted
 *   counter and rings; the vCPU writes frames in order and bumps the done counter, notifying it.
 *   Frames below "frames before the restore" are pre-copy (written whole); later ones are
 *   post-copy pushes (missing pages only).
 * - Post-copy counters (vCPU -> host): traps, pages the vCPU filled, microseconds blocked, and a
 *   histogram of each blocked trap's wait.
 */
import { waitWord, type WaitResult } from '../memory/wait-async.ts';
import { LATENCY_BUCKETS, latencyBucket } from './latency-histogram.ts';

// Int32 words.
const DOORBELL = 0;
const COMMAND = 1;
const STATE = 2;
const THROTTLE = 3;
const PC = 4;
const RX_HEAD = 5;
const RX_TAIL = 6;
const RESTORES = 7;
const FRAMES_POSTED = 8;
const FRAMES_DONE = 9;
const FRAMES_BEFORE_RESTORE = 10;
const TRAPS = 11;
const PAGES_FILLED = 12;
const INT32_WORDS = 16;
// 64-bit words, after the Int32 words.
const INSTRET = 0;
const BLOCKED_US = 1;
/** Two slots: a step's count sits in STEP_COUNT + (seq & 1). */
const STEP_COUNT = 2;
const BIGINT_WORDS = 4;
// Int32 counters, after the 64-bit words: each blocked trap's wait (latency-histogram.ts).
const BLOCK_HISTOGRAM_OFFSET = INT32_WORDS * 4 + BIGINT_WORDS * 8;
const BYTES = BLOCK_HISTOGRAM_OFFSET + LATENCY_BUCKETS * 4;

/** A power of two: head and tail are free-running Int32 counters, masked into the ring. */
const RX_RING_SIZE = 4096;
const RX_MASK = RX_RING_SIZE - 1;
/** No restore requested yet: every frame is a pre-copy frame. */
const NO_RESTORE = 0x7fff_ffff;

const KIND_BITS = 3;
const KIND_MASK = (1 << KIND_BITS) - 1;
/** Sequence numbers travel modulo 2^28 (with the kind, 31 bits: the word stays positive). */
const SEQ_MASK = 0x0fff_ffff;

export const enum Cmd {
  Pause = 0,
  Run = 1,
  Step = 2,
  Exit = 3,
  /** Power the guest off for good; its state stays readable (reason 'stopped'). */
  Halt = 4,
}

/** What the vCPU is doing, as it publishes it. */
export const enum VcpuState {
  Paused = 0,
  Running = 1,
  Halted = 2,
}

/** The shared buffers of one control block; plain data, so they can go to a worker. */
export interface ControlBuffers {
  words: SharedArrayBuffer;
  rx: SharedArrayBuffer;
}

/** A command as the vCPU reads it. `seq` is modulo 2^28; `steps` is set for a Step. */
export interface Command {
  kind: Cmd;
  seq: number;
  steps: number;
}

interface Views {
  i32: Int32Array;
  i64: BigInt64Array;
  blockHistogram: Int32Array;
  rx: Uint8Array;
}

function views(b: ControlBuffers): Views {
  return {
    i32: new Int32Array(b.words, 0, INT32_WORDS),
    i64: new BigInt64Array(b.words, INT32_WORDS * 4, BIGINT_WORDS),
    blockHistogram: new Int32Array(b.words, BLOCK_HISTOGRAM_OFFSET, LATENCY_BUCKETS),
    rx: new Uint8Array(b.rx),
  };
}

/** The host thread's side of a VM's control block. */
export class HostControlBlock {
  readonly buffers: ControlBuffers;
  private readonly i32: Int32Array;
  private readonly i64: BigInt64Array;
  private readonly blockHistogram: Int32Array;
  private readonly rx: Uint8Array;
  /** Sequence number of the last command issued (not wrapped). */
  private issued = 0;

  /** A fresh block; progress starts at the VM's own pc and instret (a restored VM is not at 0). */
  constructor(pc: number, instret: number) {
    this.buffers = { words: new SharedArrayBuffer(BYTES), rx: new SharedArrayBuffer(RX_RING_SIZE) };
    ({ i32: this.i32, i64: this.i64, blockHistogram: this.blockHistogram, rx: this.rx } = views(this.buffers));
    Atomics.store(this.i32, FRAMES_BEFORE_RESTORE, NO_RESTORE);
    this.setProgress(pc, instret);
  }

  /** Issues a command and rings; returns its sequence number. */
  command(kind: Cmd, steps = 0): number {
    const seq = ++this.issued;
    if (kind === Cmd.Step) Atomics.store(this.i64, STEP_COUNT + (seq & 1), BigInt(steps));
    Atomics.store(this.i32, COMMAND, ((seq & SEQ_MASK) << KIND_BITS) | kind);
    this.ring();
    return seq;
  }

  /** The full sequence number of the command the vCPU answered as `wireSeq` (modulo 2^28). */
  answered(wireSeq: number): number {
    return this.issued - (((this.issued & SEQ_MASK) - wireSeq) & SEQ_MASK);
  }

  ring(): void {
    Atomics.add(this.i32, DOORBELL, 1);
    Atomics.notify(this.i32, DOORBELL);
  }

  setThrottle(percent: number): void {
    Atomics.store(this.i32, THROTTLE, percent);
    this.ring();
  }

  /** Only while the vCPU cannot publish: before its thread runs, or at a restore of a VM that never ran. */
  setProgress(pc: number, instret: number): void {
    Atomics.store(this.i32, PC, pc);
    Atomics.store(this.i64, INSTRET, BigInt(instret));
  }

  pc(): number {
    return Atomics.load(this.i32, PC) >>> 0;
  }

  instret(): number {
    return Number(Atomics.load(this.i64, INSTRET));
  }

  vcpuState(): VcpuState {
    return Atomics.load(this.i32, STATE) as VcpuState;
  }

  /** Moves bytes from the front of `queue` into the console ring (as many as fit); rings if any moved. */
  writeInput(queue: number[]): number {
    const tail = Atomics.load(this.i32, RX_TAIL);
    let head = Atomics.load(this.i32, RX_HEAD);
    const n = Math.min(queue.length, RX_RING_SIZE - ((head - tail) | 0));
    for (let i = 0; i < n; i++) this.rx[head++ & RX_MASK] = queue[i]!;
    if (n > 0) {
      Atomics.store(this.i32, RX_HEAD, head | 0);
      this.ring();
    }
    return n;
  }

  /** Marks every frame posted so far as pre-restore, then requests the restore (seen with the next command). */
  requestRestore(): void {
    Atomics.store(this.i32, FRAMES_BEFORE_RESTORE, Atomics.load(this.i32, FRAMES_POSTED));
    Atomics.add(this.i32, RESTORES, 1);
  }

  /** After a frame was posted on the pages port. */
  framePosted(): void {
    Atomics.add(this.i32, FRAMES_POSTED, 1);
    this.ring();
  }

  framesDone(): number {
    return Atomics.load(this.i32, FRAMES_DONE);
  }

  framesPending(): number {
    return Atomics.load(this.i32, FRAMES_POSTED) - Atomics.load(this.i32, FRAMES_DONE);
  }

  /** Resolves when the vCPU has written more frames than `seen`, after `ms`, or on interruptWaits. */
  framesDoneAfter(seen: number, ms: number): Promise<WaitResult> {
    return waitWord(this.i32, FRAMES_DONE, seen, ms);
  }

  /** Wakes every host-side wait on this block (the VM is going away). */
  interruptWaits(): void {
    Atomics.notify(this.i32, FRAMES_DONE);
  }

  traps(): number {
    return Atomics.load(this.i32, TRAPS);
  }

  pagesFilled(): number {
    return Atomics.load(this.i32, PAGES_FILLED);
  }

  blockedUs(): number {
    return Number(Atomics.load(this.i64, BLOCKED_US));
  }

  /** How many blocked traps waited how long (latency-histogram.ts buckets). */
  blockedHistogram(): number[] {
    return Array.from({ length: LATENCY_BUCKETS }, (_, b) => Atomics.load(this.blockHistogram, b));
  }
}

/** The vCPU thread's side of a VM's control block. */
export class VcpuControlBlock {
  private readonly i32: Int32Array;
  private readonly i64: BigInt64Array;
  private readonly blockHistogram: Int32Array;
  private readonly rx: Uint8Array;
  private restoresSeen = 0;

  constructor(buffers: ControlBuffers) {
    ({ i32: this.i32, i64: this.i64, blockHistogram: this.blockHistogram, rx: this.rx } = views(buffers));
  }

  /** The doorbell's value: read it before looking for work, then wait on it. */
  bell(): number {
    return Atomics.load(this.i32, DOORBELL);
  }

  /** Sleeps until the doorbell moves from `bell` or `ms` pass. */
  waitBell(bell: number, ms: number): void {
    Atomics.wait(this.i32, DOORBELL, bell, ms);
  }

  /** The current command, kind and number from one word (and a step's count from its slot). */
  command(): Command {
    for (;;) {
      const word = Atomics.load(this.i32, COMMAND);
      const kind = (word & KIND_MASK) as Cmd;
      const seq = word >>> KIND_BITS;
      if (kind !== Cmd.Step) return { kind, seq, steps: 0 };
      const steps = Number(Atomics.load(this.i64, STEP_COUNT + (seq & 1)));
      // Superseded while the slot was read: take the newer command instead.
      if (Atomics.load(this.i32, COMMAND) === word) return { kind, seq, steps };
    }
  }

  exitRequested(): boolean {
    return (Atomics.load(this.i32, COMMAND) & KIND_MASK) === Cmd.Exit;
  }

  /** When a restore was requested since the last call: how many frames were posted before it. */
  restoreRequest(): number | undefined {
    const n = Atomics.load(this.i32, RESTORES);
    if (n === this.restoresSeen) return undefined;
    this.restoresSeen = n;
    return Atomics.load(this.i32, FRAMES_BEFORE_RESTORE);
  }

  setState(s: VcpuState): void {
    Atomics.store(this.i32, STATE, s);
  }

  throttle(): number {
    return Atomics.load(this.i32, THROTTLE);
  }

  publishProgress(pc: number, instret: number): void {
    Atomics.store(this.i32, PC, pc);
    Atomics.store(this.i64, INSTRET, BigInt(instret));
  }

  inputAvailable(): boolean {
    return Atomics.load(this.i32, RX_HEAD) !== Atomics.load(this.i32, RX_TAIL);
  }

  /** One byte of console input; call only when inputAvailable(). */
  takeInput(): number {
    const tail = Atomics.load(this.i32, RX_TAIL);
    const b = this.rx[tail & RX_MASK]!;
    Atomics.store(this.i32, RX_TAIL, (tail + 1) | 0);
    return b;
  }

  framesPosted(): number {
    return Atomics.load(this.i32, FRAMES_POSTED);
  }

  framesDone(): number {
    return Atomics.load(this.i32, FRAMES_DONE);
  }

  /** Frames posted before the last restore request (2^31-1 before any). */
  framesBeforeRestore(): number {
    return Atomics.load(this.i32, FRAMES_BEFORE_RESTORE);
  }

  /** One more frame written into RAM (call frameNotify after a batch). */
  frameDone(): void {
    Atomics.add(this.i32, FRAMES_DONE, 1);
  }

  /** Wakes the host's waits for written frames. */
  frameNotify(): void {
    Atomics.notify(this.i32, FRAMES_DONE);
  }

  addTrap(): void {
    Atomics.add(this.i32, TRAPS, 1);
  }

  addPagesFilled(n: number): void {
    if (n > 0) Atomics.add(this.i32, PAGES_FILLED, n);
  }

  /** One blocked trap waited `us`: added to the total and counted in its histogram bucket. */
  addBlockedUs(us: number): void {
    Atomics.add(this.i64, BLOCKED_US, BigInt(us));
    Atomics.add(this.blockHistogram, latencyBucket(us), 1);
  }
}
