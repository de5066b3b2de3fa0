import { EventEmitter } from 'node:events';
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import { CPU_STATE_WORDS, createCpuState, readInstret, S_PC } from '../cpu/state.ts';
import type { ClockMode } from '../devices/clock.ts';
import { FerryError } from '../errors.ts';
import { computeDigest } from './digest.ts';
import { GuestMemory } from '../memory/guest-memory.ts';
import { DEFAULT_RAM_SIZE } from '../memory/layout.ts';
import { reclaimSoon } from '../memory/reclaim.ts';
import { bootElf } from './boot.ts';
import { Cmd, HostControlBlock } from './control-block.ts';
import type { DeviceStates, MachineConfig } from './machine.ts';
import { HostPager } from './pager.ts';
import { VM_STATE_VERSION } from './state-schema.ts';
import type { HaltInfo, RestoreMessage, VcpuInit, VcpuMessage } from './vcpu-protocol.ts';
import { takeVcpuThread } from './vcpu-threads.ts';

export type VmState = 'created' | 'running' | 'paused' | 'halted' | 'destroyed';

export interface VmCreateOptions {
  elf: Uint8Array;
  memory?: number;
  icount?: boolean;
  /** Halt after exactly this many retired instructions; 0 or absent = no limit. */
  insnLimit?: number;
  args?: readonly string[];
}

/** CPU + device state of a paused VM, plain and serializable (msgpack/JSON); RAM travels separately. */
export interface VmStateExport {
  version: typeof VM_STATE_VERSION;
  config: MachineConfig;
  insnLimit: number;
  cpu: number[];
  devices: DeviceStates;
  /** Set when the guest had halted (powered off, limit reached, stopped). */
  halted?: HaltInfo;
}

export { VM_STATE_VERSION };

/** Console input queued on the host for a guest that does not read it, at most (beyond its ring). */
const MAX_PENDING_INPUT = 1024 * 1024;

export interface VmInfo {
  state: VmState;
  pc: number;
  instret: number;
  mips: number;
  memory: number;
  icount: boolean;
  insnLimit: number;
  exitCode: number | null;
  haltReason: string | null;
}


interface Waiter {
  seq: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

/**
 * The host side of one VM: owns its shared buffers and its vCPU worker, and drives it through
 * the control block (control-block.ts), the dirty log (memory/dirty-log.ts) and the pager
 * (pager.ts); docs/shared-memory.md lists every shared word. Events: 'console' (Uint8Array),
 * 'state' (VmState), 'halted' ({ exitCode, reason }), 'error' (Error, the worker died).
 */
export class Vm extends EventEmitter {
  readonly memory: GuestMemory;
  readonly cpuState: Int32Array;
  readonly config: MachineConfig;
  readonly insnLimit: number;
  private readonly control: HostControlBlock;
  private readonly pager: HostPager;
  private faulted: Uint8Array | undefined;
  private readonly worker: Worker;
  private readonly statePort: MessagePort;
  private readonly pagesPort: MessagePort;
  private stateName: VmState = 'created';
  private devices: DeviceStates | undefined;
  private waiters: Waiter[] = [];
  /** waitHalted callers: settled by the 'halted' message, a failure, or destroy. */
  private haltWaiters: { resolve: (h: HaltInfo) => void; reject: (e: Error) => void }[] = [];
  private pendingInput: number[] = [];
  private inputTimer: NodeJS.Timeout | undefined;
  private exitCodeValue: number | null = null;
  private haltReasonValue: string | null = null;
  private exited: Promise<void>;
  private rate = { t: performance.now(), n: 0, mips: 0 };

  /** Boots a fresh VM from an ELF image; it stays in `created` until `start()`. */
  static create(o: VmCreateOptions): Vm {
    const memory = GuestMemory.allocate(o.memory ?? DEFAULT_RAM_SIZE);
    const boot = bootElf(memory, o.elf, o.args ?? []);
    const clock: ClockMode = o.icount ? 'icount' : 'realtime';
    return new Vm(memory, boot.cpuState, { ramSize: memory.size, clock, tohost: boot.tohost }, o.insnLimit ?? 0);
  }

