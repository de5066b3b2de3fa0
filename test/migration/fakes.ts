// Test doubles for the migration engine: a fake VM (1 MiB of RAM and a deterministic "guest" that
// reads and writes pages when it runs), an in-memory network of fake WebSockets whose every
// message, dial and fault is a step the test takes, and fake hosts that route incoming links as
// src/host/migrations.ts does. Nothing here opens a socket, starts a thread or a process; time
// is whatever the test's fake timers say.
import { EventEmitter } from 'node:events';
import pino from 'pino';
import { afterAll, beforeAll, vi } from 'vitest';
import { CPU_STATE_WORDS, PRIV_M, S_INSTRET_HI, S_INSTRET_LO, S_PC, S_PRIV } from '../../src/cpu/state.ts';
import { resetRtcState } from '../../src/devices/goldfish-rtc.ts';
import { resetPlicState } from '../../src/devices/plic.ts';
import { FerryError } from '../../src/errors.ts';
import type { Logger } from '../../src/log.ts';
import { PAGE_EVER_WRITTEN, PAGE_PRESENT, PAGE_SIZE } from '../../src/memory/layout.ts';
import { applyPageFrame, fillMissingPages } from '../../src/memory/page-frame.ts';
import { queryAnswer, recoveryAnswer } from '../../src/migration/finished.ts';
import { IncomingMigration, type FinishedIncoming } from '../../src/migration/incoming.ts';
import { OutgoingMigration, type MigrateParams } from '../../src/migration/outgoing.ts';
import { SwitchoverHistory } from '../../src/migration/switchover-history.ts';
import type { DestinationVm, SourceVm } from '../../src/migration/ports.ts';
import { decodeMsg, encodeMsg, type MigrationMsg, type RunState, type SetupMsg } from '../../src/migration/protocol.ts';
import type { MigrationStats } from '../../src/migration/stats.ts';
import type { MachineConfig } from '../../src/vm/machine.ts';
import { VM_STATE_VERSION } from '../../src/vm/state-schema.ts';
import type { VmState, VmStateExport } from '../../src/vm/vm.ts';
import type { Dial, LinkOptions } from '../../src/wire/link.ts';
import { closeWith } from '../../src/wire/peer-text.ts';
import type { LinkSocket } from '../../src/wire/socket.ts';

// ---------------------------------------------------------------------------------------------
// The guest: a deterministic program over RAM, so any lost, stale or doubled page shows.

/** 1 MiB: the least RAM a VM may have (the setup is checked against it). */
export const GUEST_PAGES = 256;
export const GUEST_RAM = GUEST_PAGES * PAGE_SIZE;
const H0 = 0x811c9dc5 | 0;

/** Step k reads one page and writes another; the pages it writes spread over time (first writes keep coming). */
function readPage(k: number, seed: number): number {
  return (k * 31 + seed * 7) % 120;
}
function writePage(k: number, seed: number): number {
  return (k * 17 + seed) % Math.min(8 + (k >> 2), 160);
}

/**
 * One guest step on `ram`: reads 8 bytes of one page into the running hash, writes 8 bytes of the
 * hash into another. Returns the written page, or the missing page it needs (`present` false).
 */
function guestStep(ram: Uint8Array, regs: { steps: number; h: number }, seed: number, present: (p: number) => boolean): { wrote: number } | { missing: number } {
  const k = regs.steps;
  const r = readPage(k, seed);
  const w = writePage(k, seed);
  if (!present(r)) return { missing: r };
  if (!present(w)) return { missing: w };
  let h = regs.h;
  const ro = r * PAGE_SIZE + (k % 512) * 8;
  for (let i = 0; i < 8; i++) h = Math.imul(h ^ ram[ro + i]!, 0x01000193);
  h = Math.imul(h ^ k, 0x01000193) | 0;
  const wo = w * PAGE_SIZE + ((k * 13) % 512) * 8;
  for (let i = 0; i < 4; i++) ram[wo + i] = (h >>> (8 * i)) & 0xff;
  for (let i = 0; i < 4; i++) ram[wo + 4 + i] = (k >>> (8 * i)) & 0xff;
  regs.h = h;
  regs.steps = k + 1;
  return { wrote: w };
}

/** What an unmigrated guest holds after `steps` steps. */
export function referenceGuest(seed: number, steps: number): { ram: Uint8Array; h: number } {
  const ram = new Uint8Array(GUEST_RAM);
  const regs = { steps: 0, h: H0 };
  while (regs.steps < steps) guestStep(ram, regs, seed, () => true);
  return { ram, h: regs.h };
}

