/**
 * The control block shared by a VM's host side and its vCPU worker: one Int32Array.
 *
 * Handshakes (all through Atomics; no plain store is relied on across threads):
 * - Commands: the host stores CMD (and STEP_N), then bumps CMD_SEQ and DOORBELL and notifies
 *   DOORBELL. The vCPU reads CMD at every slice boundary and while it waits. A PAUSE or STEP
 *   is acknowledged by a 'paused' message carrying the CMD_SEQ it answers.
 * - Doorbell: any host request (command, dirty sync, console input) bumps DOORBELL; a vCPU
 *   sleeping in `wfi`, paused or halted waits on it with Atomics.wait.
 * - Progress: the vCPU publishes PC and INSTRET at every slice boundary for `info`.
 * - Console input: a single-producer/single-consumer byte ring; the host writes bytes then
 *   stores RX_HEAD, the vCPU reads bytes then stores RX_TAIL.
 * - Restore: see C_RESTORE.
 */
export const C_DOORBELL = 0;
export const C_CMD = 1;
export const C_CMD_SEQ = 2;
export const C_STEP_N = 3;
export const C_STATE = 4;
export const C_THROTTLE = 5;
export const C_PC = 6;
export const C_INSTRET_LO = 7;
export const C_INSTRET_HI = 8;
export const C_RX_HEAD = 9;
export const C_RX_TAIL = 10;
/**
 * Restore requests (a counter): the host writes the CPU words, posts the device state on the
 * state port, then bumps this before its next command. The vCPU restores before it looks at
 * the command, so "restore, then run" needs no round trip (an incoming migration's switch-over).
 */
export const C_RESTORE = 11;
/**
 * Incoming page frames (migration destination): the host posts a frame on the pages port and
 * bumps PAGES_POSTED; the vCPU thread, idle until the switch-over, writes them into RAM in
 * order and bumps PAGES_DONE. A restore first applies every frame posted before it.
 */
export const C_PAGES_POSTED = 12;
export const C_PAGES_DONE = 13;
/** Post-copy: microseconds the vCPU has spent blocked on missing pages (QEMU's blocktime). */
export const C_BLOCKED_US = 14;
/**
 * Post-copy: pages the vCPU thread has filled from pushed frames (a counter). After the restore
 * the host keeps posting pushed frames on the pages port; the vCPU writes them (fill semantics:
 * only missing pages, see fillMissingPages) at every slice boundary and while it waits for a
 * missing page, then bumps PAGES_DONE and notifies it. The host rings the doorbell after it
 * fills a fault's page itself, since a blocked vCPU waits on the doorbell.
 */
export const C_PAGES_FILLED = 15;
/** Post-copy: accesses that found their page missing (a counter), however the page then came. */
export const C_TRAPS = 16;
/**
 * Frames posted before the restore request (the host stores PAGES_POSTED here before it bumps
 * RESTORE; 2^31-1 until then). Frames below it are pre-copy, written as they come; frames from
 * it on are post-copy pushes, which may arrive before the vCPU has even seen the restore request
 * and are written with fill semantics (missing pages only).
 */
export const C_PAGES_BEFORE_RESTORE = 17;
export const CONTROL_WORDS = 20;

export const RX_RING_SIZE = 4096;

export const enum Cmd {
  Pause = 0,
  Run = 1,
  Step = 2,
  Exit = 3,
  /** Power the guest off for good; its state stays readable (reason 'stopped'). */
  Halt = 4,
}

/** What the vCPU is doing, as it publishes it in C_STATE. */
export const enum VcpuState {
  Paused = 0,
  Running = 1,
  Halted = 2,
}

export function ring(ctl: Int32Array): void {
  Atomics.add(ctl, C_DOORBELL, 1);
  Atomics.notify(ctl, C_DOORBELL);
}
