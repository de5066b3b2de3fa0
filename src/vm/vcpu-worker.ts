/**
 * The vCPU thread of one VM: runs the guest in ~1 ms slices and, between slices, answers the
 * host through the control block (see control.ts) and the dirty-log handshake (DESIGN §3).
 */
import { parentPort, receiveMessageOnPort } from 'node:worker_threads';
import { StepExit } from '../cpu/cpu.ts';
import { DIRTY_ACK, DIRTY_ACTIVE, DIRTY_REQ, GuestMemory } from '../memory/guest-memory.ts';
import {
  C_BLOCKED_US, C_CMD, C_CMD_SEQ, C_DOORBELL, C_PAGES_BEFORE_RESTORE, C_PAGES_DONE, C_PAGES_FILLED, C_PAGES_POSTED, C_TRAPS, C_RESTORE, C_INSTRET_HI, C_INSTRET_LO, C_PC, C_RX_HEAD, C_RX_TAIL, C_STATE, C_STEP_N, C_THROTTLE,
  Cmd, RX_RING_SIZE, VcpuState,
} from './control.ts';
import { applyPageFrame, fillMissingPages } from '../memory/page-frame.ts';
import { PAGE_PRESENT, PAGE_REQUESTED } from '../memory/layout.ts';
import { Machine, type MachineIo } from './machine.ts';
import type { RestoreMessage, VcpuInit, VcpuMessage } from './vcpu-protocol.ts';

const port = parentPort!;
// A thread may be started ahead of need (a host's spare): its VM arrives as the first message.
const init = await new Promise<VcpuInit>((resolve) => port.once('message', (m: VcpuInit) => resolve(m)));

const ctl = new Int32Array(init.control);
const rxRing = new Uint8Array(init.rx);
const mem = new GuestMemory(init.memory);

const SLICE_MS = 1;
const MIN_SLICE_INSNS = 10_000;
const MAX_SLICE_INSNS = 2_000_000;
const OUT_FLUSH_MS = 2;
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
    available: () => Atomics.load(ctl, C_RX_HEAD) !== Atomics.load(ctl, C_RX_TAIL),
    take: () => {
      const tail = Atomics.load(ctl, C_RX_TAIL);
      const b = rxRing[tail % RX_RING_SIZE]!;
      Atomics.store(ctl, C_RX_TAIL, tail + 1);
      return b;
    },
  },
};
/**
 * The post-copy trap (DESIGN §3): a page that is not present is requested once (REQUESTED
 * marks it), then the vCPU blocks in Atomics.wait on the page's state word until the host has
 * written the page and stored PRESENT.
 */
io.missingPage = (page: number): void => {
  const ps = mem.pageState;
  Atomics.add(ctl, C_TRAPS, 1);
  // A pushed frame posted here may hold it already. (Safe mid-instruction: only missing pages
  // are written, and a missing page is in no TLB or decode cache.)
  applyPages();
  if (Atomics.load(ps, page) & PAGE_PRESENT) return;
  const before = Atomics.or(ps, page, PAGE_REQUESTED);
  if ((before & (PAGE_PRESENT | PAGE_REQUESTED)) === 0) {
    flushConsole();
    post({ type: 'fault', page });
  }
  const t0 = performance.now();
  // Wait on the doorbell, rung for a posted frame and for a page the host filled itself;
  // reading it before checking the page leaves no lost wakeup.
  // Posted frames are written one at a time, so the page is taken as soon as it is here.
  for (;;) {
    const bell = Atomics.load(ctl, C_DOORBELL);
    while ((Atomics.load(ps, page) & PAGE_PRESENT) === 0 && applyPageFrames(1) > 0) Atomics.notify(ctl, C_PAGES_DONE);
    if (Atomics.load(ps, page) & PAGE_PRESENT) break;
    Atomics.wait(ctl, C_DOORBELL, bell, 1000);
  }
  Atomics.add(ctl, C_BLOCKED_US, Math.round((performance.now() - t0) * 1000));
};
const cpuState = new Int32Array(init.cpu);
const machine = new Machine(mem, cpuState, init.config, io, init.devices);
const cpu = machine.cpu;