const CONFIG: MachineConfig = { ramSize: GUEST_RAM, clock: 'icount', tohost: -1 };

/** The fake VM's memory: what SourceMemory and DestinationMemory ask for. */
class FakeMemory {
  readonly ram = new Uint8Array(GUEST_RAM);
  readonly pages = GUEST_PAGES;
  readonly size = GUEST_RAM;
  readonly pageState = new Int32Array(GUEST_PAGES);
  readonly firstWrites: number[] = [];
  firstWriteCount(): number {
    return this.firstWrites.length;
  }
  firstWritesSince(since: number): Uint32Array | undefined {
    return Uint32Array.from(this.firstWrites.slice(since));
  }
}

/**
 * A VM with a tiny deterministic guest, usable on both sides of a migration (SourceVm and
 * DestinationVm). Its guest runs only when the test says so (`runGuest`); a destination VM in
 * post-copy blocks on a missing page and reports it (`fault`) as the vCPU does. A VM whose host
 * process died (`kill`) is destroyed and nothing it is asked to do has any effect.
 */
export class FakeVm extends EventEmitter implements SourceVm, DestinationVm {
  readonly memory = new FakeMemory();
  readonly config: MachineConfig = { ...CONFIG };
  readonly insnLimit = 0;
  private stateName: VmState = 'created';
  readonly regs = { steps: 0, h: H0 };
  /** Its host process died. */
  dead = false;
  /** A destination VM loaded from a state section (it holds a copy of the guest from then on). */
  restored = false;
  throttle = 0;
  private dirty = new Set<number>();
  private postcopyPages = false;
  private pending: Uint8Array[] = [];
  private writing: NodeJS.Timeout | undefined;
  private done = 0;
  private filled = 0;
  private trapCount = 0;
  private blockedOn: number | undefined;
  private doneWaiters: (() => void)[] = [];

  /** `haltAt`: the guest halts (powers off) after that many steps, as at an instruction limit. */
  constructor(readonly seed: number, role: 'source' | 'destination', mode?: SetupMsg['mode'], readonly haltAt = Infinity) {
    super();
    // A booted VM's pages are all present; a post-copy destination's none, until they arrive.
    this.memory.pageState.fill(role === 'destination' && mode === 'postcopy' ? 0 : PAGE_PRESENT);
  }

  get state(): VmState {
    return this.dead ? 'destroyed' : this.stateName;
  }

  /** (A fake guest has no code: its pc stays at RAM's start.) */
  readonly publishedPc = 0x8000_0000;

  /**
   * The host process died: the VM is gone, and nothing it is still asked to do happens (what
   * waits on it waits for ever: the process that would go on is gone).
   */
  kill(): void {
    this.dead = true;
    this.doneWaiters.length = 0;
  }

  /** What a dead process's VM answers: nothing, ever. */
  private static never<T>(): Promise<T> {
    return new Promise<T>(() => {});
  }

  start(): void {
    if (this.state === 'created' || this.state === 'paused') this.stateName = 'running';
  }

  async pause(): Promise<void> {
    if (this.dead) return FakeVm.never();
    await Promise.resolve();
    if (this.state === 'running') this.stateName = 'paused';
  }

  resume(): void {
    if (this.state === 'paused' || this.state === 'created') this.stateName = 'running';
  }

  setThrottle(percent: number): void {
    this.throttle = percent;
  }

  /** Runs up to `n` guest steps; false when it is blocked on a missing page. */
  runGuest(n: number): boolean {
    for (let i = 0; i < n; i++) {
      if (this.state !== 'running') return true;
      if (this.regs.steps >= this.haltAt) {
        this.stateName = 'halted';
        return true;
      }
      const ps = this.memory.pageState;
      const r = guestStep(this.memory.ram, this.regs, this.seed, (p) => (Atomics.load(ps, p) & PAGE_PRESENT) !== 0);
      if ('missing' in r) {
        if (this.blockedOn !== r.missing) {
          this.blockedOn = r.missing;
          this.trapCount++;
          this.emit('fault', r.missing);
        }
        return false;
      }
      this.blockedOn = undefined;
      const w = r.wrote;
      if ((ps[w]! & PAGE_EVER_WRITTEN) === 0) {
        ps[w] = ps[w]! | PAGE_EVER_WRITTEN;
        this.memory.firstWrites.push(w);
      }
      this.dirty.add(w);
    }
    return true;
  }

