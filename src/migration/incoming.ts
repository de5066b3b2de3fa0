import { createCpuState } from '../cpu/state.ts';
import { FerryError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { checkRamSize, GuestMemory } from '../memory/guest-memory.ts';
import { PAGE_EVER_WRITTEN, PAGE_PRESENT, PAGE_SIZE } from '../memory/layout.ts';
import { inflatePageFrame, isCompressedFrame } from '../memory/page-compression.ts';
import { checkPageFrame, fillMissingPages, isPageFrame } from '../memory/page-frame.ts';
import { holdReclaim } from '../memory/reclaim.ts';
import { deferSpareRefill } from '../vm/vcpu-threads.ts';
import { Vm } from '../vm/vm.ts';
import { ownsItsBuffer } from '../wire/frame-mac.ts';
import { dropSockets } from '../wire/link.ts';
import { closeDetail, closeWith, peerText } from '../wire/peer-text.ts';
import type { LinkSocket } from '../wire/socket.ts';
import { LinkLiveness } from './liveness.ts';
import { Backoff, giveUpLeftMs } from './recovery.ts';
import { destinationStep, type DestinationPhase } from './ownership.ts';
import type { DestinationVm, NewDestinationVm } from './ports.ts';
import {
  decodeMsg, DEVICES, encodeMsg, ISA, LINK_PING_MS, LINK_SILENT_MS, type MigrationMsg, type SetupMsg, type StreamContext,
} from './protocol.ts';

/** A paused post-copy checks on its source host after this long, doubling up to the max. */
const SOURCE_PROBE_FIRST_MS = 500;
const SOURCE_PROBE_MAX_MS = 5_000;
/** Frames (of up to 1 MiB) queued for the vCPU thread before the socket is paused. */
const MAX_PENDING_FRAMES = 16;
/** Frames queued behind an asynchronous step (the restore) before the socket is paused. */
const BACKLOG_PAUSE = 8;
import { MigrationStats } from './stats.ts';

/**
 * The host's destination VM: fresh RAM, and its vCPU thread started now, so the switch-over does
 * not wait for it; the next spare thread waits until the migration ends.
 */
export function newHostVm(s: SetupMsg): { vm: Vm; release: () => void } {
  const memory = GuestMemory.allocate(s.config.ramSize);
  const release = deferSpareRefill();
  try {
    // Post-copy: nothing is here yet; the vCPU traps on every page until it arrives.
    if (s.mode === 'postcopy') memory.pageState.fill(0);
    return { vm: new Vm(memory, createCpuState(), { ...s.config }, s.insnLimit), release };
  } catch (e) {
    release();
    throw e;
  }
}

/** What is kept of an incoming migration once it is over. */
export interface FinishedIncoming {
  vm: string | undefined;
  stats: MigrationStats | undefined;
  /** The guest had resumed here (post-copy): a late recovery learns whether it completed. */
  postcopy: boolean;
  /** The source has learned how it ended (a clean close after `completed`, its query answered, or told by us). */
  acknowledged: boolean;
  /** Where the source host's control API is, and which incarnation of it sent the guest (from its setup). */
  source: { url: string; incarnation: string | undefined } | undefined;
}

export interface IncomingOptions {
  /** Before the switch-over, a source silent (no message, ping or frame) for this long is given up. */
  idleMs: number;
}

export interface IncomingHooks<V extends DestinationVm = Vm> {
  /** Throws ENOMEM / EEXIST when this host cannot take the VM (nothing is allocated before). */
  checkRoom(setup: SetupMsg): void;
  /** Reserves the VM's name and memory on this host (throws ENOMEM / EEXIST to refuse). */
  reserve(setup: SetupMsg, vm: V): void;
  /** The VM runs here now (`settling`: post-copy is still bringing its pages). */
  adopt(name: string, console: Uint8Array, settling?: boolean): void;
  /** Asks the source host whether it still serves this migration (see MigrationManager.probeSource). */
  probeSource(url: string, name: string, incarnation: string | undefined): Promise<{ verdict: 'gone' | 'alive' | 'unknown'; why: string }>;
  /** Post-copy finished: the VM is fully here. */
  settled(name: string): void;
  /** Forget the half-built VM. */
  discard(name: string): Promise<void>;
  /** The migration is over (called once): the host keeps only what a late recovery must learn. */
  ended(finished: FinishedIncoming): void;
  update(stats: MigrationStats): void;
}

/**
 * The destination side of one migration: checks compatibility before anything changes, writes
 * pages straight into the new VM's RAM, and resumes the VM from the state section. If the link
 * drops before that, the half-built VM is discarded: the source still owns the guest.
 */
export class IncomingMigration<V extends DestinationVm = Vm> {
  stats: MigrationStats | undefined;
  private vm: V | undefined;
  private setup: SetupMsg | undefined;
  /** The VM's RAM once the setup has named it: page numbers and bitmaps are checked against it. */
  private ctx: StreamContext | undefined;
  private phase: DestinationPhase = 'setup';
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
  private prio: LinkSocket | undefined;
  /** The console history the source sent ahead of the state section (see the `console` message). */
  private consoleAhead: Uint8Array = new Uint8Array(0);
  /** The link generation the priority channel belongs to (one per link). */
  private prioGen = -1;
  /** The missing-page bitmap of a post-copy advice, already applied to the page states, and its count. */
  private advised: Uint8Array | undefined;
  private advisedCount = 0;
  /** Frames that arrived while an asynchronous step (the restore) was running, in order. */
  private backlog: [Buffer, boolean][] | undefined;
  /** Bumped when a post-copy link is dropped: anything still arriving on the old sockets is ignored. */
  private linkGen = 0;
  /** When post-copy lost its link (0: the link is up). */
  private pausedAt = 0;
  /** When the source was last heard from, on any of its sockets (the sockets of a dropped link say nothing more). */
  private readonly liveness = new LinkLiveness();
  /** What the host keeps of this migration once it is over (shared with it). */
  private finishedRecord: FinishedIncoming | undefined;
  /** Lets the host start its next spare vCPU thread: called when this migration ends. */
  private releaseSpare: () => void = () => {};
  /** Lets this host run full collections again (reclaim.ts): called when this migration ends. */
  private releaseReclaim: () => void = () => {};

  constructor(
    readonly id: string,
    private bulk: LinkSocket,
    readonly peer: string,
    private readonly maxRamPerVm: number,
    private readonly log: Logger,
    private readonly hooks: IncomingHooks<V>,
    private readonly opts: IncomingOptions,
    // V is Vm unless the caller passes its own factory (a test's fake VM).
    private readonly newVm: NewDestinationVm<V> = newHostVm as unknown as NewDestinationVm<V>,
  ) {
    this.bindBulk(bulk);
    this.watchLiveness();
  }

  /** The VM's name here (renamed by the source's `as`, or the name it had there). */
  get vmName(): string | undefined {
    return this.setup ? this.setup.as ?? this.setup.vm : undefined;
  }

  /** Completed, failed or discarded: nothing more will happen. */
  get finished(): boolean {
    return this.done;
  }

  /** Post-copy without a link: waiting for the source to recover it. */
  get paused(): boolean {
    return this.pausedAt !== 0 && !this.done;
  }

  private bindBulk(ws: LinkSocket): void {
    const gen = this.linkGen;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (gen !== this.linkGen) return;
      this.onMessage(data, isBinary);
    });
    this.liveness.watch(ws);
    ws.on('close', (code, reason) => {
      // A clean close after `completed`: the source knows the guest runs here.
      if (code === 1000 && this.finishedRecord) this.finishedRecord.acknowledged = true;
      if (gen === this.linkGen) this.linkDown(`link from ${this.peer} closed${closeDetail(code, reason)}`);
    });
    ws.on('error', () => {});
  }

  /**
   * Whatever the source sends that breaks the protocol: before the switch-over the migration
   * fails (the source keeps its guest); in post-copy the link is dropped and the migration
   * waits for a recovery, as for a lost link, since the guest's memory is split across both.
   */
  private protocolError(e: unknown, where: string): void {
    const err = e instanceof FerryError ? e : new FerryError('EPROTO', (e as Error).message);
    this.log.warn({ vm: this.vmName, peer: this.peer, err: err.message, where }, 'migration protocol error');
    if (this.postcopy && !this.done) {
      void this.step(() => this.pausePostcopy(`${err.code} on the ${where}: ${err.message}`, err));
      return;
    }
    void this.step(() => this.abort(err));
  }

  /** Runs `fn` after whatever this migration is doing; a failure is logged, never left unhandled. */
  private step(fn: () => unknown): Promise<void> {
    this.busy = this.busy.then(fn).then(() => undefined, (e: unknown) => this.stepFailed(e));
    return this.busy;
  }

  private stepFailed(e: unknown): void {
    this.log.error({ err: e, vm: this.vmName }, 'incoming migration step failed unexpectedly');
  }

  /**
   * Before the switch-over a source that has said nothing (no message, frame or ping: it pings
   * every LINK_PING_MS) for `idleMs` is gone, and its half-built VM with it; in post-copy a link
   * silent for LINK_SILENT_MS is taken as lost, so a silent partition pauses this side too.
   */
  private watchLiveness(): void {
    this.liveness.start(Math.min(LINK_PING_MS, Math.max(50, this.opts.idleMs / 4)), (silentMs) => {
      if (this.done) {
        this.liveness.stop();
        return;
      }
      if (this.postcopy) {
        if (this.pausedAt === 0 && silentMs > LINK_SILENT_MS) this.linkDown(`no word from ${this.peer} for ${LINK_SILENT_MS} ms`);
      } else if (this.phase !== 'switching') {
        // Once the priority channel is up the source pings it every second: silence there is a lost link.
        const limitMs = this.prio ? Math.min(this.opts.idleMs, LINK_SILENT_MS) : this.opts.idleMs;
        if (silentMs <= limitMs) return;
        this.liveness.stop();
        void this.step(() => this.abort(new FerryError('ETIMEDOUT', `no word from ${this.peer} for ${limitMs} ms before the switch-over`)));
      }
    });
  }

  /** Before the switch-over a lost link ends the migration (the source keeps the guest); in post-copy it pauses it. */
  private linkDown(why: string): void {
    void this.step(() => {
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
  private pausePostcopy(why: string, protocolError?: FerryError): void {
    if (this.pausedAt !== 0 || this.done) return;
    this.pausedAt = performance.now();
    this.linkGen++;
    dropSockets([this.bulk, this.prio], protocolError ? { code: 1002, reason: protocolError.message } : undefined);
    this.stats?.setStatus('postcopy-paused', `link lost: ${why}`);
    if (this.stats) this.hooks.update(this.stats);
    this.log.warn({ vm: this.vmName, err: why, missing: this.remaining() }, 'post-copy paused: the link is lost; the VM runs on here until it touches a missing page, and waits for the source to recover the link');
    this.watchSource(this.pausedAt).catch((e: unknown) => this.stepFailed(e));
  }

  /**
   * While paused, checks on the source host now and then: if its process is gone (or it gave
   * the guest up) no recovery can come, and the VM is declared lost rather than left waiting.
   */
  private async watchSource(pausedAt: number): Promise<void> {
    const url = this.sourceUrl();
    const giveUpAfterMs = this.setup?.giveUpAfterMs;
    const backoff = new Backoff(SOURCE_PROBE_FIRST_MS, SOURCE_PROBE_MAX_MS);
    for (;;) {
      const giveUpIn = giveUpLeftMs(pausedAt, giveUpAfterMs, performance.now());
      await new Promise((r) => setTimeout(r, Math.max(0, Math.min(backoff.next(), giveUpIn))).unref());
      if (this.pausedAt !== pausedAt || this.done) return;
      if (giveUpLeftMs(pausedAt, giveUpAfterMs, performance.now()) <= 0) {
        void this.step(() => this.abort(new FerryError('EGIVENUP', `no link from ${this.peer} for ${giveUpAfterMs} ms (--give-up-after): the VM is given up`)));
        return;
      }
      if (url === undefined) continue;
      const { verdict, why } = await this.hooks.probeSource(url, this.setup!.vm, this.setup?.sourceIncarnation) /* by its name there */;
      if (this.pausedAt !== pausedAt || this.done) return;
      if (verdict === 'gone') {
        void this.step(() => this.abort(new FerryError('ESOURCEGONE', why)));
        return;
      }
      this.log.debug({ vm: this.vmName!, verdict, why }, 'post-copy paused: the source host was checked');
    }
  }

  /** The source's control URL from its setup, with a wildcard listen address replaced by the peer's. */
  sourceUrl(): string | undefined {
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
    return this.step(() => this.abort(new FerryError('EABANDONED', reason)));
  }

  /**
   * `vm destroy` of the half-built VM: before the switch-over the migration is cancelled here
   * (the source keeps its guest, and is told). False when the guest already runs here.
   */
  cancelHere(reason: string): Promise<void> | undefined {
    if (this.done || this.postcopy || this.phase === 'switching') return undefined;
    return this.step(() => this.abort(new FerryError('ECANCELED', reason), true));
  }

  /** The host is stopping: nothing more happens here (its VMs are destroyed with it). */
  shutdown(): void {
    // In post-copy with the link up the source learns now that the guest dies with this host.
    if (!this.done && this.postcopy && this.pausedAt === 0) {
      this.send({ t: 'failed', code: 'ESHUTDOWN', message: `the destination host is shutting down with ${this.vmName ?? 'the VM'} in post-copy: the VM is lost` });
    }
    this.end();
  }

  /**
   * The migration is over, whatever its outcome: its spare-thread hold is released and the host
   * forgets it (keeping only its outcome, for a late recovery). Idempotent.
   */
  private end(): void {
    if (this.done) return;
    this.done = true;
    this.phase = 'done';
    this.releaseSpare();
    this.releaseReclaim();
    const sourceUrl = this.sourceUrl();
    this.finishedRecord = {
      vm: this.vmName, stats: this.stats, postcopy: this.postcopy !== undefined, acknowledged: false,
      source: sourceUrl === undefined ? undefined : { url: sourceUrl, incarnation: this.setup?.sourceIncarnation },
    };
    this.hooks.ended(this.finishedRecord);
  }

  /**
   * A source asks how this migration went (it lost its link at the switch-over): still loading
   * the state (pending), running the guest here (completed), or, before the switch-over, given up
   * here now: the source keeps the guest (discarded).
   */
  answerQuery(): MigrationMsg {
    if (this.postcopy) return { t: 'outcome', outcome: 'completed', message: `${this.vmName ?? 'the VM'} runs here (post-copy)` };
    if (this.phase === 'switching') return { t: 'outcome', outcome: 'pending', message: 'the state section is being loaded' };
    this.end();
    void this.step(() => this.giveUp(new FerryError('ELINK', 'the source asked how the migration ended before the switch-over: it keeps the guest')));
    return { t: 'outcome', outcome: 'discarded', message: 'the guest never resumed here, and never will' };
  }

  /**
   * The source reconnects after a lost link (hello with `recover`). In post-copy: the new link
   * replaces the old one and the source learns which pages are here. Before the guest resumed
   * here: the migration is given up, so the source can run its own copy.
   */
  recover(ws: LinkSocket): void {
    const answer = (m: MigrationMsg) => {
      ws.send(encodeMsg(m));
      ws.close(1000, 'migration over');
    };
    if (!this.postcopy) {
      this.end(); // from now on the guest can never resume here
      void this.step(() => this.giveUp(new FerryError('ELINK', 'the source reconnected before the guest resumed here; it keeps the guest')));
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
    this.pushWritten = 0;
    this.pushReceived = 0;
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
    this.log.info({ vm: this.vmName!, pausedMs: Math.round(pausedMs), missing: this.remaining() }, 'post-copy link recovered');
  }

  /**
   * The priority channel of the current link joins. False (the caller refuses it) when this
   * migration is over or its link already has one: nobody else may speak for the source.
   */
  attachPriority(ws: LinkSocket): boolean {
    if (this.done || (this.prio !== undefined && this.prioGen === this.linkGen)) return false;
    const gen = this.linkGen;
    this.prio = ws;
    this.prioGen = gen;
    this.liveness.watch(ws);
    ws.on('close', (code, reason) => {
      if (gen === this.linkGen && this.postcopy) this.linkDown(`priority channel from ${this.peer} closed${closeDetail(code, reason)}`);
    });
    ws.on('error', () => {});
    // After a recovery: ask again for the pages the vCPU is (or was) waiting on.
    const pc = this.postcopy;
    if (pc && !this.done) {
      const ps = this.vm!.memory.pageState;
      for (const page of pc.faults.keys()) {
        if ((Atomics.load(ps, page) & PAGE_PRESENT) === 0) ws.send(encodeMsg({ t: 'page-req', page }));
      }
    }
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (gen !== this.linkGen || this.done) return;
      try {
        if (isBinary && isPageFrame(data)) {
          if (!this.postcopy) throw new FerryError('EPROTO', 'a page frame on the priority channel before post-copy');
          this.fillPages(data);
          return;
        }
        if (!isBinary) throw new FerryError('EPROTO', 'text frames are not part of the migration protocol');
        const m = decodeMsg(data, this.ctx);
        if (m.t !== 'cancel') throw new FerryError('EPROTO', `unexpected "${m.t}" on the priority channel`);
        void this.step(() => this.abort(new FerryError('ECANCELED', `cancelled by the source: ${peerText(m.reason, 200)}`), true));
      } catch (e) {
        this.protocolError(e, 'priority channel');
      }
    });
    return true;
  }

  private send(m: MigrationMsg): void {
    if (this.bulk.readyState === this.bulk.OPEN) this.bulk.send(encodeMsg(m));
  }

  /**
   * Frames are handled in order and synchronously (page frames are copied as they arrive, so a
   * slow destination pushes back on the socket instead of buffering); only an asynchronous step
   * (the advice, the restore) waits, and whatever arrives meanwhile queues behind it, with the
   * socket paused once a few frames wait. Nothing a peer sends can throw out of here.
   */
  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.backlog) {
      this.backlog.push([data, isBinary]);
      if (this.backlog.length >= BACKLOG_PAUSE && !this.bulk.isPaused) this.bulk.pause();
      return;
    }
    let pending: Promise<void> | undefined;
    try {
      pending = this.onFrame(data, isBinary);
    } catch (e) {
      this.protocolError(e, 'migration stream');
      return;
    }
    if (pending === undefined) return;
    this.backlog = [];
    this.busy = pending.then(
      () => {
        const queued = this.backlog ?? [];
        this.backlog = undefined;
        if (this.bulk.isPaused) this.bulk.resume();
        for (const [d, b] of queued) this.onMessage(d, b);
      },
      (e: Error) => {
        this.backlog = undefined;
        return this.abort(e);
      },
    ).catch((e: unknown) => this.stepFailed(e));
  }

  /** One frame of the bulk stream, checked against what the current phase accepts (destinationStep). */
  private onFrame(data: Buffer, isBinary: boolean): Promise<void> | undefined {
    if (this.done) return undefined;
    if (isBinary && (isPageFrame(data) || isCompressedFrame(data))) {
      const refusal = destinationStep(this.phase, 'page-frame');
      if (refusal !== undefined) throw new FerryError('EPROTO', refusal);
      this.receivePages(data);
      return undefined;
    }
    if (!isBinary) throw new FerryError('EPROTO', 'text frames are not part of the migration protocol');
    const m = decodeMsg(data, this.ctx);
    const refusal = destinationStep(this.phase, m.t);
    if (refusal !== undefined) throw new FerryError('EPROTO', refusal);
    switch (m.t) {
      case 'setup':
        this.onSetup(m);
        return undefined;
      case 'round-end':
        this.send({ t: 'round-ack', round: m.round, pages: this.pagesReceived });
        this.stats?.setStatus('active');
        return undefined;
      case 'console':
        this.consoleAhead = m.history;
        return undefined;
      case 'state':
        return this.onState(m);
      case 'postcopy-advise':
        return this.advise(m.advice.missing, m.advice.missingCount);
      case 'postcopy-done':
        this.postcopy!.done = true;
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
      // Name and room first: a refused setup allocates nothing and starts no thread.
      this.hooks.checkRoom(s);
      const { vm, release } = this.newVm(s);
      this.releaseSpare = release;
      try {
        this.hooks.reserve(s, vm);
      } catch (e) {
        vm.destroy().catch((err: unknown) => this.stepFailed(err));
        throw e;
      }
      this.vm = vm;
      this.setup = s;
      this.releaseReclaim = holdReclaim(); // no full collection stalls this host mid-migration
      this.ctx = { pages: vm.memory.pages };
      this.phase = 'precopy';
      this.stats = new MigrationStats(s.as ?? s.vm, 'incoming', s.mode, this.peer, s.config.ramSize);
      this.log.info({ vm: s.as ?? s.vm, ...(s.as !== undefined ? { sourceName: s.vm } : {}), mode: s.mode, ram: s.config.ramSize, from: this.peer }, 'incoming migration');
      this.send({ t: 'setup-ok' });
      this.hooks.update(this.stats);
    } catch (e) {
      const err = e instanceof FerryError ? e : new FerryError('EINTERNAL', (e as Error).message);
      this.log.warn({ vm: s.as ?? s.vm, err: err.message }, 'incoming migration refused');
      this.send({ t: 'refused', code: err.code, message: peerText(err.message, 1000) });
      this.end();
      closeWith(this.bulk, 1000, 'setup refused');
    }
  }

  /**
   * Page frames go to the new VM's idle vCPU thread, which writes them into RAM; this thread
   * only receives. If that thread falls behind, the socket is paused so frames back up in TCP,
   * not in memory.
   */
  private receivePages(data: Buffer): void {
    // Pre-copy only: LZ4 frames, and deltas against the versions sent before.
    const compressed = isCompressedFrame(data);
    if (compressed && this.postcopy) throw new FerryError('EPROTO', 'a compressed frame in post-copy (its pages go plain)');
    const frame = compressed ? inflatePageFrame(data) : data;
    // Checked whole here, before the vCPU thread copies a byte of it: a bad frame fails this
    // migration, never the vCPU.
    const n = checkPageFrame(frame, this.ctx!.pages, !this.postcopy);
    if (this.postcopy) {
      // The vCPU thread writes pushed frames (between slices, and while it waits for a page),
      // so this thread only receives: a fault's page on the priority channel is never behind them.
      const bytes = frame.length;
      this.pushSizes.push([bytes, this.linkGen]);
      this.stats?.sent(bytes, 0, 0, 'postcopy');
      this.vm!.postPageFrame(frame, ownsItsBuffer(frame));
      this.pushReceived += bytes;
      this.ackPushed(); // at once: its delay is what paces the push (migration/push-window.ts)
      return;
    }
    const vm = this.vm!;
    const bytes = data.length;
    vm.postPageFrame(frame, !compressed && ownsItsBuffer(frame)); // (an inflated frame's buffer is the addon's: copied)
    this.pagesReceived += n;
    this.stats?.sent(bytes, n, 0, 'precopy');
    if (vm.pageFramesPending() > MAX_PENDING_FRAMES && !this.bulk.isPaused) {
      // Back-pressure: read no more from the source until the vCPU thread has written half.
      const bulk = this.bulk;
      bulk.pause();
      void (async () => {
        while (!this.done && bulk.readyState === bulk.OPEN && vm.state !== 'destroyed') {
          const seen = vm.pageFramesDone();
          if (vm.pageFramesPending() <= MAX_PENDING_FRAMES / 2) break;
          await vm.pageFramesDoneAfter(seen, 1000);
        }
        bulk.resume();
      })();
    }
  }

  /** The guest's console history as of the state section: what was sent ahead, and what it adds. */
  private consoleOf(m: Extract<MigrationMsg, { t: 'state' }>): Uint8Array {
    if (!m.consoleAppend) return m.console;
    const all = new Uint8Array(this.consoleAhead.length + m.console.length);
    all.set(this.consoleAhead);
    all.set(m.console, this.consoleAhead.length);
    return all;
  }

  private async onState(m: Extract<MigrationMsg, { t: 'state' }>): Promise<void> {
    const vm = this.vm;
    if (!vm || !this.setup) throw new FerryError('EPROTO', 'state before setup');
    if (this.phase === 'advised' && !m.postcopy) throw new FerryError('EPROTO', 'a pre-copy state section after a post-copy advice');
    this.phase = 'switching';
    this.stats?.setStatus('device');
    // Resume only while the source is still listening; if the link is gone the source owns the
    // guest and resumes it itself (see OutgoingMigration.destinationHasVm).
    if (this.bulk.readyState !== this.bulk.OPEN) throw new FerryError('ELINK', `link from ${this.peer} closed during the switch-over`);
    if (m.postcopy) {
      await this.startPostcopy(vm, m);
      return;
    }
    // The acknowledgement ends the source's downtime clock: sent before any bookkeeping, for a
    // running guest as soon as it runs (before the VM's state listeners: logs, control pushes).
    let told = false;
    const tell = () => {
      told = true;
      this.send({ t: 'completed', resumedAt: Date.now() });
    };
    await vm.restore(m.state, m.run, tell); // for a running guest: restores and resumes it
    if (!told) tell();
    this.stats?.setStatus('completed'); // before end(): the host keeps (and reports) what completed
    this.end();
    this.hooks.adopt(this.vmName!, this.consoleOf(m));
    this.hooks.update(this.stats!);
    this.log.info({ vm: this.vmName!, from: this.peer, run: m.run }, 'incoming migration completed');
  }

  /**
   * Post-copy switch-over: pages that were never written are present (zero) at once, the rest
   * stay missing; the VM resumes immediately and faults bring its pages first.
   */
  private async startPostcopy(vm: V, m: Extract<MigrationMsg, { t: 'state' }>): Promise<void> {
    const { late, missingCount } = m.postcopy!;
    const advised = this.advised;
    if (!advised) throw new FerryError('EPROTO', 'a post-copy state section without a preceding advice');
    // The missing set is the advice plus the late pages: the source's count must agree, or
    // post-copy would end with pages still missing (and a vCPU waiting on them for ever).
    let lateNew = 0;
    for (let i = 0; i < late.length; i++) if ((advised[late[i]! >>> 3]! & (1 << (late[i]! & 7))) === 0) lateNew++;
    if (missingCount !== this.advisedCount + lateNew) {
      throw new FerryError('EPROTO', `the switch-over counts ${missingCount} missing pages; the advice and late pages make ${this.advisedCount + lateNew}`);
    }
    const t0 = performance.now();
    // Pre-copy frames were written before advise-ok; none should be left, but nothing may land after the restore.
    await this.framesWritten();
    // A recovery that came meanwhile gave the guest back to the source.
    if (this.done) return;
    const gen = this.linkGen;
    // The advice marked the rest already: only pages written since join the missing set.
    const ps = vm.memory.pageState;
    for (let i = 0; i < late.length; i++) ps[late[i]!] = PAGE_EVER_WRITTEN; // checked inside RAM at decode
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
    this.hooks.adopt(this.vmName!, this.consoleOf(m), true);
    this.stats?.setStatus('postcopy-active');
    this.hooks.update(this.stats!);
    this.log.info({ vm: this.vmName!, missing: missingCount }, 'post-copy: the VM runs here; fetching its pages');
    this.phase = 'postcopy';
    this.followPushedFrames().catch((e: unknown) => this.stepFailed(e));
    this.checkPostcopyComplete();
  }

  /**
   * The post-copy advice: page states are prepared, and pre-copy frames still queued for the
   * vCPU thread are written, while the guest still runs on the source; the source pauses it
   * only after `advise-ok`, so none of this counts as downtime.
   */
  private async advise(missing: Uint8Array, missingCount: number): Promise<void> {
    if (!this.vm || (this.setup?.mode !== 'postcopy' && this.setup?.mode !== 'hybrid')) {
      throw new FerryError('EPROTO', 'postcopy-advise outside a post-copy or hybrid migration');
    }
    this.phase = 'advised';
    // The vCPU thread sets EVER_WRITTEN on pages of the frames it writes: the plain
    // read-modify-write of the page states below may run only once it has written them all
    // (no frame comes in this phase).
    await this.framesWritten();
    this.markPageStates(missing);
    this.advised = missing;
    this.advisedCount = missingCount; // checked against the bitmap at decode
    this.send({ t: 'advise-ok' });
  }

  /** Waits until the vCPU thread has written every page frame posted to it (a dead thread, or none in time, fails). */
  private async framesWritten(): Promise<void> {
    const vm = this.vm!;
    const deadline = performance.now() + this.opts.idleMs;
    for (;;) {
      // Read what is done before what is pending: a frame finished in between then wakes the wait at once.
      const seen = vm.pageFramesDone();
      if (vm.pageFramesPending() === 0) return;
      if (vm.state === 'destroyed') throw new FerryError('EVCPU', 'the vCPU thread is gone');
      const left = deadline - performance.now();
      if (left <= 0) throw new FerryError('ETIMEDOUT', `page frames not written within ${this.opts.idleMs} ms`);
      await vm.pageFramesDoneAfter(seen, left);
    }
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

  /** Pushed (bulk) frame bytes received and written since the current link came up, acknowledged to the source. */
  private pushReceived = 0;
  private pushWritten = 0;
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
        this.pushWritten += bytes;
        this.ackPushed();
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

  private ackPushed(): void {
    if (this.prio?.readyState === this.prio?.OPEN) this.prio!.send(encodeMsg({ t: 'pushed', bytes: this.pushWritten, received: this.pushReceived }));
  }

  /** Adds the pages the vCPU thread has filled since the last call to the statistics. */
  private countVcpuFills(): void {
    const pc = this.postcopy!;
    const filled = this.vm!.pagesFilled();
    if (filled === pc.filledCounted) return;
    this.stats?.sent(0, filled - pc.filledCounted, 0, 'postcopy');
    pc.filledCounted = filled;
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
    this.end();
    this.send({ t: 'completed', resumedAt: Date.now() });
    this.hooks.settled(this.vmName!);
    this.countVcpuFills();
    this.stats?.faultLatencies(pc.latencies);
    this.stats?.faultBlocks(this.vm!.blockedHistogram());
    if (this.stats) this.stats.info['postcopy-faults'] = this.vm!.traps();
    if (this.stats) this.stats.info['postcopy-blocktime-ms'] = Math.round(this.vm!.blockedMs() * 100) / 100;
    this.stats?.setStatus('completed');
    this.hooks.update(this.stats!);
    this.log.info({ vm: this.vmName!, faults: this.stats?.info['postcopy-requests'] }, 'post-copy completed: every page is here');
  }

  private async abort(e: Error, cancelled = false): Promise<void> {
    if (this.postcopy && !this.done) {
      // The guest runs here but part of its memory is still on the source: it cannot go on.
      this.end();
      this.linkGen++;
      dropSockets([this.bulk, this.prio], { code: 1011, reason: e.message });
      const name = this.vmName!;
      this.log.error({ vm: name, err: e.message }, 'post-copy failed: the VM is lost');
      this.stats?.setStatus('failed', `post-copy failed; the VM is lost: ${e.message}`);
      if (this.stats) this.hooks.update(this.stats);
      await this.hooks.discard(name);
      return;
    }
    if (this.done && !cancelled) return;
    if (this.done && cancelled && this.stats?.info.status === 'completed') return;
    this.end();
    await this.giveUp(e, cancelled);
  }

  /** Discards the half-built VM and tells the source why (the guest never ran here). */
  private async giveUp(e: Error, cancelled = false): Promise<void> {
    const name = this.vmName;
    this.log.warn({ vm: name, err: e.message }, cancelled ? 'incoming migration cancelled' : 'incoming migration failed');
    this.send({ t: 'failed', code: e instanceof FerryError ? e.code : 'EINTERNAL', message: peerText(e.message, 1000) });
    // Both channels go now: nothing the source still sends can matter, and its sockets must not linger.
    this.linkGen++;
    dropSockets([this.bulk, this.prio], { code: cancelled ? 1000 : 1011, reason: e.message });
    this.stats?.setStatus(cancelled ? 'cancelled' : 'failed', e.message);
    if (this.stats) this.hooks.update(this.stats);
    if (name !== undefined) await this.hooks.discard(name);
    else if (this.vm) await this.vm.destroy();
  }
}