/**
 * Restore into this (paused) thread: the host has written the CPU words into the shared state
 * and posted the device state on the state port; the machine is rebuilt around them. This is
 * how an incoming migration resumes without waiting for a new thread to start.
 */
function restore(): void {
  // Every page frame posted before the restore request is in RAM first.
  const before = Atomics.load(ctl, C_PAGES_BEFORE_RESTORE);
  applyPages();
  for (let i = 0; Atomics.load(ctl, C_PAGES_DONE) < before && i < 200; i++) {
    Atomics.wait(ctl, C_DOORBELL, Atomics.load(ctl, C_DOORBELL), 1);
    applyPages();
  }
  if (Atomics.load(ctl, C_PAGES_DONE) < before) throw new Error('restore requested but page frames are missing');
  // The host posts the state before it bumps C_RESTORE; allow for a late delivery all the same.
  let got = receiveMessageOnPort(init.statePort);
  for (let i = 0; got === undefined && i < 200; i++) {
    Atomics.wait(ctl, C_DOORBELL, Atomics.load(ctl, C_DOORBELL), 1);
    got = receiveMessageOnPort(init.statePort);
  }
  if (got === undefined) throw new Error('restore requested but no state was posted');
  const st = got.message as RestoreMessage;
  machine.load(st.devices);
  halted = false;
  if (st.halted) {
    cpu.halt(st.halted.exitCode, st.halted.reason);
    halted = true;
  }
}

function publishProgress(): void {
  const n = cpu.instret();
  Atomics.store(ctl, C_PC, cpu.s[33]!);
  Atomics.store(ctl, C_INSTRET_LO, n % 2 ** 32 | 0);
  Atomics.store(ctl, C_INSTRET_HI, Math.floor(n / 2 ** 32));
}

/** Applies every page frame the host has posted so far (incoming migration), in order. */
function applyPages(): void {
  if (applyPageFrames(Infinity) > 0) Atomics.notify(ctl, C_PAGES_DONE);
}

/** Applies up to `max` posted page frames, in order; returns how many. */
function applyPageFrames(max: number): number {
  let n = 0;
  let got = n < max ? receiveMessageOnPort(init.pagesPort) : undefined;
  while (got !== undefined) {
    const frame = got.message as Uint8Array;
    // Pre-copy frames are written as they come; post-copy pushes fill missing pages only (C_PAGES_BEFORE_RESTORE).
    if (Atomics.load(ctl, C_PAGES_DONE) >= Atomics.load(ctl, C_PAGES_BEFORE_RESTORE)) {
      Atomics.add(ctl, C_PAGES_FILLED, fillMissingPages(mem.ram, mem.pageState, mem.pages, frame).length);
    } else {
      applyPageFrame(mem.ram, mem.pageState, mem.pages, frame);
    }
    Atomics.add(ctl, C_PAGES_DONE, 1);
    got = ++n < max ? receiveMessageOnPort(init.pagesPort) : undefined;
  }
  return n;
}

/** Dirty-log switch (DESIGN §3): only here, at a slice boundary, does the active log change. */
function serveDirtySync(): void {
  const req = Atomics.load(mem.dirtyCtl, DIRTY_REQ);
  if (req === Atomics.load(mem.dirtyCtl, DIRTY_ACK)) return;
  const next = (Atomics.load(mem.dirtyCtl, DIRTY_ACTIVE) & 1) ^ 1;
  cpu.setDirtyLog(mem.dirtyLogs[next]!);
  Atomics.store(mem.dirtyCtl, DIRTY_ACTIVE, next);
  Atomics.store(mem.dirtyCtl, DIRTY_ACK, req);
  Atomics.notify(mem.dirtyCtl, DIRTY_ACK);
  // Every page's first write in the new log takes the slow path, so a budget sized on fast
  // slices could run for tens of ms: start short and let the next slices measure again. A
  // pause asked for right after a sync (the switch-over) is then answered in about 1 ms.
  budget = MIN_SLICE_INSNS;
}