  private takeDirty(keep?: (p: number) => boolean): Uint32Array {
    const out = Uint32Array.from([...this.dirty].filter((p) => keep === undefined || keep(p)).sort((a, b) => a - b));
    this.dirty.clear();
    return out;
  }

  async syncDirty(): Promise<Uint32Array> {
    if (this.dead) return FakeVm.never();
    await Promise.resolve();
    if (this.state === 'destroyed') throw new FerryError('EDESTROYED', 'the VM has been destroyed');
    return this.takeDirty();
  }

  private checkStopped(): void {
    if (this.state !== 'paused' && this.state !== 'halted') {
      throw new FerryError('ESTATE', `VM is ${this.state}; the dirty log can only be taken directly while it is stopped`);
    }
  }

  dirtyWhileStopped(): Uint32Array {
    this.checkStopped();
    return this.takeDirty();
  }

  dirtyWhileStoppedExcept(known: Uint8Array): ArrayLike<number> {
    this.checkStopped();
    return this.takeDirty((p) => (known[p >>> 3]! & (1 << (p & 7))) === 0);
  }

  exportState(): VmStateExport {
    if (this.state !== 'paused' && this.state !== 'halted' && this.state !== 'created') throw new FerryError('ESTATE', `VM is ${this.state}; pause it first`);
    const cpu = new Array<number>(CPU_STATE_WORDS).fill(0);
    cpu[1] = this.regs.h;
    cpu[S_PC] = 0;
    cpu[S_PRIV] = PRIV_M;
    cpu[S_INSTRET_LO] = this.regs.steps | 0;
    cpu[S_INSTRET_HI] = 0;
    return {
      version: VM_STATE_VERSION, config: { ...this.config }, insnLimit: this.insnLimit, cpu,
      devices: {
        uart: { ier: 0, lcr: 0, mcr: 0, scr: 0, fcr: 0, dll: 0, dlm: 0, rx: [], thrIpending: 0 },
        clint: { msip: 0, mtimecmpLo: 0, mtimecmpHi: 0 },
        clock: { mode: 'icount', mtime: this.regs.steps },
        plic: resetPlicState(), rtc: resetRtcState(),
      },
      ...(this.state === 'halted' ? { halted: { exitCode: 0, reason: 'instruction limit' } } : {}),
    };
  }

  // ---- destination side ----

  postPageFrame(frame: Uint8Array): void {
    if (this.dead) return;
    if (this.state !== 'created' && !this.postcopyPages) throw new FerryError('ESTATE', 'page frames go only to a VM that has not started');
    this.pending.push(frame);
    // The vCPU thread writes posted frames a little later (2 ms of fake time), in order: what the
    // host thread does meanwhile (an advice waiting for them) spans steps of the model.
    this.writing ??= setTimeout(() => this.writeFrames(), 2);
  }

  /** `beforeRestore`: frames posted before a restore request are pre-copy frames, written whole first (as the vCPU does). */
  private writeFrames(beforeRestore = false): void {
    clearTimeout(this.writing);
    this.writing = undefined;
    if (this.dead) return;
    const m = this.memory;
    for (const f of this.pending.splice(0)) {
      if (this.postcopyPages && !beforeRestore) this.filled += fillMissingPages(m.ram, m.pageState, m.pages, f).length;
      else applyPageFrame(m.ram, m.pageState, m.pages, f);
      this.done++;
    }
    this.wakeDoneWaiters();
  }

  private wakeDoneWaiters(): void {
    for (const w of this.doneWaiters.splice(0)) w();
  }

  pageFramesPending(): number {
    return this.pending.length;
  }

  pageFramesDone(): number {
    return this.done;
  }

