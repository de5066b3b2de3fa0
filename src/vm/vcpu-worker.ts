/**
 * The vCPU thread of one VM: runs the guest in ~1 ms slices and, between slices, answers the
 * host through the control block (control-block.ts), the dirty log (memory/dirty-log.ts) and the
 * pager (pager.ts). docs/shared-memory.md lists every word they share.
 */
import { parentPort, receiveMessageOnPort } from 'node:worker_threads';
import { StepExit } from '../cpu/cpu.ts';
import { S_PC } from '../cpu/state.ts';
import { GuestMemory } from '../memory/guest-memory.ts';
import { Cmd, VcpuControlBlock, VcpuState, type Command } from './control-block.ts';
import { Machine, type MachineIo } from './machine.ts';
import { VcpuExitRequested, VcpuPager } from './pager.ts';
import { runSlice } from './slice.ts';
import type { RestoreMessage, VcpuInit, VcpuMessage } from './vcpu-protocol.ts';

const port = parentPort!;
// A thread may be started ahead of need (a host's spare): its VM arrives as the first message.
const init = await new Promise<VcpuInit>((resolve) => port.once('message', (m: VcpuInit) => resolve(m)));

const control = new VcpuControlBlock(init.control);
const mem = new GuestMemory(init.memory);

const SLICE_MS = 1;
const MIN_SLICE_INSNS = 10_000;
const MAX_SLICE_INSNS = 2_000_000;
const OUT_FLUSH_MS = 2;
/** A restore's frames and state were posted before its request: not there by then is a host bug. */
const RESTORE_DEADLINE_MS = 10_000;
let out = new Uint8Array(4096);
let outLen = 0;
let lastFlush = performance.now();

function post(msg: VcpuMessage): void {
  port.postMessage(msg);
}

function flushConsole(): void {
  if (outLen === 0) return;
  post({ type: 'console', data: out.slice(0, outLen) });
  outLen = 0;
  lastFlush = performance.now();
}

const io: MachineIo = {
  transmit(byte) {
    if (outLen === out.length) {
      const bigger = new Uint8Array(out.length * 2);
      bigger.set(out);
      out = bigger;
    }
    out[outLen++] = byte;
  },
  input: {
    available: () => control.inputAvailable(),
    take: () => control.takeInput(),
  },
};
const pager = new VcpuPager(control, mem, init.pagesPort, (page) => {
  flushConsole();
  post({ type: 'fault', page });
});
/** The current slice waited for post-copy pages: its speed says nothing about the next. */
let faultedInSlice = false;
let sliceStart = 0;
io.missingPage = (page: number): void => {
  faultedInSlice = true;
  pager.trap(page);
  // A slice of faults lasts as long as a slice: the host hears from this thread as often either way.
  if (performance.now() - sliceStart >= SLICE_MS) cpu.endSliceAfterAccess();
};
const cpuState = new Int32Array(init.cpu);
const machine = new Machine(mem, cpuState, init.config, io, init.devices);
const cpu = machine.cpu;
const useDirtyLog = (log: Uint8Array): void => cpu.setDirtyLog(log);
useDirtyLog(mem.dirtyLog.activeLog());

/**
 * Restore into this (paused) thread: the host has written the CPU words into the shared state
 * and posted the device state on the state port; the machine is rebuilt around them. This is
 * how an incoming migration resumes without waiting for a new thread to start.
 */
function restore(framesBefore: number): void {
  const deadline = performance.now() + RESTORE_DEADLINE_MS;
  pager.applyFramesBefore(framesBefore, deadline);
  const st = receiveRestoreState(deadline);
  machine.load(st.devices);
  halted = false;
  if (st.halted) {
    cpu.halt(st.halted.exitCode, st.halted.reason);
    halted = true;
  }
  publishProgress();
}

/** The state the host posted before its restore request (it rings after; see applyFramesBefore). */
function receiveRestoreState(deadline: number): RestoreMessage {
  for (;;) {
    const bell = control.bell();
    const got = receiveMessageOnPort(init.statePort);
    if (got !== undefined) return got.message as RestoreMessage;
    if (control.exitRequested()) throw new VcpuExitRequested();
    const left = deadline - performance.now();
    if (left <= 0) throw new Error(`restore requested but no state was posted within ${RESTORE_DEADLINE_MS} ms`);
    control.waitBell(bell, left);
  }
}

function publishProgress(): void {
  control.publishProgress(cpu.s[S_PC]!, cpu.instret());
}

/** Writes the page frames the host has posted (incoming migration), if any. */
function applyPostedFrames(): void {
  if (pager.framesWaiting()) pager.applyPosted();
}

/** Dirty-log switch (DESIGN §3): only here, at a slice boundary, does the active log change. */
function serveDirtySync(): void {
  if (!mem.dirtyLog.serveSwitch(useDirtyLog)) return;
  // Every page's first write in the new log takes the slow path, so a budget sized on fast
  // slices could run for tens of ms: start short and let the next slices measure again. A
  // pause asked for right after a sync (the switch-over) is then answered in about 1 ms.
  budget = MIN_SLICE_INSNS;
}

/** Sleeps until the host rings the doorbell or `ms` pass; returns early on a ring. */
function sleep(bell: number, ms: number): void {
  serveDirtySync();
  applyPostedFrames();
  if (control.bell() !== bell) return;
  control.waitBell(bell, ms);
  serveDirtySync();
  applyPostedFrames();
}

