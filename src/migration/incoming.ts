import type WebSocket from 'ws';
import { createCpuState } from '../cpu/state.ts';
import { FerryError } from '../errors.ts';
import { dropSockets } from '../host/link.ts';
import type { Logger } from '../log.ts';
import { checkRamSize, GuestMemory } from '../memory/guest-memory.ts';
import { PAGE_EVER_WRITTEN, PAGE_PRESENT, PAGE_SIZE } from '../memory/layout.ts';
import { deferSpareRefill } from '../vm/vcpu-threads.ts';
import { Vm } from '../vm/vm.ts';
import {
  decodeMsg, DEVICES, encodeMsg, fillMissingPages, ISA, isPageFrame, LINK_PING_MS, LINK_SILENT_MS, type MigrationMsg, pageFrameCount, type SetupMsg,
} from './protocol.ts';

/** A paused post-copy checks on its source host after this long, doubling up to the max. */
const SOURCE_PROBE_FIRST_MS = 500;
const SOURCE_PROBE_MAX_MS = 5_000;
/** Frames (of up to 1 MiB) queued for the vCPU thread before the socket is paused. */
const MAX_PENDING_FRAMES = 16;
import { MigrationStats } from './stats.ts';

export interface IncomingHooks {
  /** Reserves the VM's name and memory on this host (throws ENOMEM / EEXIST to refuse). */
  reserve(setup: SetupMsg, vm: Vm): void;
  /** The VM runs here now (`settling`: post-copy is still bringing its pages). */
  adopt(name: string, console: Uint8Array, settling?: boolean): void;
  /** Asks the source host whether it still serves this migration (see MigrationManager.probeSource). */
  probeSource(url: string, name: string): Promise<{ verdict: 'gone' | 'alive' | 'unknown'; why: string }>;
  /** Post-copy finished: the VM is fully here. */
  settled(name: string): void;
  /** Forget the half-built VM. */
  discard(name: string): Promise<void>;
  update(stats: MigrationStats): void;
}

/**
 * The destination side of one migration: checks compatibility before anything changes, writes
 * pages straight into the new VM's RAM, and resumes the VM from the state section. If the link
 * drops before that, the half-built VM is discarded: the source still owns the guest.
 */
export class IncomingMigration {
  stats: MigrationStats | undefined;
  private vm: Vm | undefined;
  private setup: SetupMsg | undefined;
  private done = false;
  private pagesReceived = 0;
  private busy: Promise<void> = Promise.resolve();
  /** Post-copy after the switch-over: the VM runs here while its pages arrive. */
  private postcopy: {
    missingCount: number;
    /** Pages filled on this thread (a fault's page); the vCPU thread counts its own (C_PAGES_FILLED). */
    filledHere: number;
    filledBase: number;
    /** The vCPU's fill counter as far as the statistics have counted it. */
    filledCounted: number;
    done: boolean;
    /** Outstanding faults: page -> when it was reported. */
    faults: Map<number, number>;
    latencies: number[];
  } | undefined;
  private prio: WebSocket | undefined;
  /** The missing-page bitmap of a post-copy advice, already applied to the page states. */
  private advised: Uint8Array | undefined;
  /** Frames that arrived while an asynchronous step (the restore) was running, in order. */
  private backlog: [Buffer, boolean][] | undefined;
  /** Bumped when a post-copy link is dropped: anything still arriving on the old sockets is ignored. */
  private linkGen = 0;
  /** When post-copy lost its link (0: the link is up). */
  private pausedAt = 0;
  /** When the source was last heard from on the current link (post-copy liveness). */
  private heardAt = performance.now();
  /** Lets the host start its next spare vCPU thread: called when this migration ends. */
  private releaseSpare: () => void = () => {};

  constructor(
    readonly id: string,
    private bulk: WebSocket,
    readonly peer: string,
    private readonly maxRamPerVm: number,
    private readonly log: Logger,
    private readonly hooks: IncomingHooks,
  ) {
    this.bindBulk(bulk);
  }

  get vmName(): string | undefined {
    return this.setup?.vm;
  }

  /** Completed, failed or discarded: nothing more will happen. */
  get finished(): boolean {
    return this.done;
  }