  pageFramesDoneAfter(seen: number, ms: number): Promise<void> {
    if (this.dead) return FakeVm.never();
    if (this.done > seen || this.state === 'destroyed') return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.doneWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  acceptPostcopyPages(): void {
    this.postcopyPages = true;
  }

  pagesFilled(): number {
    return this.filled;
  }

  wakeVcpu(): void {}

  traps(): number {
    return this.trapCount;
  }

  blockedMs(): number {
    return 0;
  }

  blockedHistogram(): number[] {
    return [];
  }

  async restore(st: VmStateExport, run: RunState, onRunning?: () => void): Promise<void> {
    if (this.dead) return FakeVm.never();
    if (this.state !== 'created') throw new FerryError('ESTATE', `restore needs a VM that never ran (this one is ${this.state})`);
    this.writeFrames(true);
    this.regs.h = st.cpu[1]!;
    this.regs.steps = st.cpu[S_INSTRET_LO]! >>> 0;
    this.restored = true;
    if (st.halted) {
      this.stateName = 'halted';
      return;
    }
    if (run === 'running') {
      this.stateName = 'running';
      onRunning?.();
      return;
    }
    await Promise.resolve();
    if (run === 'paused' && !this.dead) this.stateName = 'paused';
  }

  /** As Vm.destroy: the state is destroyed at once (the vCPU stops at its next slice), the thread goes later. */
  async destroy(): Promise<void> {
    if (this.dead) return FakeVm.never();
    this.stateName = 'destroyed';
    this.wakeDoneWaiters();
    await Promise.resolve();
  }
}

// ---------------------------------------------------------------------------------------------
// The network: connections of two fake WebSockets, each direction a FIFO the test delivers from.

type Item =
  | { kind: 'data'; data: Buffer }
  /** A close frame: the receiver answers with its own (`answer`) and reports the close. */
  | { kind: 'close'; code: number; reason: string }
  /** The answer to our close frame. */
  | { kind: 'close-answer'; code: number; reason: string }
  /** The connection was cut (RST, or the peer process died): 1006. */
  | { kind: 'reset' };

/** A WebSocket end in the fake network, as the engine sees one (LinkSocket). */
export class FakeSocket extends EventEmitter implements LinkSocket {
  readonly CONNECTING = 0;
  readonly OPEN = 1;
  readyState = 1;
  readonly bufferedAmount = 0;
  isPaused = false;
  /** Frames and closes on their way to this end, in order. */
  readonly inbound: Item[] = [];
  peer!: FakeSocket;
  private closed = false;

  constructor(readonly conn: FakeConn, readonly owner: FakeHost) {
    super();
  }

  send(data: Uint8Array, cb?: (err?: Error) => void): void {
    if (!this.owner.alive) return;
    if (this.readyState !== this.OPEN) {
      if (cb) queueMicrotask(() => cb(new Error('WebSocket is not open')));
      return;
    }
    // A copy: the sender may reuse its buffer once the callback says it was written.
    this.peer.inbound.push({ kind: 'data', data: Buffer.from(data) });
    if (cb) queueMicrotask(() => cb());
  }

  /** Pings cross at once unless the network holds everything (a partition): liveness only. */
  ping(): void {
    if (this.readyState !== this.OPEN || !this.owner.alive || this.conn.net.partitioned || this.conn.frozen) return;
    if (this.peer.readyState === this.OPEN && this.peer.owner.alive) {
      this.peer.emit('ping', Buffer.alloc(0));
      this.emit('pong', Buffer.alloc(0));
    }
  }

  close(code = 1005, reason = ''): void {
    if (this.readyState !== this.OPEN || !this.owner.alive) return;
    this.readyState = 2;
    this.peer.inbound.push({ kind: 'close', code, reason });
  }

  terminate(): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.inbound.length = 0;
    if (this.owner.alive) this.peer.inbound.push({ kind: 'reset' });
    queueMicrotask(() => this.reportClose(1006, ''));
  }

  pause(): void {
    this.isPaused = true;
  }

  resume(): void {
    this.isPaused = false;
  }

  /** Emits 'close' once (a dead process's sockets emit nothing). */
  reportClose(code: number, reason: string): void {
    this.readyState = 3;
    this.inbound.length = 0;
    if (this.closed || !this.owner.alive) return;
    this.closed = true;
    this.emit('close', code, Buffer.from(reason));
  }

  /** Something may be delivered to this end now. */
  deliverable(): boolean {
    return this.inbound.length > 0 && !this.isPaused && !this.conn.net.partitioned && !this.conn.frozen;
  }

  /** Delivers the next frame or close to this end. */
  deliverOne(): void {
    const item = this.inbound.shift();
    if (!item || !this.owner.alive) return;
    if (this.readyState === 3) {
      this.inbound.length = 0;
      return;
    }
    switch (item.kind) {
      case 'data':
        this.emit('message', item.data, true);
        return;
      case 'close':
        if (this.readyState === this.OPEN) {
          this.readyState = 2;
          if (this.peer.owner.alive) this.peer.inbound.push({ kind: 'close-answer', code: item.code, reason: item.reason });
        }
        this.reportClose(item.code, item.reason);
        return;
      case 'close-answer':
        this.reportClose(item.code, item.reason);
        return;
      case 'reset':
        this.reportClose(1006, '');
    }
  }
}