/** Sleeps until the host rings the doorbell or `ms` pass; returns early on a ring. */
function sleep(bell: number, ms: number): void {
  serveDirtySync();
  applyPages();
  if (Atomics.load(ctl, C_DOORBELL) !== bell) return;
  Atomics.wait(ctl, C_DOORBELL, bell, ms);
  serveDirtySync();
  applyPages();
}

let ackedSeq = 0; // the host numbers commands from 1
let restored = 0;
let budget = 100_000;
let stepTarget = -1;
let halted = init.halted !== undefined;
if (init.halted) cpu.halt(init.halted.exitCode, init.halted.reason);

function enterPaused(seq: number): void {
  flushConsole();
  machine.clock.freeze();
  cpu.syncState();
  publishProgress();
  Atomics.store(ctl, C_STATE, VcpuState.Paused);
  ackedSeq = seq;
  post({ type: 'paused', seq, devices: machine.deviceStates(), instret: cpu.instret() });
}

function enterHalted(reason: string, exitCode: number): void {
  halted = true;
  flushConsole();
  machine.clock.freeze();
  cpu.syncState();
  publishProgress();
  Atomics.store(ctl, C_STATE, VcpuState.Halted);
  post({ type: 'halted', exitCode, reason, devices: machine.deviceStates(), instret: cpu.instret() });
}

function loop(): void {
  for (;;) {
    const bell = Atomics.load(ctl, C_DOORBELL);
    serveDirtySync();
    const cmd = Atomics.load(ctl, C_CMD) as Cmd;
    const seq = Atomics.load(ctl, C_CMD_SEQ);
    if (cmd === Cmd.Exit) return;
    const restoreReq = Atomics.load(ctl, C_RESTORE);
    if (restoreReq !== restored) {
      restored = restoreReq;
      restore();
      if (halted) {
        enterHalted(cpu.exitReason, cpu.exitCode);
        continue;
      }
    }
    if (cmd === Cmd.Halt && !halted) {
      ackedSeq = seq;
      enterHalted('stopped', 0);
      continue;
    }
    if (halted) {
      if (seq !== ackedSeq) {
        ackedSeq = seq;
        post({ type: 'paused', seq, devices: machine.deviceStates(), instret: cpu.instret() });
      }
      sleep(bell, 1000);
      continue;
    }
    if (cmd === Cmd.Pause || (cmd === Cmd.Step && seq === ackedSeq)) {
      if (seq !== ackedSeq) enterPaused(seq);
      sleep(bell, 1000);
      continue;
    }
    if (cmd === Cmd.Step && stepTarget < 0) stepTarget = cpu.instret() + Atomics.load(ctl, C_STEP_N);
    // Post-copy pushes land between slices too, not only while the guest waits for a page.
    if (Atomics.load(ctl, C_PAGES_POSTED) !== Atomics.load(ctl, C_PAGES_DONE)) applyPages();
    machine.clock.thaw();
    Atomics.store(ctl, C_STATE, VcpuState.Running);

    let n = budget;
    if (init.insnLimit > 0) n = Math.min(n, init.insnLimit - cpu.instret());
    if (stepTarget >= 0) n = Math.min(n, stepTarget - cpu.instret());
    const t0 = performance.now();
    const before = cpu.instret();
    const exit = n > 0 ? cpu.run(n) : StepExit.Budget;
    const t1 = performance.now();
    const done = cpu.instret() - before;
    if (t1 > t0 && done > 0) {
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
      enterPaused(seq);
      continue;
    }
    if (t1 - lastFlush >= OUT_FLUSH_MS || outLen >= 4096) flushConsole();
    if (exit === StepExit.Wfi) {
      flushConsole();
      const ms = cpu.msUntilWake();
      sleep(bell, Number.isFinite(ms) ? ms : 1000);
      continue;
    }
    const throttle = Atomics.load(ctl, C_THROTTLE);
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
  post({ type: 'fatal', message: err instanceof Error ? err.stack ?? err.message : String(err) });
}