  constructor(memory: GuestMemory, cpuState: Int32Array, config: MachineConfig, insnLimit: number, devices?: DeviceStates, halted?: HaltInfo) {
    super();
    if (!Number.isSafeInteger(insnLimit) || insnLimit < 0) {
      throw new FerryError('EINVAL', `instruction limit ${insnLimit} must be a non-negative integer`);
    }
    this.memory = memory;
    this.cpuState = cpuState;
    this.config = config;
    this.insnLimit = insnLimit;
    this.devices = devices;
    this.control = new HostControlBlock(cpuState[S_PC]!, readInstret(cpuState));
    const { port1, port2 } = new MessageChannel();
    this.statePort = port1;
    const pages = new MessageChannel();
    this.pagesPort = pages.port1;
    this.pager = new HostPager(this.control, memory, this.pagesPort);
    if (halted) {
      this.stateName = 'halted';
      this.exitCodeValue = halted.exitCode;
      this.haltReasonValue = halted.reason;
    }
    const init: VcpuInit = {
      statePort: port2,
      pagesPort: pages.port2,
      ...(halted ? { halted } : {}),
      memory: memory.buffers,
      cpu: cpuState.buffer as SharedArrayBuffer,
      control: this.control.buffers,
      config,
      insnLimit,
      ...(devices ? { devices } : {}),
    };
    this.worker = takeVcpuThread();
    this.worker.postMessage(init, [port2, pages.port2]);
    this.worker.on('message', (m: VcpuMessage) => this.onMessage(m));
    this.exited = new Promise((resolve) => {
      this.worker.once('exit', () => resolve());
    });
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => {
      if (this.stateName !== 'destroyed') this.fail(new FerryError('EVCPU', `vCPU thread exited unexpectedly (code ${code})`));
    });
  }

  get state(): VmState {
    return this.stateName;
  }

  get exitCode(): number | null {
    return this.exitCodeValue;
  }

  /** A method, not a field read, so TypeScript does not narrow it across an await. */
  private isHalted(): boolean {
    return this.stateName === 'halted';
  }

  private setState(s: VmState): void {
    if (this.stateName === s) return;
    this.stateName = s;
    this.emit('state', s);
  }

  private onMessage(m: VcpuMessage): void {
    switch (m.type) {
      case 'console':
        this.emit('console', m.data);
        if (this.pendingInput.length) this.pumpInput();
        break;
      case 'paused': {
        this.devices = m.devices;
        const seq = this.control.answered(m.seq);
        const ready = this.waiters.filter((w) => w.seq <= seq);
        this.waiters = this.waiters.filter((w) => w.seq > seq);
        for (const w of ready) w.resolve();
        break;
      }
      case 'halted':
        this.devices = m.devices;
        this.exitCodeValue = m.exitCode;
        this.haltReasonValue = m.reason;
        this.setState('halted');
        for (const w of this.waiters.splice(0)) w.resolve();
        for (const w of this.haltWaiters.splice(0)) w.resolve({ exitCode: m.exitCode, reason: m.reason });
        this.emit('halted', { exitCode: m.exitCode, reason: m.reason });
        break;
      case 'fault':
        // Remembered for the page map (where a post-copy's faults landed), for this VM's life here.
        if (m.page >= 0 && m.page < this.memory.pages) (this.faulted ??= new Uint8Array(this.memory.pages))[m.page] = 1;
        this.emit('fault', m.page);
        break;
      case 'fatal':
        this.fail(new FerryError('EVCPU', `vCPU failed: ${m.message}`));
        break;
      case 'exited':
        break;
    }
  }

  private fail(err: Error): void {
    for (const w of this.waiters.splice(0)) w.reject(err);
    for (const w of this.haltWaiters.splice(0)) w.reject(err);
    if (this.stateName === 'destroyed') return;
    this.setState('destroyed');
    this.interruptWaits();
    this.emit('error', err);
  }

  /** Wakes the host's waits on shared words, so they see that the VM is gone. */
  private interruptWaits(): void {
    this.memory.dirtyLog.interruptWaits();
    this.control.interruptWaits();
  }

  private command(cmd: Cmd, steps = 0): number {
    if (this.stateName === 'destroyed') throw new FerryError('EDESTROYED', 'the VM has been destroyed');
    return this.control.command(cmd, steps);
  }

  private acked(seq: number): Promise<void> {
    return new Promise((resolve, reject) => this.waiters.push({ seq, resolve, reject }));
  }

  start(): void {
    if (this.stateName === 'halted') return;
    this.command(Cmd.Run);
    this.setState('running');
  }

  resume(): void {
    this.start();
  }