/** One connection: the dialing host's end and the accepting host's end. */
export class FakeConn {
  /** Held: nothing crosses it, pings included, until it thaws (a silent connection). */
  frozen = false;
  readonly client: FakeSocket;
  readonly server: FakeSocket;
  constructor(readonly net: FakeNetwork, readonly from: FakeHost, readonly to: FakeHost, readonly role: string) {
    this.client = new FakeSocket(this, from);
    this.server = new FakeSocket(this, to);
    this.client.peer = this.server;
    this.server.peer = this.client;
  }

  /** Both ends cut at once (what was in flight is lost). */
  cut(): void {
    for (const s of [this.client, this.server]) {
      s.inbound.length = 0;
      s.reportClose(1006, '');
    }
  }

  get open(): boolean {
    return this.client.readyState !== 3 || this.server.readyState !== 3;
  }
}

interface PendingDial {
  from: FakeHost;
  o: LinkOptions;
  resolve: (l: { ws: LinkSocket; host: string; incarnation: string }) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Hosts by URL, the connections between them and the dials on their way. Faults: `partitioned`
 * (nothing moves, pings included, and dials hang until they time out), `refusing` (dials are
 * refused), `cut`/`drop` of a connection, and a host's death (`FakeHost.kill`).
 */
export class FakeNetwork {
  readonly hosts = new Map<string, FakeHost>();
  conns: FakeConn[] = [];
  dials: PendingDial[] = [];
  /** Times a destination told a source in outcome-unknown that it resumed the guest. */
  toldOutcomeUnknown = 0;
  /** Every VM a destination built. */
  readonly builtVms: FakeVm[] = [];
  partitioned = false;
  refusing = false;
  private incarnations = 0;

  constructor(readonly log: Logger) {}

  addHost(name: string): FakeHost {
    const url = `ws://${name}.test:7400`;
    const h = new FakeHost(this, name, url, `${name}-incarnation-${++this.incarnations}`, this.log.child({ host: name }));
    this.hosts.set(url, h);
    return h;
  }

  /** A killed host comes back: a new process (another incarnation) that knows nothing. */
  restart(h: FakeHost): FakeHost {
    if (h.alive) throw new Error(`${h.name} is alive`);
    const fresh = new FakeHost(this, h.name, h.url, `${h.name}-incarnation-${++this.incarnations}`, h.log);
    this.hosts.set(h.url, fresh);
    return fresh;
  }

  hostAt(url: string): FakeHost | undefined {
    try {
      return this.hosts.get(new URL(url).origin);
    } catch {
      return undefined;
    }
  }

  /** How `from` opens links: a dial waits for the test to complete it (`completeDial`), or times out. */
  dialFrom(from: FakeHost): Dial {
    return (o) => new Promise((resolve, reject) => {
      if (!from.alive) return; // a dead process dials nothing
      const d: PendingDial = {
        from, o, resolve, reject,
        timer: setTimeout(() => {
          this.dials = this.dials.filter((x) => x !== d);
          reject(new FerryError('ETIMEDOUT', `no answer from ${o.display ?? o.url} within ${o.timeoutMs ?? 10_000} ms`));
        }, o.timeoutMs ?? 10_000),
      };
      this.dials.push(d);
    });
  }

  /** The dial reaches the destination now: refused, or accepted by the host there. */
  completeDial(d: PendingDial): void {
    this.dials = this.dials.filter((x) => x !== d);
    clearTimeout(d.timer);
    const to = this.hostAt(d.o.url);
    if (this.refusing || !to || !to.alive) {
      d.reject(new FerryError('ECONNECT', `cannot reach ferry host at ${d.o.display ?? d.o.url}: connect ECONNREFUSED`));
      return;
    }
    const role = String(d.o.hello.role);
    const conn = new FakeConn(this, d.from, to, role);
    this.conns.push(conn);
    to.accept(conn.server, d.o.hello, `${d.from.name}.test:50000`);
    d.resolve({ ws: conn.client, host: to.name, incarnation: to.incarnation });
  }

  /** Sockets with something deliverable, and dials that can complete. */
  ready(): ({ kind: 'socket'; s: FakeSocket } | { kind: 'dial'; d: PendingDial })[] {
    if (this.partitioned) return [];
    const out: ({ kind: 'socket'; s: FakeSocket } | { kind: 'dial'; d: PendingDial })[] = [];
    for (const c of this.conns) for (const s of [c.client, c.server]) if (s.deliverable()) out.push({ kind: 'socket', s });
    for (const d of this.dials) out.push({ kind: 'dial', d });
    return out;
  }

