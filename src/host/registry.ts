import { EventEmitter } from 'node:events';
import { FerryError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { checkRamSize } from '../memory/guest-memory.ts';
import { DEFAULT_RAM_SIZE } from '../memory/layout.ts';
import { formatBootArgs } from '../vm/boot.ts';
import { loadBuiltProgram } from '../vm/programs.ts';
import { VM_NAME_RE } from '../vm/state-schema.ts';
import { PAGE_CODES, pageCounts, pageMap, pageRuns, type PageMapMarks } from '../vm/page-map.ts';
import { Vm, type VmInfo, type VmState } from '../vm/vm.ts';

const CONSOLE_HISTORY = 16 * 1024;

export interface CreateVmParams {
  name: string;
  program?: string;
  elf?: Uint8Array;
  elfName?: string;
  memory?: number;
  icount?: boolean;
  insnLimit?: number;
  args?: string[];
  start?: boolean;
}

export interface VmSummary extends Omit<VmInfo, 'state'> {
  /** The VM's own state, or 'incoming' while a migration is still bringing it here. */
  state: VmState | 'incoming';
  name: string;
  program: string;
  host: string;
  createdAt: string;
  /** Set while the VM is being migrated away from this host. */
  migrating?: boolean;
}

export interface PageMapSnapshot {
  name: string;
  state: VmState | 'incoming';
  pages: number;
  /** One code per page (PAGE_CODES) ... */
  map?: Uint8Array;
  /** ... or, when asked for and smaller, the same as runs (vm/page-map.ts pageRuns). */
  runs?: Uint32Array;
  /** Pages per code. */
  counts: number[];
  instret: number;
  /** Post-copy traps so far, time the vCPU spent blocked on missing pages, and how long each wait was (latency-histogram buckets). */
  traps: number;
  blockedMs: number;
  blockedHistogram: number[];
  /** When it was read (ms since the epoch). */
  at: number;
}

/** A page map kept while nothing can change it; `runs` null when runs would not be smaller, undefined until asked for. */
interface PageMapCache {
  firstWrites: number;
  map: Uint8Array;
  counts: number[];
  runs: Uint32Array | null | undefined;
}

export interface VmRecord {
  name: string;
  program: string;
  vm: Vm;
  /** Still arriving through a migration: nothing may drive it yet. */
  incoming: boolean;
  /** Leaving through a migration: lifecycle commands wait until it is over. */
  migrating: boolean;
  createdAt: Date;
  log: Logger;
  /** The last CONSOLE_HISTORY bytes of output, for clients that attach late. */
  history: Buffer[];
  historyBytes: number;
  /** Bytes of console output ever seen here (history keeps only the last CONSOLE_HISTORY of them). */
  outputBytes: number;
  /** The last page map of a VM no migration touches, and the first-write count it was read at (see pageMap). */
  pageMapCache?: PageMapCache;
}

/**
 * The VMs of one host, by name. Emits 'vm.state' (name, summary) on every state change and
 * 'console' (name, bytes) for guest output.
 */
export class VmRegistry extends EventEmitter {
  private readonly vms = new Map<string, VmRecord>();

  constructor(
    readonly hostName: string,
    readonly maxMemory: number,
    private readonly log: Logger,
  ) {
    super();
  }

  usedMemory(): number {
    let sum = 0;
    for (const r of this.vms.values()) sum += r.vm.memory.size;
    return sum;
  }

  names(): string[] {
    return [...this.vms.keys()].sort();
  }

  get(name: unknown): VmRecord {
    if (typeof name !== 'string') throw new FerryError('EINVAL', 'missing VM name');
    const r = this.vms.get(name);
    if (r === undefined) throw new FerryError('ENOVM', `no VM named "${name}" on host ${this.hostName}`);
    return r;
  }

  create(p: CreateVmParams): VmSummary {
    if (!VM_NAME_RE.test(p.name)) {
      throw new FerryError('EINVAL', `invalid VM name "${p.name}": use letters, digits, '.', '_' or '-' (at most 63)`);
    }
    if ((p.program === undefined) === (p.elf === undefined)) {
      throw new FerryError('EINVAL', 'give exactly one of a program name or ELF bytes');
    }
    const memory = p.memory ?? DEFAULT_RAM_SIZE;
    checkRamSize(memory);
    this.checkRoom(p.name, memory);
    formatBootArgs(p.args ?? []);
    const { elf, program } = p.program !== undefined
      ? { elf: loadBuiltProgram(p.program), program: p.program }
      : { elf: p.elf!, program: `elf:${p.elfName ?? 'uploaded'}` };
    const vm = Vm.create({ elf, memory, icount: p.icount ?? false, insnLimit: p.insnLimit ?? 0, args: p.args ?? [] });
    const rec = this.add(p.name, program, vm, false);
    rec.log.info({ program, memory, icount: p.icount ?? false, insnLimit: p.insnLimit ?? 0 }, 'vm created');
    if (p.start) vm.start();
    return this.summary(rec);
  }

  /** Refuses a name that is taken or memory this host does not have (before anything changes). */
  checkRoom(name: string, memory: number): void {
    if (this.vms.has(name)) throw new FerryError('EEXIST', `a VM named "${name}" already exists on host ${this.hostName}`);
    const used = this.usedMemory();
    if (used + memory > this.maxMemory) {
      throw new FerryError(
        'ENOMEM',
        `host ${this.hostName} cannot fit ${fmtMiB(memory)} more: ${fmtMiB(used)} of its ${fmtMiB(this.maxMemory)} limit is in use`,
      );
    }
  }

  private add(name: string, program: string, vm: Vm, incoming: boolean): VmRecord {
    const rec: VmRecord = {
      name, program, vm, incoming, migrating: false, createdAt: new Date(), log: this.log.child({ vm: name }), history: [], historyBytes: 0, outputBytes: 0,
    };
    this.vms.set(name, rec);
    this.wire(rec);
    return rec;
  }

  /** An incoming migration reserves the name and the memory of its VM. */
  reserveIncoming(name: string, program: string, vm: Vm): void {
    if (!VM_NAME_RE.test(name)) throw new FerryError('EINVAL', `invalid VM name "${name}"`);
    this.checkRoom(name, vm.memory.size);
    this.add(name, program, vm, true);
    this.emit('vm.state', name, this.summary(this.vms.get(name)!));
  }

  /** The incoming VM runs here now; it brings its console history along. */
  adoptIncoming(name: string, consoleHistory: Uint8Array, settling = false): void {
    const r = this.get(name);
    r.incoming = false;
    // During post-copy the guest runs but part of its memory is still on the way.
    r.migrating = settling;
    if (consoleHistory.length) {
      r.history.unshift(Buffer.from(consoleHistory));
      r.historyBytes += consoleHistory.length;
    }
    r.log.info('vm arrived by migration');
    this.emit('vm.state', name, this.summary(r));
  }

  /** Post-copy is over: the VM is fully here and can be driven. */
  settleIncoming(name: string): void {
    const r = this.vms.get(name);
    if (!r) return;
    r.migrating = false;
    this.emit('vm.state', name, this.summary(r));
  }

  /** Drops a VM from this host without a trace: a failed incoming one, or one that left. */
  async remove(name: string, why: string): Promise<void> {
    const r = this.vms.get(name);
    if (!r) return;
    this.vms.delete(name);
    await r.vm.destroy();
    r.log.info({ why }, 'vm removed');
    this.emit('vm.state', name, { ...this.summary(r), state: 'destroyed', why });
  }

  private wire(rec: VmRecord): void {
    const { vm } = rec;
    vm.on('state', (state: VmState) => {
      if (state === 'destroyed') return; // remove() announces it, once, with the reason
      rec.log.info({ state }, 'vm state');
      this.emit('vm.state', rec.name, this.summary(rec));
    });
    vm.on('halted', (h: { exitCode: number; reason: string }) => rec.log.info(h, 'vm halted'));
    vm.on('console', (data: Uint8Array) => {
      const b = Buffer.from(data);
      rec.history.push(b);
      rec.historyBytes += b.length;
      rec.outputBytes += b.length;
      while (rec.historyBytes - rec.history[0]!.length >= CONSOLE_HISTORY) rec.historyBytes -= rec.history.shift()!.length;
      this.emit('console', rec.name, data);
    });
    vm.on('error', (err: Error) => {
      rec.log.error({ err }, 'vm failed');
      if (this.vms.get(rec.name) === rec) this.vms.delete(rec.name);
    });
  }

  summary(rec: VmRecord): VmSummary {
    const info = rec.vm.info();
    return {
      ...info, name: rec.name, program: rec.program, host: this.hostName, createdAt: rec.createdAt.toISOString(),
      state: rec.incoming ? 'incoming' : info.state, ...(rec.migrating ? { migrating: true } : {}),
    };
  }

  /** The VM, for a command that drives it: refused while a migration owns it. */
  private drivable(name: unknown): VmRecord {
    const r = this.get(name);
    if (r.incoming) throw new FerryError('ESTATE', `VM "${r.name}" is still arriving by migration`);
    if (r.migrating) throw new FerryError('ESTATE', `VM "${r.name}" is being migrated; wait for it or cancel the migration`);
    return r;
  }

  info(name: unknown): VmSummary {
    return this.summary(this.get(name));
  }

  list(): VmSummary[] {
    return this.names().map((n) => this.summary(this.vms.get(n)!));
  }

  /** The console history, and how many bytes of output this host has seen in all (to tell what is new since). */
  consoleOutput(name: unknown): { history: Uint8Array; total: number } {
    return { history: this.consoleHistory(name), total: this.get(name).outputBytes };
  }

  consoleHistory(name: unknown): Uint8Array {
    const r = this.get(name);
    if (r.history.length > 1) r.history.splice(0, r.history.length, Buffer.concat(r.history));
    const all = Buffer.concat(r.history);
    return new Uint8Array(all.subarray(Math.max(0, all.length - CONSOLE_HISTORY)));
  }

  start(name: unknown): VmSummary {
    const r = this.drivable(name);
    if (r.vm.state === 'halted') throw new FerryError('ESTATE', `VM "${r.name}" has halted; it cannot run again`);
    r.vm.start();
    return this.summary(r);
  }

  async pause(name: unknown): Promise<VmSummary> {
    const r = this.drivable(name);
    if (r.vm.state === 'created') throw new FerryError('ESTATE', `VM "${r.name}" has not been started`);
    await r.vm.pause();
    return this.summary(r);
  }

  resume(name: unknown): VmSummary {
    const r = this.drivable(name);
    if (r.vm.state !== 'paused') throw new FerryError('ESTATE', `VM "${r.name}" is ${r.vm.state}, not paused`);
    r.vm.resume();
    return this.summary(r);
  }

  async stop(name: unknown): Promise<VmSummary> {
    const r = this.drivable(name);
    await r.vm.stop();
    return this.summary(r);
  }

  async destroy(name: unknown): Promise<{ name: string }> {
    const r = this.drivable(name);
    await this.remove(r.name, 'destroyed');
    return { name: r.name };
  }

  /** Digest of a consistent snapshot; a running VM is paused for it and then resumed. */
  async digest(name: unknown): Promise<{ name: string; digest: string; instret: number; state: VmState }> {
    const r = this.drivable(name);
    const wasRunning = r.vm.state === 'running';
    const digest = await r.vm.digest();
    const instret = r.vm.instret();
    if (wasRunning && r.vm.state === 'paused') r.vm.resume();
    return { name: r.name, digest, instret, state: r.vm.state };
  }

  /**
   * The VM's page map (vm/page-map.ts) with what a watcher needs beside it: the vCPU's counters
   * (instructions, post-copy traps, time blocked and its histogram) read at the same moment.
   */
  pageMap(name: unknown, marks: PageMapMarks, asRuns = false): PageMapSnapshot {
    const r = this.get(name);
    const vm = r.vm;
    // A VM with every page here and no migration of it changes its map only by a page's first
    // write, which the first-write ring counts: while that count stands, the last map stands
    // (a watched idle VM costs its host nothing). The count is read before the map, so a write
    // racing the read shows next time.
    const settled = !r.incoming && marks.dirtyLog !== true && marks.pass === undefined && marks.push === undefined;
    const firstWrites = vm.memory.firstWriteCount();
    let c: PageMapCache | undefined = settled && r.pageMapCache?.firstWrites === firstWrites ? r.pageMapCache : undefined;
    if (c === undefined) {
      const map = pageMap(vm.memory, { ...marks, faulted: vm.faultedPages() });
      const counts = pageCounts(map);
      c = { firstWrites, map, counts, runs: undefined };
      r.pageMapCache = settled && counts[PAGE_CODES.missing] === 0 && counts[PAGE_CODES.waiting] === 0 ? c : undefined;
    }
    if (asRuns && c.runs === undefined) c.runs = pageRuns(c.map) ?? null;
    return {
      name: r.name, state: r.incoming ? 'incoming' : vm.state, pages: vm.memory.pages, ...(asRuns && c.runs ? { runs: c.runs } : { map: c.map }), counts: c.counts,
      instret: vm.instret(), traps: vm.traps(), blockedMs: vm.blockedMs(), blockedHistogram: vm.blockedHistogram(), at: Date.now(),
    };
  }

  /** CPU registers: exact for a paused or halted VM, a live sample for a running one. */
  registers(name: unknown): { name: string; state: VmState; pc: number; x: number[]; live: boolean } {
    const r = this.get(name);
    const s = r.vm.cpuState;
    return { name: r.name, state: r.vm.state, pc: r.vm.pc, x: Array.from(s.subarray(0, 32), (v) => v >>> 0), live: r.vm.state === 'running' };
  }

  input(name: unknown, data: unknown): { bytes: number } {
    const r = this.get(name);
    if (!(data instanceof Uint8Array)) throw new FerryError('EINVAL', 'console input must be bytes');
    r.vm.sendInput(data);
    return { bytes: data.length };
  }

  async destroyAll(): Promise<void> {
    const all = [...this.vms.values()];
    this.vms.clear();
    await Promise.all(all.map((r) => r.vm.destroy().catch(() => undefined)));
  }
}

function fmtMiB(bytes: number): string {
  return `${Math.round(bytes / 1048576)} MiB`;
}