  /** Stops the vCPU at its next slice boundary (within ~1 ms) and waits for it to say so. */
  async pause(): Promise<void> {
    if (this.stateName === 'halted' || this.stateName === 'paused' || this.stateName === 'created') {
      if (this.stateName === 'created') await this.acked(this.command(Cmd.Pause));
      return;
    }
    const seq = this.command(Cmd.Pause);
    await this.acked(seq);
    if (!this.isHalted()) this.setState('paused');
  }

  /** Halts the guest for good (reason 'stopped'); its RAM, CPU and devices stay readable. */
  async stop(): Promise<void> {
    if (this.isHalted()) return;
    // The answer is a message, handled on a later turn: waiting after the command misses nothing.
    this.command(Cmd.Halt);
    await this.waitHalted();
  }

  /** Executes exactly `n` more instructions (fewer if the guest halts), then stays paused. */
  async step(n: number): Promise<void> {
    if (!Number.isSafeInteger(n) || n < 0) throw new FerryError('EINVAL', `step count ${n} must be a non-negative integer`);
    await this.pause();
    if (this.stateName === 'halted' || n === 0) return;
    const seq = this.command(Cmd.Step, n);
    await this.acked(seq);
    if (!this.isHalted()) this.setState('paused');
  }

  /**
   * Resolves once the guest has halted (powered off or reached its instruction limit); rejects if
   * the vCPU fails, or with EDESTROYED if the VM is destroyed first.
   */
  waitHalted(): Promise<{ exitCode: number; reason: string }> {
    if (this.stateName === 'halted') return Promise.resolve({ exitCode: this.exitCodeValue!, reason: this.haltReasonValue! });
    if (this.stateName === 'destroyed') return Promise.reject(new FerryError('EDESTROYED', 'the VM has been destroyed'));
    return new Promise((resolve, reject) => this.haltWaiters.push({ resolve, reject }));
  }

  /** Queues bytes for the guest's UART receiver. */
  sendInput(bytes: Uint8Array): void {
    if (this.pendingInput.length + bytes.length > MAX_PENDING_INPUT) {
      throw new FerryError('EAGAIN', `the guest has not read its last ${this.pendingInput.length} bytes of console input; try again later`);
    }
    for (const b of bytes) this.pendingInput.push(b);
    this.pumpInput();
  }

  private pumpInput(): void {
    const moved = this.control.writeInput(this.pendingInput);
    if (moved > 0) this.pendingInput.splice(0, moved);
    if (this.pendingInput.length > 0 && this.inputTimer === undefined) {
      this.inputTimer = setTimeout(() => { this.inputTimer = undefined; this.pumpInput(); }, 5);
    }
  }

  /** Throttles the vCPU to run (100 - percent) % of the time (auto-converge). */
  setThrottle(percent: number): void {
    this.control.setThrottle(Math.max(0, Math.min(99, Math.round(percent))));
  }

  /**
   * One dirty-log round (DESIGN §3): ask the vCPU to switch logs at its next slice boundary,
   * wait for its acknowledgement, then take and clear the log it left. Rounds run one at a time;
   * fails with EDESTROYED if the VM goes meanwhile, ETIMEDOUT if the vCPU does not answer in 30 s.
   */
  syncDirty(): Promise<Uint32Array> {
    return this.memory.dirtyLog.sync(() => this.control.ring(), () => {
      if (this.stateName === 'destroyed') throw new FerryError('EDESTROYED', 'the VM has been destroyed');
    });
  }

  /**
   * Hands an incoming page frame to this (not yet started) VM's vCPU thread, which writes it
   * into RAM in order (see pager.ts). A frame that owns its whole ArrayBuffer moves without a copy.
   */
  /** Hands a checked page frame to the vCPU thread; `owned`: its buffer may move there (see Pager.post). */
  postPageFrame(frame: Uint8Array, owned?: boolean): void {
    if (this.stateName !== 'created' && !this.postcopyPages) throw new FerryError('ESTATE', 'page frames go only to a VM that has not started');
    this.pager.post(frame, owned);
  }

  /** Post-copy: from the restore on, posted frames fill missing pages while the guest runs. */
  private postcopyPages = false;
  acceptPostcopyPages(): void {
    this.postcopyPages = true;
  }

  /** Post-copy: vCPU accesses that found their page missing so far. */
  traps(): number {
    return this.pager.traps();
  }

  /** The pages this VM faulted on since it was made here (post-copy), one byte each; undefined if none. */
  faultedPages(): Uint8Array | undefined {
    return this.faulted;
  }