  /** Forgets closed connections. */
  prune(): void {
    this.conns = this.conns.filter((c) => c.open || c.client.inbound.length > 0 || c.server.inbound.length > 0);
  }

  /** Nothing in flight (paused sockets aside, which the engine resumes). */
  idle(): boolean {
    return this.dials.length === 0 && this.conns.every((c) => c.client.inbound.length === 0 && c.server.inbound.length === 0);
  }

  /** Kills a host process: its sockets go (the peers see them reset, after what was sent), its VMs die. */
  kill(h: FakeHost): void {
    for (const c of this.conns) {
      for (const s of [c.client, c.server]) {
        if (s.owner !== h) continue;
        s.inbound.length = 0;
        s.removeAllListeners();
        if (s.readyState !== 3) s.peer.inbound.push({ kind: 'reset' });
        s.readyState = 3;
      }
    }
    for (const d of this.dials.filter((x) => x.from === h)) clearTimeout(d.timer);
    this.dials = this.dials.filter((x) => x.from !== h);
    h.die();
  }

  /**
   * A destination telling its source host's control API that the guest resumed there
   * (MigrationManager.tellCompleted): what the source answered, or undefined if unreachable or
   * still waiting.
   */
  tellCompleted(url: string, incarnation: string | undefined, name: string, id: string): string | undefined {
    const h = this.hostAt(url);
    if (this.partitioned || this.refusing || !h || !h.alive) return undefined;
    if (incarnation !== undefined && h.incarnation !== incarnation) return 'the source host was restarted';
    const phase = h.outgoing.get(name)?.phase;
    const s = h.outcomeFromDestination(name, id);
    if (s === undefined) return 'it no longer sends that VM';
    if (phase === 'outcome-unknown') this.toldOutcomeUnknown++;
    if (s.info.status === 'completed') return 'it released its paused copy';
    if (s.info.status === 'failed' || s.info.status === 'cancelled') return '!the source had already resumed its own copy: two copies may run';
    return undefined;
  }

  /** A destination's check on its source host's control API (MigrationManager.probeSource), over this network. */
  probe(url: string, name: string, incarnation: string | undefined): { verdict: 'gone' | 'alive' | 'unknown'; why: string } {
    const h = this.hostAt(url);
    if (this.partitioned || this.refusing || !h || !h.alive) return { verdict: 'unknown', why: `cannot reach ${url}` };
    if (incarnation !== undefined && h.incarnation !== incarnation) return { verdict: 'gone', why: `the source host ${url} was restarted` };
    const s = h.last.get(name);
    if (!s) return { verdict: 'gone', why: `the source host ${url} knows no migration of "${name}" (restarted?)` };
    if (s.info.direction !== 'outgoing') return { verdict: 'gone', why: `the source host ${url} no longer sends "${name}"` };
    if (s.info.status === 'failed' || s.info.status === 'cancelled') return { verdict: 'gone', why: `the source host ${url} gave the migration up` };
    return { verdict: 'alive', why: `the source host ${url} reports ${s.info.status}` };
  }
}

// ---------------------------------------------------------------------------------------------
// Hosts: the parts of a Ferry host a migration meets (VmRegistry and MigrationManager), in small.

type MigrateHello = { role: 'bulk' | 'prio' | 'query'; id: string; recover?: boolean };

/** The VMs of a fake host, by name. */
export interface HostedVm {
  vm: FakeVm;
  /** Still arriving by migration (reserved, not adopted). */
  incoming: boolean;
}

/** What a host keeps of an incoming migration once it is over (as MigrationManager). */
const FINISHED_KEPT_MS = 60_000;

/** Routes /migrate links, keeps finished incoming migrations' outcomes, runs outgoing ones: as MigrationManager does. */
export class FakeHost {
  alive = true;
  readonly vms = new Map<string, HostedVm>();
  readonly outgoing = new Map<string, OutgoingMigration>();
  /** Each outgoing migration's end (its run, and the VM dropped if it was lost). */
  readonly ended = new Map<OutgoingMigration, Promise<void>>();
  readonly incoming = new Map<string, IncomingMigration<FakeVm>>();
  readonly finished = new Map<string, FinishedIncoming & { at: number }>();
  /** Each VM's latest migration statistics (`migrate status`). */
  readonly last = new Map<string, MigrationStats>();
  readonly incomingIdleMs = 30_000;
  readonly switchovers = new SwitchoverHistory();