/** The last command answered (by a 'paused' or 'halted' message); the host numbers from 1. */
let answered = 0;
/** The Step command being carried out, and the instret it stops at (-1: none). */
let stepSeq = -1;
let stepTarget = -1;
let budget = 100_000;
let halted = init.halted !== undefined;
if (init.halted) cpu.halt(init.halted.exitCode, init.halted.reason);

function enterPaused(seq: number): void {
  // The host may clear both dirty logs while this thread is stopped: forget what was marked first.
  cpu.forgetMarkedPages();
  flushConsole();
  machine.clock.freeze();
  cpu.syncState();
  publishProgress();
  control.setState(VcpuState.Paused);
  answered = seq;
  post({ type: 'paused', seq, devices: machine.deviceStates(), instret: cpu.instret() });
}

function enterHalted(reason: string, exitCode: number): void {
  cpu.forgetMarkedPages();
  halted = true;
  flushConsole();
  machine.clock.freeze();
  cpu.syncState();
  publishProgress();
  control.setState(VcpuState.Halted);
  post({ type: 'halted', exitCode, reason, devices: machine.deviceStates(), instret: cpu.instret() });
}

/** Whether the guest stays stopped for this command (answering it once); otherwise sets up a step. */
function stoppedBy(cmd: Command): boolean {
  if (cmd.kind === Cmd.Pause || (cmd.kind === Cmd.Step && cmd.seq === answered)) {
    stepTarget = -1;
    if (cmd.seq !== answered) enterPaused(cmd.seq);
    return true;
  }
  if (cmd.kind === Cmd.Step) {
    if (stepSeq !== cmd.seq) {
      stepSeq = cmd.seq;
      stepTarget = cpu.instret() + cmd.steps;
    }
  } else {
    stepTarget = -1; // a Run supersedes a step in progress
  }
  return false;
}

function loop(): void {
  for (;;) {
    const bell = control.bell();
    serveDirtySync();
    const cmd = control.command();
    if (cmd.kind === Cmd.Exit) return;
    // A restore requested before this command was issued is seen here, before the command acts.
    const framesBefore = control.restoreRequest();
    if (framesBefore !== undefined) {
      restore(framesBefore);
      if (halted) {
        enterHalted(cpu.exitReason, cpu.exitCode);
        continue;
      }
    }
    if (cmd.kind === Cmd.Halt && !halted) {
      answered = cmd.seq;
      enterHalted('stopped', 0);
      continue;
    }
    if (halted) {
      if (cmd.seq !== answered) {
        answered = cmd.seq;
        post({ type: 'paused', seq: cmd.seq, devices: machine.deviceStates(), instret: cpu.instret() });
      }
      sleep(bell, 1000);
      continue;
    }
    if (stoppedBy(cmd)) {
      sleep(bell, 1000);
      continue;
    }
    // Post-copy pushes land between slices too, not only while the guest waits for a page.
    applyPostedFrames();
    machine.clock.thaw();
    control.setState(VcpuState.Running);

    let n = budget;
    if (init.insnLimit > 0) n = Math.min(n, init.insnLimit - cpu.instret());
    if (stepTarget >= 0) n = Math.min(n, stepTarget - cpu.instret());
    const t0 = performance.now();
    const before = cpu.instret();
    faultedInSlice = false;
    sliceStart = t0;
    // A ring (a pause, a dirty-log switch, a frame) ends the slice within an eighth of it (slice.ts).
    const exit = n > 0 ? runSlice(cpu, n, () => control.bell() !== bell) : StepExit.Budget;
    const t1 = performance.now();
    const done = cpu.instret() - before;
    if (t1 > t0 && done > 0 && !faultedInSlice) {
      // Aim each slice at ~SLICE_MS so pause and dirty-sync requests are answered promptly:
      // shrink at once after a slow slice, grow gently after fast ones.
      const fit = (done / (t1 - t0)) * SLICE_MS;
      const next = fit < budget ? fit : budget * 0.5 + fit * 0.5;
      budget = Math.max(MIN_SLICE_INSNS, Math.min(MAX_SLICE_INSNS, Math.round(next)));
    }
    publishProgress();

    if (exit === StepExit.Halt) {
      enterHalted(cpu.exitReason, cpu.exitCode);
      continue;
    }
    if (init.insnLimit > 0 && cpu.instret() >= init.insnLimit) {
      enterHalted('insn-limit', 0);
      continue;
    }
    if (stepTarget >= 0 && cpu.instret() >= stepTarget) {
      stepTarget = -1;
      enterPaused(stepSeq);
      continue;
    }
    if (t1 - lastFlush >= OUT_FLUSH_MS || outLen >= 4096) flushConsole();
    if (exit === StepExit.Wfi) {
      flushConsole();
      const ms = cpu.msUntilWake();
      sleep(bell, Number.isFinite(ms) ? ms : 1000);
      continue;
    }
    const throttle = control.throttle();
    if (throttle > 0) sleep(bell, ((t1 - t0) * throttle) / (100 - Math.min(throttle, 99)));
  }
}

try {
  loop();
  flushConsole();
  cpu.syncState();
  post({ type: 'exited' });
} catch (err) {
  flushConsole();
  if (err instanceof VcpuExitRequested) post({ type: 'exited' });
  else post({ type: 'fatal', message: err instanceof Error ? err.stack ?? err.message : String(err) });
}