  /** Pages the vCPU thread has filled from posted post-copy frames so far. */
  pagesFilled(): number {
    return this.pager.pagesFilled();
  }

  /** Frames the vCPU thread has written so far (a counter). */
  pageFramesDone(): number {
    return this.pager.done();
  }

  /** Resolves when the vCPU has written more frames than `seen`, after `ms`, or when the VM goes. */
  async pageFramesDoneAfter(seen: number, ms: number): Promise<void> {
    await this.pager.doneAfter(seen, ms);
  }

  /** Wakes a vCPU blocked on a missing page the host has just filled. */
  wakeVcpu(): void {
    this.pager.wake();
  }

  /** Post-copy, on this thread: fills the missing pages of a checked page frame and wakes the vCPU; returns them. */
  fillMissingPages(frame: Uint8Array): number[] {
    return this.pager.fill(frame);
  }

  /** Milliseconds the vCPU has spent blocked on missing pages (post-copy). */
  blockedMs(): number {
    return this.pager.blockedMs();
  }

  /** Post-copy: how many blocked traps waited how long (vm/latency-histogram.ts buckets). */
  blockedHistogram(): number[] {
    return this.pager.blockedHistogram();
  }

  /** Page frames posted but not yet written into RAM. */
  pageFramesPending(): number {
    return this.pager.pending();
  }

  /**
   * Every page dirtied since the last sync, taken without a handshake: the VM must be paused or
   * halted (no vCPU writes), so both logs can be read and cleared directly.
   */
  /** dirtyWhileStopped, keeping only the pages whose bit in `known` is clear. */
  dirtyWhileStoppedExcept(known: Uint8Array): number[] {
    if (this.stateName !== 'paused' && this.stateName !== 'halted') {
      throw new FerryError('ESTATE', `VM is ${this.stateName}; the dirty log can only be taken directly while it is stopped`);
    }
    return this.memory.dirtyLog.harvestBothStoppedExcept(known);
  }

  dirtyWhileStopped(): Uint32Array {
    if (this.stateName !== 'paused' && this.stateName !== 'halted') {
      throw new FerryError('ESTATE', `VM is ${this.stateName}; the dirty log can only be taken directly while it is stopped`);
    }
    return this.memory.dirtyLog.harvestBothStopped();
  }

  info(): VmInfo {
    const instret = this.instret();
    const now = performance.now();
    if (now - this.rate.t >= 200) {
      this.rate.mips = this.stateName === 'running' ? (instret - this.rate.n) / ((now - this.rate.t) * 1000) : 0;
      this.rate = { t: now, n: instret, mips: this.rate.mips };
    }
    return {
      state: this.stateName,
      pc: this.control.pc(),
      instret,
      mips: this.rate.mips,
      memory: this.memory.size,
      icount: this.config.clock === 'icount',
      insnLimit: this.insnLimit,
      exitCode: this.exitCodeValue,
      haltReason: this.haltReasonValue,
    };
  }

  instret(): number {
    return this.control.instret();
  }

  /** CPU and device state of a paused or halted VM, as plain data. */
  snapshot(): { cpu: Int32Array; devices: DeviceStates } {
    if (this.stateName !== 'paused' && this.stateName !== 'halted' && this.stateName !== 'created') {
      throw new FerryError('ESTATE', `VM is ${this.stateName}; pause it first`);
    }
    if (this.devices === undefined) throw new FerryError('ESTATE', 'device state is not known yet; pause the VM first');
    return { cpu: this.cpuState.slice(), devices: this.devices };
  }

  /** CPU + device state as plain data; the VM must be paused, halted or not yet started. */
  exportState(): VmStateExport {
    const snap = this.snapshot();
    return {
      version: VM_STATE_VERSION, config: { ...this.config }, insnLimit: this.insnLimit, cpu: Array.from(snap.cpu), devices: snap.devices,
      ...(this.stateName === 'halted' ? { halted: { exitCode: this.exitCodeValue ?? 0, reason: this.haltReasonValue ?? 'halted' } } : {}),
    };
  }