  constructor(readonly net: FakeNetwork, readonly name: string, readonly url: string, readonly incarnation: string, readonly log: Logger) {}

  die(): void {
    this.alive = false;
    for (const v of this.vms.values()) v.vm.kill();
  }

  /** Drops a VM from this host (registry.remove): it is destroyed. */
  remove(name: string): Promise<void> {
    const v = this.vms.get(name);
    if (!v || !this.alive) return Promise.resolve();
    this.vms.delete(name);
    return v.vm.destroy();
  }

  /** `ferry migrate NAME --to ...` (MigrationManager.start, for a VM here). */
  migrate(name: string, p: MigrateParams): OutgoingMigration {
    const rec = this.vms.get(name);
    if (!rec) throw new Error(`no VM ${name} on ${this.name}`);
    const m = new OutgoingMigration(rec.vm, name, `fake-guest:${rec.vm.seed}:${rec.vm.haltAt}`, p, undefined, this.log.child({ migration: 'out' }), {
      release: () => this.remove(name),
      update: () => {},
      consoleOutput: () => ({ history: new Uint8Array(0), total: 0 }),
      self: () => ({ url: this.url, incarnation: this.incarnation }),
      switchovers: this.switchovers,
    }, this.net.dialFrom(this));
    this.outgoing.set(name, m);
    this.last.set(name, m.stats);
    this.ended.set(m, m.run().finally(async () => {
      if (this.outgoing.get(name) === m) this.outgoing.delete(name);
      this.ended.delete(m);
      if (m.lost) await this.remove(name);
    }));
    return m;
  }

  /** `vm destroy NAME` of a VM a migration holds (MigrationManager.releaseForDestroy); false when none does. */
  destroyHeld(name: string): boolean {
    const out = this.outgoing.get(name);
    if (out && out.stats.info.status === 'postcopy-paused') {
      out.abandon('given up by the user (vm destroy) while post-copy was paused', 'EABANDONED');
      return true;
    }
    for (const m of this.incoming.values()) {
      if (m.vmName !== name) continue;
      if (m.paused) {
        void m.abandon('given up by the user (vm destroy) while post-copy was paused');
        return true;
      }
      if (m.cancelHere('destroyed on the destination (vm destroy) before the switch-over')) return true;
    }
    return false;
  }

  /** A /migrate connection after its hello (MigrationManager.accept). */
  accept(ws: FakeSocket, helloIn: Record<string, unknown>, peer: string): void {
    const hello = helloIn as MigrateHello; // our own dialer's hello
    const { id } = hello;
    if (hello.role === 'bulk' && hello.recover === true) {
      const silent = setTimeout(() => closeWith(ws, 1008, 'no recover message'), this.incomingIdleMs);
      ws.once('message', (data: Buffer, isBinary: boolean) => {
        clearTimeout(silent);
        let m: MigrationMsg | undefined;
        try {
          m = isBinary ? decodeMsg(data) : undefined;
        } catch { /* refused below */ }
        if (m?.t !== 'recover') {
          closeWith(ws, 1002, 'expected recover on a recovering link');
          return;
        }
        this.recoverIncoming(ws, id);
      });
      return;
    }
    if (hello.role === 'query') {
      this.answerQuery(ws, id);
      return;
    }
    if (hello.role === 'prio') {
      const m = this.incoming.get(id);
      if (!m || !m.attachPriority(ws)) closeWith(ws, 1008, m ? 'that migration has its priority channel' : 'no migration with that id');
      return;
    }
    if (this.incoming.has(id) || this.finished.has(id)) {
      closeWith(ws, 1008, 'a migration with that id exists: ids are fresh');
      return;
    }
    const m: IncomingMigration<FakeVm> = new IncomingMigration<FakeVm>(id, ws, peer, GUEST_RAM * 4, this.log.child({ migration: 'in' }), {
      checkRoom: (setup) => {
        if (this.vms.has(setup.vm)) throw new FerryError('EEXIST', `a VM named "${setup.vm}" exists on this host`);
      },
      reserve: (setup, vm) => {
        if (!this.alive) return;
        if (this.vms.has(setup.vm)) throw new FerryError('EEXIST', `a VM named "${setup.vm}" exists on this host`);
        this.vms.set(setup.vm, { vm, incoming: true });
      },
      adopt: (name) => {
        const v = this.vms.get(name);
        if (v) v.incoming = false;
      },
      settled: () => {},
      probeSource: async (url, name, incarnation) => {
        await Promise.resolve();
        return this.net.probe(url, name, incarnation);
      },
      discard: (name) => this.remove(name),
      update: (s) => {
        this.last.set(s.info.vm, s);
      },
      ended: (f) => this.incomingEnded(id, m, f),
    }, { idleMs: this.incomingIdleMs }, (setup) => {
      const { seed, haltAt } = guestOf(setup.program);
      const vm = new FakeVm(seed, 'destination', setup.mode, haltAt);
      this.net.builtVms.push(vm);
      return { vm, release: () => {} };
    });
    this.incoming.set(id, m);
  }