  /** Post-copy without a link: waiting for the source to recover it. */
  get paused(): boolean {
    return this.pausedAt !== 0 && !this.done;
  }

  private bindBulk(ws: WebSocket): void {
    const gen = this.linkGen;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (gen !== this.linkGen) return;
      this.heardAt = performance.now();
      this.onMessage(data, isBinary);
    });
    ws.on('close', () => {
      if (gen === this.linkGen) this.linkDown(`link from ${this.peer} closed`);
    });
    ws.on('error', () => {});
  }

  /** Before the switch-over a lost link ends the migration (the source keeps the guest); in post-copy it pauses it. */
  private linkDown(why: string): void {
    this.busy = this.busy.then(() => {
      if (this.done) return undefined;
      if (this.postcopy) {
        this.pausePostcopy(why);
        return undefined;
      }
      return this.abort(new FerryError('ELINK', `${why} before the switch-over`));
    });
  }

  /**
   * Post-copy lost its link: the guest runs on here (its vCPU blocks only on a missing page),
   * faults are remembered, and the source's next link (`recover`) picks up from the pages here.
   */
  private pausePostcopy(why: string): void {
    if (this.pausedAt !== 0 || this.done) return;
    this.pausedAt = performance.now();
    this.linkGen++;
    dropSockets(this.bulk, this.prio);
    this.stats?.setStatus('postcopy-paused', `link lost: ${why}`);
    if (this.stats) this.hooks.update(this.stats);
    this.log.warn({ vm: this.setup?.vm, err: why, missing: this.remaining() }, 'post-copy paused: the link is lost; the VM runs on here until it touches a missing page, and waits for the source to recover the link');
    void this.watchSource(this.pausedAt);
  }

  /**
   * While paused, checks on the source host now and then: if its process is gone (or it gave
   * the guest up) no recovery can come, and the VM is declared lost rather than left waiting.
   */
  private async watchSource(pausedAt: number): Promise<void> {
    const url = this.sourceUrl();
    if (url === undefined) return;
    for (let delayMs = SOURCE_PROBE_FIRST_MS; ; delayMs = Math.min(SOURCE_PROBE_MAX_MS, delayMs * 2)) {
      await new Promise((r) => setTimeout(r, delayMs).unref());
      if (this.pausedAt !== pausedAt || this.done) return;
      const { verdict, why } = await this.hooks.probeSource(url, this.setup!.vm);
      if (this.pausedAt !== pausedAt || this.done) return;
      if (verdict === 'gone') {
        this.busy = this.busy.then(() => this.abort(new FerryError('ESOURCEGONE', why)));
        return;
      }
      this.log.debug({ vm: this.setup!.vm, verdict, why }, 'post-copy paused: the source host was checked');
    }
  }

  /** The source's control URL from its setup, with a wildcard listen address replaced by the peer's. */
  private sourceUrl(): string | undefined {
    const src = this.setup?.source;
    if (typeof src !== 'string') return undefined;
    try {
      const u = new URL(src);
      if (u.hostname === '0.0.0.0' || u.hostname === '[::]') {
        const ip = this.peer.slice(0, this.peer.lastIndexOf(':')).replace(/^::ffff:/, '');
        u.hostname = ip.includes(':') ? `[${ip}]` : ip;
      }
      return u.origin;
    } catch {
      return undefined;
    }
  }

  /** A paused post-copy given up on this host: the VM is dropped and reported lost. */
  abandon(reason: string): Promise<void> {
    this.busy = this.busy.then(() => this.abort(new FerryError('EABANDONED', reason)));
    return this.busy;
  }

  /** The host is stopping: nothing more happens here (its VMs are destroyed with it). */
  shutdown(): void {
    this.done = true;
    this.releaseSpare();
  }

  /**
   * The source reconnects after a lost link (hello with `recover`). In post-copy: the new link
   * replaces the old one and the source learns which pages are here. Before the guest resumed
   * here: the migration is given up, so the source can run its own copy.
   */
  recover(ws: WebSocket): void {
    const answer = (m: MigrationMsg) => {
      ws.send(encodeMsg(m));
      ws.close(1000, 'migration over');
    };
    if (this.done) {
      if (this.postcopy && this.stats?.info.status === 'completed') answer({ t: 'completed', resumedAt: Date.now() });
      else answer({ t: 'failed', code: 'ENOMIGRATION', message: `the migration of ${this.setup?.vm ?? 'this VM'} ended here: ${this.stats?.info['error-desc'] ?? 'discarded'}` });
      return;
    }
    if (!this.postcopy) {
      this.done = true; // from now on the guest can never resume here
      this.busy = this.busy.then(() => this.giveUp(new FerryError('ELINK', 'the source reconnected before the guest resumed here; it keeps the guest')));
      answer({ t: 'failed', code: 'ENOMIGRATION', message: 'the guest never resumed here; the source keeps it' });
      return;
    }
    this.pausePostcopy('the source opened a new link');
    this.bulk = ws;
    this.bindBulk(ws);
    const mem = this.vm!.memory;
    const received = new Uint8Array(Math.ceil(mem.pages / 8));
    let receivedCount = 0;
    for (let p = 0; p < mem.pages; p++) {
      if (Atomics.load(mem.pageState, p) & PAGE_PRESENT) {
        received[p >>> 3]! |= 1 << (p & 7);
        receivedCount++;
      }
    }
    this.pushedBytes = 0;
    this.heardAt = performance.now();
    this.send({ t: 'recv-bitmap', received, receivedCount });
    const pausedMs = performance.now() - this.pausedAt;
    this.pausedAt = 0;
    if (this.stats) {
      const i = this.stats.info;
      i['postcopy-recoveries'] = (i['postcopy-recoveries'] ?? 0) + 1;
      i['postcopy-paused-ms'] = Math.round(((i['postcopy-paused-ms'] ?? 0) + pausedMs) * 100) / 100;
      delete i['error-desc'];
      this.stats.setStatus('postcopy-active');
      this.hooks.update(this.stats);
    }
    this.log.info({ vm: this.setup!.vm, pausedMs: Math.round(pausedMs), missing: this.remaining() }, 'post-copy link recovered');
  }

  attachPriority(ws: WebSocket): void {
    const gen = this.linkGen;
    this.prio = ws;
    this.heardAt = performance.now();
    const heard = () => {
      if (gen === this.linkGen) this.heardAt = performance.now();
    };
    ws.on('ping', heard);
    ws.on('message', heard);
    ws.on('close', () => {
      if (gen === this.linkGen && this.postcopy) this.linkDown(`priority channel from ${this.peer} closed`);
    });
    // After a recovery: ask again for the pages the vCPU is (or was) waiting on.
    const pc = this.postcopy;
    if (pc && !this.done) {
      const ps = this.vm!.memory.pageState;
      for (const page of pc.faults.keys()) {
        if ((Atomics.load(ps, page) & PAGE_PRESENT) === 0) ws.send(encodeMsg({ t: 'page-req', page }));
      }
    }
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (gen !== this.linkGen) return;
      if (isBinary && isPageFrame(data)) {
        if (this.postcopy) this.fillPages(data);
        return;
      }
      let m: MigrationMsg;
      try {
        m = decodeMsg(data);
      } catch {
        return;
      }
      if (m.t === 'cancel') {
        this.busy = this.busy.then(() => this.abort(new FerryError('ECANCELED', `cancelled by the source: ${m.reason}`), true));
      }
    });
    ws.on('error', () => {});
  }

  private send(m: MigrationMsg): void {
    if (this.bulk.readyState === this.bulk.OPEN) this.bulk.send(encodeMsg(m));
  }

  /**
   * Frames are handled in order and synchronously (page frames are copied as they arrive, so a
   * slow destination pushes back on the socket instead of buffering); only the state section
   * waits, and whatever arrives meanwhile queues behind it.
   */
  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.backlog) {
      this.backlog.push([data, isBinary]);
      return;
    }
    let pending: Promise<void> | undefined;
    try {
      pending = this.onFrame(data, isBinary);
    } catch (e) {
      this.busy = this.busy.then(() => this.abort(e as Error));
      return;
    }
    if (pending === undefined) return;
    this.backlog = [];
    this.busy = pending.then(
      () => {
        const queued = this.backlog ?? [];
        this.backlog = undefined;
        for (const [d, b] of queued) this.onMessage(d, b);
      },
      (e: Error) => {
        this.backlog = undefined;
        return this.abort(e);
      },
    );
  }

  private onFrame(data: Buffer, isBinary: boolean): Promise<void> | undefined {
    if (this.done) return undefined;
    if (isBinary && isPageFrame(data)) {
      if (!this.vm) throw new FerryError('EPROTO', 'pages before setup');
      this.receivePages(data);
      return undefined;
    }
    const m = decodeMsg(data);
    switch (m.t) {
      case 'setup':
        this.onSetup(m);
        return undefined;
      case 'round-end':
        this.send({ t: 'round-ack', round: m.round, pages: this.pagesReceived });
        this.stats?.setStatus('active');
        return undefined;
      case 'state':
        return this.onState(m);
      case 'postcopy-advise':
        if (!(m.advice?.missing instanceof Uint8Array) || m.advice.missing.length !== Math.ceil((this.vm?.memory.pages ?? 0) / 8)) {
          throw new FerryError('EPROTO', 'postcopy-advise without a missing-page bitmap of this VM\'s size');
        }
        return this.advise(m.advice.missing);
      case 'postcopy-done':
        if (!this.postcopy) throw new FerryError('EPROTO', 'postcopy-done outside post-copy');
        this.postcopy.done = true;
        this.checkPostcopyComplete();
        return undefined;
      default:
        throw new FerryError('EPROTO', `unexpected "${m.t}" on the migration stream`);
    }
  }

  private onSetup(s: SetupMsg): void {
    if (this.setup) throw new FerryError('EPROTO', 'a second setup on one migration');
    try {
      if (s.isa !== ISA) throw new FerryError('EINCOMPATIBLE', `ISA ${s.isa} is not ${ISA}`);
      if (s.pageSize !== PAGE_SIZE) throw new FerryError('EINCOMPATIBLE', `page size ${s.pageSize} is not ${PAGE_SIZE}`);
      if (JSON.stringify(s.devices) !== JSON.stringify(DEVICES)) {
        throw new FerryError('EINCOMPATIBLE', `device set ${s.devices.join(', ')} differs from this host's ${DEVICES.join(', ')}`);
      }
      checkRamSize(s.config.ramSize);
      if (s.config.ramSize > this.maxRamPerVm) throw new FerryError('ENOMEM', `a ${s.config.ramSize}-byte VM exceeds this host's limit`);
      const memory = GuestMemory.allocate(s.config.ramSize);
      this.releaseSpare = deferSpareRefill();
      // Post-copy: nothing is here yet; the vCPU traps on every page until it arrives.
      if (s.mode === 'postcopy') memory.pageState.fill(0);
      // The vCPU thread starts now, so the switch-over does not wait for it.
      const vm = new Vm(memory, createCpuState(), { ...s.config }, s.insnLimit);
      try {
        this.hooks.reserve(s, vm);
      } catch (e) {
        void vm.destroy();
        throw e;
      }
      this.vm = vm;
      this.setup = s;
      this.stats = new MigrationStats(s.vm, 'incoming', s.mode, this.peer, s.config.ramSize);
      this.log.info({ vm: s.vm, mode: s.mode, ram: s.config.ramSize, from: this.peer }, 'incoming migration');
      this.send({ t: 'setup-ok' });
      this.hooks.update(this.stats);
    } catch (e) {
      const err = e instanceof FerryError ? e : new FerryError('EINTERNAL', (e as Error).message);
      this.releaseSpare();
      this.log.warn({ vm: s.vm, err: err.message }, 'incoming migration refused');
      this.send({ t: 'refused', code: err.code, message: err.message });
      this.done = true;
    }
  }

  /**
   * Page frames go to the new VM's idle vCPU thread, which writes them into RAM; this thread
   * only receives. If that thread falls behind, the socket is paused so frames back up in TCP,
   * not in memory.
   */
  private receivePages(frame: Buffer): void {
    if (this.postcopy) {
      // The vCPU thread writes pushed frames (between slices, and while it waits for a page),
      // so this thread only receives: a fault's page on the priority channel is never behind them.
      const bytes = frame.length;
      this.pushSizes.push([bytes, this.linkGen]);
      this.stats?.sent(bytes, 0, 0, 'postcopy');
      this.vm!.postPageFrame(frame);
      return;
    }
    const vm = this.vm!;
    const n = pageFrameCount(frame);
    const bytes = frame.length;
    vm.postPageFrame(frame);
    this.pagesReceived += n;
    this.stats?.sent(bytes, n, 0, 'precopy');
    if (vm.pageFramesPending() > MAX_PENDING_FRAMES && !this.bulk.isPaused) {
      this.bulk.pause();
      const poll = () => {
        if (this.done || this.bulk.readyState !== this.bulk.OPEN) return;
        if (vm.pageFramesPending() > MAX_PENDING_FRAMES / 2) setTimeout(poll, 1);
        else this.bulk.resume();
      };
      setTimeout(poll, 1);
    }
  }

  private async onState(m: Extract<MigrationMsg, { t: 'state' }>): Promise<void> {
    const vm = this.vm;
    if (!vm || !this.setup) throw new FerryError('EPROTO', 'state before setup');
    this.stats?.setStatus('device');
    // Resume only while the source is still listening; if the link is gone the source owns the
    // guest and resumes it itself (see OutgoingMigration.destinationHasVm).
    if (this.bulk.readyState !== this.bulk.OPEN) throw new FerryError('ELINK', `link from ${this.peer} closed during the switch-over`);
    if (m.postcopy) {
      await this.startPostcopy(vm, m);
      return;
    }
    await vm.restore(m.state, m.run); // for a running guest: restores and resumes it
    this.done = true;
    // The acknowledgement ends the source's downtime clock: send it before any bookkeeping.
    this.send({ t: 'completed', resumedAt: Date.now() });
    this.releaseSpare();
    this.hooks.adopt(this.setup.vm, m.console);
    this.stats?.setStatus('completed');
    this.hooks.update(this.stats!);
    this.log.info({ vm: this.setup.vm, from: this.peer, run: m.run }, 'incoming migration completed');
  }

  /**
   * Post-copy switch-over: pages that were never written are present (zero) at once, the rest
   * stay missing; the VM resumes immediately and faults bring its pages first.
   */
  private async startPostcopy(vm: Vm, m: Extract<MigrationMsg, { t: 'state' }>): Promise<void> {
    const { late, missingCount } = m.postcopy!;
    if (!this.advised || !(late instanceof Uint32Array)) throw new FerryError('EPROTO', 'post-copy state without a preceding advice or its late pages');
    const t0 = performance.now();
    // Pre-copy frames were written before advise-ok; none should be left, but nothing may land after the restore.
    while (vm.pageFramesPending() > 0) await new Promise((r) => setTimeout(r, 1));
    // A recovery that came meanwhile gave the guest back to the source.
    if (this.done) return;
    const gen = this.linkGen;
    // The advice marked the rest already: only pages written since join the missing set.
    const ps = vm.memory.pageState;
    for (let i = 0; i < late.length; i++) {
      const p = late[i]!;
      if (p >= ps.length) throw new FerryError('EPROTO', `late page ${p} is outside guest RAM`);
      ps[p] = PAGE_EVER_WRITTEN;
    }
    this.postcopy = { missingCount, filledHere: 0, filledBase: vm.pagesFilled(), filledCounted: vm.pagesFilled(), done: false, faults: new Map(), latencies: [] };
    vm.acceptPostcopyPages();
    vm.on('fault', (page: number) => {
      // The vCPU has written every pushed frame posted to it before it reports a fault.
      if (Atomics.load(vm.memory.pageState, page) & PAGE_PRESENT) return;
      this.postcopy?.faults.set(page, performance.now());
      if (this.stats) this.stats.info['postcopy-requests']++;
      // Without a link the fault waits in `faults`; the recovered link asks for it again.
      if (this.pausedAt === 0 && this.prio?.readyState === this.prio?.OPEN) this.prio!.send(encodeMsg({ t: 'page-req', page }));
    });
    const tMarked = performance.now();
    let told = false;
    const tell = () => {
      if (told || gen !== this.linkGen) return; // after a recovery, the recovery has told the source
      told = true;
      this.send({ t: 'resumed' });
    };
    await vm.restore(m.state, m.run, tell);
    tell();
    const tResumed = performance.now();
    this.log.debug({ markMs: Math.round((tMarked - t0) * 100) / 100, restoreMs: Math.round((tResumed - tMarked) * 100) / 100 }, 'post-copy switch-over timing (destination)');
    this.hooks.adopt(this.setup!.vm, m.console, true);
    this.stats?.setStatus('postcopy-active');
    this.hooks.update(this.stats!);
    this.log.info({ vm: this.setup!.vm, missing: missingCount }, 'post-copy: the VM runs here; fetching its pages');
    void this.followPushedFrames();
    this.watchLink();
    this.checkPostcopyComplete();
  }

  /**
   * The post-copy advice: page states are prepared, and pre-copy frames still queued for the
   * vCPU thread are written, while the guest still runs on the source; the source pauses it
   * only after `advise-ok`, so none of this counts as downtime.
   */
  private async advise(missing: Uint8Array): Promise<void> {
    if (!this.vm || (this.setup?.mode !== 'postcopy' && this.setup?.mode !== 'hybrid')) {
      throw new FerryError('EPROTO', 'postcopy-advise outside a post-copy or hybrid migration');
    }
    this.markPageStates(missing);
    this.advised = missing;
    while (this.vm.pageFramesPending() > 0) await new Promise((r) => setTimeout(r, 1));
    this.send({ t: 'advise-ok' });
  }

  /**
   * Missing pages (never sent, or dirtied since they were) are not present, so the vCPU traps
   * on them; anything else is zero (never written) or arrived during pre-copy: present. Plain
   * stores: the vCPU has not run yet, and the restore publishes them (Atomics).
   */
  private markPageStates(missing: Uint8Array): void {
    const ps = this.vm!.memory.pageState;
    for (let p = 0; p < ps.length; p++) {
      if (missing[p >>> 3]! & (1 << (p & 7))) ps[p] = PAGE_EVER_WRITTEN;
      else ps[p] = ps[p]! | PAGE_PRESENT;
    }
  }

  /** Pushed (bulk) frame bytes written since the current link came up, acknowledged to the source. */
  private pushedBytes = 0;
  /** Post-copy: sizes of pushed frames posted to the vCPU thread and not yet written, with their link. */
  private readonly pushSizes: [number, number][] = [];

  /**
   * Post-copy: follows the vCPU thread writing pushed frames (PAGES_DONE), acknowledges their
   * bytes to the source (its push window), counts the pages, and completes the migration.
   */
  private async followPushedFrames(): Promise<void> {
    const vm = this.vm!;
    const pc = this.postcopy!;
    let seen = vm.pageFramesDone();
    while (!this.done) {
      await vm.pageFramesDoneAfter(seen, 250);
      if (this.done) return;
      const now = vm.pageFramesDone();
      if (now === seen && vm.pageFramesPending() > 0) this.log.debug({ seen, pending: vm.pageFramesPending(), state: vm.state, traps: vm.traps() }, 'post-copy: pushed frames wait for the vCPU thread');
      let bytes = 0;
      for (; seen < now; seen++) {
        const e = this.pushSizes.shift();
        if (e !== undefined && e[1] === this.linkGen) bytes += e[0];
      }
      this.countVcpuFills();
      if (bytes > 0) {
        this.pushedBytes += bytes;
        if (this.prio?.readyState === this.prio?.OPEN) this.prio!.send(encodeMsg({ t: 'pushed', bytes: this.pushedBytes }));
      }
      // Faults whose page came in a pushed frame: their latency ends about now.
      if (pc.faults.size > 0) {
        const ps = vm.memory.pageState;
        const t = performance.now();
        for (const [p, t0] of pc.faults) {
          if (Atomics.load(ps, p) & PAGE_PRESENT) {
            pc.latencies.push((t - t0) * 1000);
            pc.faults.delete(p);
          }
        }
      }
      this.checkPostcopyComplete();
    }
  }

  /** Adds the pages the vCPU thread has filled since the last call to the statistics. */
  private countVcpuFills(): void {
    const pc = this.postcopy!;
    const filled = this.vm!.pagesFilled();
    if (filled === pc.filledCounted) return;
    this.stats?.sent(0, filled - pc.filledCounted, 0, 'postcopy');
    pc.filledCounted = filled;
  }

  /**
   * Post-copy: a link on which the source has said nothing (it pings every LINK_PING_MS) for
   * LINK_SILENT_MS is taken as lost, so a silent partition pauses this side too.
   */
  private watchLink(): void {
    const watch = setInterval(() => {
      if (this.done) {
        clearInterval(watch);
        return;
      }
      if (this.pausedAt === 0 && performance.now() - this.heardAt > LINK_SILENT_MS) {
        this.linkDown(`no word from ${this.peer} for ${LINK_SILENT_MS} ms`);
      }
    }, LINK_PING_MS);
    watch.unref();
  }

  /** Post-copy pages still missing here. */
  private remaining(): number {
    const pc = this.postcopy;
    return pc ? pc.missingCount - pc.filledHere - (this.vm!.pagesFilled() - pc.filledBase) : 0;
  }

  private fillPages(frame: Buffer): void {
    const pc = this.postcopy!;
    const mem = this.vm!.memory;
    const filled = fillMissingPages(mem.ram, mem.pageState, mem.pages, frame);
    pc.filledHere += filled.length;
    if (filled.length > 0) this.vm!.wakeVcpu();
    const now = performance.now();
    for (const p of filled) {
      const t0 = pc.faults.get(p);
      if (t0 !== undefined) {
        pc.latencies.push((now - t0) * 1000);
        pc.faults.delete(p);
      }
    }
    this.stats?.sent(frame.length, filled.length, 0, 'postcopy');
    this.checkPostcopyComplete();
  }

  private checkPostcopyComplete(): void {
    const pc = this.postcopy;
    if (!pc || !pc.done || this.remaining() > 0 || this.done) return;
    this.done = true;
    this.releaseSpare();
    this.send({ t: 'completed', resumedAt: Date.now() });
    this.hooks.settled(this.setup!.vm);
    this.countVcpuFills();
    this.stats?.faultLatencies(pc.latencies);
    if (this.stats) this.stats.info['postcopy-faults'] = this.vm!.traps();
    if (this.stats) this.stats.info['postcopy-blocktime-ms'] = Math.round(this.vm!.blockedMs() * 100) / 100;
    this.stats?.setStatus('completed');
    this.hooks.update(this.stats!);
    this.log.info({ vm: this.setup!.vm, faults: this.stats?.info['postcopy-requests'] }, 'post-copy completed: every page is here');
  }

  private async abort(e: Error, cancelled = false): Promise<void> {
    if (this.postcopy && !this.done) {
      // The guest runs here but part of its memory is still on the source: it cannot go on.
      this.done = true;
      this.releaseSpare();
      const name = this.setup!.vm;
      this.log.error({ vm: name, err: e.message }, 'post-copy failed: the VM is lost');
      this.stats?.setStatus('failed', `post-copy failed; the VM is lost: ${e.message}`);
      if (this.stats) this.hooks.update(this.stats);
      await this.hooks.discard(name);
      return;
    }
    if (this.done && !cancelled) return;
    if (this.done && cancelled && this.stats?.info.status === 'completed') return;
    this.done = true;
    await this.giveUp(e, cancelled);
  }

  /** Discards the half-built VM and tells the source why (the guest never ran here). */
  private async giveUp(e: Error, cancelled = false): Promise<void> {
    this.releaseSpare();
    const name = this.setup?.vm;
    this.log.warn({ vm: name, err: e.message }, cancelled ? 'incoming migration cancelled' : 'incoming migration failed');
    this.send({ t: 'failed', code: e instanceof FerryError ? e.code : 'EINTERNAL', message: e.message });
    if (name !== undefined) await this.hooks.discard(name);
    else if (this.vm) await this.vm.destroy();
    this.stats?.setStatus(cancelled ? 'cancelled' : 'failed', e.message);
    if (this.stats) this.hooks.update(this.stats);
    if (this.bulk.readyState <= 1) this.bulk.close(1011, e.message.slice(0, 100));
  }
}