  /**
   * Loads exported CPU + device state into this VM's already-running (never started) vCPU
   * thread, so an incoming migration resumes without waiting for a new thread. The memory
   * must already hold the guest's RAM.
   */
  async restore(st: VmStateExport, run: 'running' | 'paused' | 'created' | 'halted' = 'created', onRunning?: () => void): Promise<void> {
    if (this.stateName !== 'created') throw new FerryError('ESTATE', `restore needs a VM that never ran (this one is ${this.stateName})`);
    // The vCPU publishes progress while it answers a command; the host writes it here, so none may be in flight.
    if (this.waiters.length > 0) throw new FerryError('ESTATE', 'restore needs a VM with no pause or step in flight');
    checkCompatible(st, this.memory, this.config, this.insnLimit);
    // Plain stores: the vCPU reads these words only after it has seen the restore request (Atomics).
    this.cpuState.set(st.cpu);
    const msg: RestoreMessage = { devices: st.devices, ...(st.halted ? { halted: st.halted } : {}) };
    this.statePort.postMessage(msg);
    this.devices = st.devices;
    this.control.setProgress(this.cpuState[S_PC]!, readInstret(this.cpuState));
    this.control.requestRestore();
    if (st.halted) {
      this.control.ring();
      await this.waitHalted();
      return;
    }
    if (run === 'running') {
      // The vCPU restores before it reads this command: nothing to wait for. `onRunning` runs
      // first (nothing can fail from here on): a migration's acknowledgement then leaves before
      // the ring wakes the vCPU thread, which on a busy machine can take this core for a
      // millisecond or more; and before the state listeners (logs, control pushes).
      onRunning?.();
      this.command(Cmd.Run);
      this.setState('running');
      return;
    }
    await this.acked(this.command(Cmd.Pause));
    // A guest that had run and was paused arrives paused (resume, not start, continues it).
    if (run === 'paused') this.setState('paused');
  }

  /**
   * Builds a VM (in `created`, not running) over `memory` from exported state: restore is
   * construction. `memory` must already hold the guest's RAM and page states.
   */
  static importState(memory: GuestMemory, st: VmStateExport): Vm {
    checkCompatible(st, memory, st.config, st.insnLimit);
    const cpu = createCpuState();
    cpu.set(st.cpu);
    return new Vm(memory, cpu, { ...st.config }, st.insnLimit, st.devices, st.halted);
  }

  /** SHA-256 over RAM, CPU and devices (DESIGN §2); pauses the VM if it is running and leaves it paused. */
  async digest(): Promise<string> {
    if (this.stateName === 'running' || this.stateName === 'created') await this.pause();
    const snap = this.snapshot();
    return computeDigest(this.memory, snap.cpu, snap.devices);
  }

  get pc(): number {
    return this.cpuState[S_PC]! >>> 0;
  }

  /** The pc the vCPU last published (control block, docs/shared-memory.md): a slice old while it runs. */
  get publishedPc(): number {
    return this.control.pc();
  }

  get retired(): number {
    return readInstret(this.cpuState);
  }

  /** Stops the vCPU thread for good; the VM's RAM is given back soon after (see reclaimSoon). */
  async destroy(): Promise<void> {
    try {
      await this.stopThread();
    } finally {
      reclaimSoon();
    }
  }

  private async stopThread(): Promise<void> {
    if (this.inputTimer) clearTimeout(this.inputTimer);
    this.statePort.close();
    this.pagesPort.close();
    if (this.stateName === 'destroyed') {
      await this.worker.terminate();
      return;
    }
    this.setState('destroyed');
    this.control.command(Cmd.Exit);
    this.interruptWaits();
    const timer = setTimeout(() => void this.worker.terminate(), 1000);
    await this.exited;
    clearTimeout(timer);
    for (const w of [...this.waiters.splice(0), ...this.haltWaiters.splice(0)]) w.reject(new FerryError('EDESTROYED', 'the VM has been destroyed'));
  }
}

function checkCompatible(st: VmStateExport, memory: GuestMemory, config: MachineConfig, insnLimit: number): void {
  if (st.version !== VM_STATE_VERSION) throw new FerryError('EVERSION', `VM state version ${st.version} is not supported (want ${VM_STATE_VERSION})`);
  if (st.config.ramSize !== memory.size) {
    throw new FerryError('EINVAL', `state is for ${st.config.ramSize} bytes of RAM but memory has ${memory.size}`);
  }
  if (st.config.clock !== config.clock || st.config.tohost !== config.tohost || st.insnLimit !== insnLimit) {
    throw new FerryError('EINVAL', 'state was saved from a VM with another clock mode, tohost or instruction limit');
  }
  if (st.cpu.length !== CPU_STATE_WORDS) throw new FerryError('EINVAL', `CPU state has ${st.cpu.length} words, expected ${CPU_STATE_WORDS}`);
}