  private incomingEnded(id: string, m: IncomingMigration<FakeVm>, f: FinishedIncoming): void {
    if (this.incoming.get(id) === m) this.incoming.delete(id);
    const now = performance.now();
    this.finished.set(id, Object.assign(f, { at: now }));
    if (!f.postcopy && f.stats?.info.status === 'completed') void this.tellSource(id, f);
    for (const [k, v] of this.finished) {
      const mustKeep = !v.acknowledged && (v.postcopy || v.stats?.info.status === 'completed');
      if (!mustKeep && now - v.at > FINISHED_KEPT_MS) this.finished.delete(k);
    }
  }

  /**
   * The guest resumed here (pre-copy, cold) and the source may not know: tell it on its control
   * API, backing off, until it knows (MigrationManager.tellSource; one hour at most there).
   */
  private async tellSource(id: string, f: FinishedIncoming): Promise<void> {
    const to = f.source;
    if (to === undefined || f.vm === undefined) return;
    for (let delayMs = 500; ; delayMs = Math.min(5_000, delayMs * 2)) {
      await new Promise((r) => setTimeout(r, delayMs));
      if (!this.alive || f.acknowledged) return;
      const told = this.net.tellCompleted(to.url, to.incarnation, f.vm, id);
      if (told === undefined) continue;
      f.acknowledged = true;
      return;
    }
  }

  /** `migrate.outcome` from a destination host (MigrationManager.outcomeFromDestination). */
  outcomeFromDestination(name: string, id: string): MigrationStats | undefined {
    const m = this.outgoing.get(name);
    if (!m || m.id !== id) return undefined;
    m.destinationCompleted();
    return m.stats;
  }

  private answerQuery(ws: FakeSocket, id: string): void {
    const silent = setTimeout(() => closeWith(ws, 1008, 'no query message'), this.incomingIdleMs);
    ws.once('message', (data: Buffer, isBinary: boolean) => {
      clearTimeout(silent);
      const m = isBinary ? decodeMsg(data) : undefined;
      if (m?.t !== 'query') {
        closeWith(ws, 1002, 'expected query on a query link');
        return;
      }
      const answer = queryAnswer(this.incoming.get(id), this.finished.get(id));
      ws.send(encodeMsg(answer));
      closeWith(ws, 1000, 'query answered');
    });
  }

  private recoverIncoming(ws: FakeSocket, id: string): void {
    const m = this.incoming.get(id);
    if (m) {
      m.recover(ws);
      return;
    }
    const answer = recoveryAnswer(this.finished.get(id));
    ws.send(encodeMsg(answer));
    closeWith(ws, 1000, 'migration over');
  }
}

/** The guest's seed and halting point travel as its program name. */
function guestOf(program: string): { seed: number; haltAt: number } {
  const [, seed, haltAt] = program.split(':').map(Number);
  if (!Number.isInteger(seed) || haltAt === undefined || Number.isNaN(haltAt)) throw new FerryError('EINVAL', `not a fake guest: ${program}`);
  return { seed: seed!, haltAt };
}

/** A logger that says nothing, or everything (FERRY_MODEL_LOG=debug) on stderr. */
export function modelLogger(): Logger {
  const level = process.env.FERRY_MODEL_LOG ?? 'silent';
  return pino({ level, base: {} }, pino.destination({ dest: 2, sync: true }));
}

/** Inside a describe: fake time (timers, performance.now, Date) for the engine, from its first test to its last. */
export function useEngineFakeTimers(): void {
  beforeAll(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'performance', 'Date'] });
  });
  afterAll(() => {
    vi.clearAllTimers();
    vi.useRealTimers();
  });
}
