import { randomUUID } from 'node:crypto';
import type WebSocket from 'ws';
import { FerryError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { PAGE_EVER_WRITTEN, PAGE_SIZE } from '../memory/layout.ts';
import { encodePages, MAX_FRAME_BYTES, PAGES_PER_FRAME } from '../memory/page-frame.ts';
import type { Vm } from '../vm/vm.ts';
import { ControlClient } from '../wire/control-client.ts';
import { dropSockets, openLink } from '../wire/link.ts';
import { Inbox } from './inbox.ts';
import {
  decodeMsg, DEVICES, encodeMsg, ISA, LINK_PING_MS, LINK_SILENT_MS, MIGRATION_MAX_PAYLOAD, MIGRATION_PROTOCOL_VERSION, type MigrationMsg, type RunState,
} from './protocol.ts';
import { MigrationStats, round2 } from './stats.ts';

export type MigrationMode = 'precopy' | 'cold' | 'postcopy' | 'hybrid';

export interface MigrateParams {
  to: string;
  mode: MigrationMode;
  /** Switch over once the remaining dirty pages would take at most this long to send. */
  downtimeLimitMs: number;
  /** Bytes per second on the wire; 0 = unlimited. */
  maxBandwidth: number;
  /** Stop-and-copy after this many rounds even if not converged. */
  maxRounds: number;
  autoConverge: boolean;
  /** Hybrid: switch to post-copy after this many pre-copy rounds (also on start-postcopy, or when not converging). */
  postcopyAfterRounds: number;
  /**
   * Post-copy: start the background push this long after the switch-over (default 0). Until
   * then pages move only when the guest faults on them (for measuring demand paging).
   */
  pushDelayMs: number;
  /** Post-copy: reconnect by itself, with backoff, when the link drops (else only on `migrate recover`). */
  autoRecover: boolean;
}

/** QEMU's defaults where they exist (downtime-limit 300 ms; guestperf's 30 iterations). */
export const MIGRATE_DEFAULTS: Omit<MigrateParams, 'to'> = {
  mode: 'precopy', downtimeLimitMs: 300, maxBandwidth: 0, maxRounds: 30, autoConverge: false, postcopyAfterRounds: 30, pushDelayMs: 0, autoRecover: true,
};

const WINDOW_BYTES = 8 * 1024 * 1024;
/**
 * After a post-copy switch-over, pushed bytes not yet written at the destination (by its
 * `pushed` acknowledgements): a fault's page never waits behind more than this.
 */
const POSTCOPY_WINDOW_BYTES = 1024 * 1024;
const MIN_PUSH_CHUNK = 16;
/** 256 KiB: a pushed frame is small next to the window, so faults interleave with the push. */
const MAX_PUSH_CHUNK = 64;
const ACK_TIMEOUT_MS = 30_000;
/** Post-copy recovery retries: the first after this long, doubling up to RECOVER_MAX_MS. */
const RECOVER_FIRST_MS = 100;
const RECOVER_MAX_MS = 5_000;
/** Auto-converge as QEMU: trigger when dirtying outpaces 50 % of sending twice, 20 % then +10 %, cap 99 %. */
const THROTTLE_TRIGGER = 0.5;
const THROTTLE_INITIAL = 20;
const THROTTLE_STEP = 10;
const THROTTLE_MAX = 99;

/** The post-copy push, kept across link losses. */
interface PostcopyPush {
  /** The pages the destination lacked at the switch-over, in push order. */
  order: Uint32Array;
  /** Position of each page in `order`, -1 for the others (steers the push to a fault). */
  indexOf: Int32Array;
  /** Pages handed to a socket (reset from the destination's bitmap after a recovery). */
  sent: Uint8Array;
  cursor: number;
  left: number;
  chunkPages: number;
  lastFault: number;
  /** The background push waits until then (pushDelayMs). */
  notBefore: number;
  /** Bytes of pushed frames sent on this link, and written at the destination (its acknowledgement). */
  pushedBytes: number;
  ackedBytes: number;
}

/**
 * Errors after which a post-copy link is recovered rather than the migration failed. A peer
 * that broke the protocol (EPROTO) is one of them: as QEMU does on a bad stream in post-copy,
 * the link is dropped and rebuilt from the destination's received-page bitmap, since failing
 * would lose a guest whose memory is split across both hosts.
 */
function isLinkLoss(e: unknown): boolean {
  return e instanceof FerryError && (e.code === 'ELINK' || e.code === 'ETIMEDOUT' || e.code === 'EPAUSED' || e.code === 'EPROTO');
}

export interface OutgoingHooks {
  /** This host's control URL, for the destination to check on it (undefined: not known). */
  selfUrl(): string | undefined;
  /** The VM now lives on the destination: drop it here. */
  release(): Promise<void>;
  /** Live statistics changed (a round ended, the status moved). */
  update(stats: MigrationStats): void;
  /** Console output so far, carried to the destination. */
  consoleHistory(): Uint8Array;
}

/**
 * The source side of one migration. Until the destination acknowledges the switch-over the
 * source owns the VM: on any failure or a cancel it keeps it running (or resumes it if it had
 * paused it for stop-and-copy).
 */
export class OutgoingMigration {
  readonly stats: MigrationStats;
  readonly id = randomUUID();
  private bulk: WebSocket | undefined;
  private prio: WebSocket | undefined;
  private inbox: Inbox | undefined;
  private cancelled: string | undefined;
  private pausedByUs = false;
  /** The state section has been sent: from here a failure leaves the outcome to be checked. */
  private stateSent = false;
  /** The post-copy state section has gone out: the destination may run the guest from here on. */
  private postcopySent = false;
  /** Post-copy has resumed the guest on the destination: this side must never run it again. */
  private postcopyActive = false;
  /** Post-copy ended without the destination: the guest is lost, this copy must not run. */
  private vmLost = false;
  private pc: PostcopyPush | undefined;
  /** Bumped whenever a link is dropped: callbacks of an older link are ignored. */
  private linkGen = 0;
  /** `migrate pause` holds a paused post-copy until `migrate recover`. */
  private holdRecovery = false;
  private recoverRequested = false;
  private abandoned: { code: string; reason: string } | undefined;
  private recoverWake: (() => void) | undefined;
  /** Switch-over milestones for the debug log. */
  private timing: Record<string, number> | undefined;
  /** `migrate start-postcopy`: switch at the end of the current round (hybrid). */
  private postcopyRequested = false;
  private inflight = 0;
  /** Frame buffers whose send has completed, for reuse. */
  private readonly spareFrames: Buffer[] = [];
  private drained: (() => void) | undefined;
  private bucket = { t: performance.now(), bytes: 0 };

  constructor(
    private readonly vm: Vm,
    private readonly name: string,
    private readonly program: string,
    private readonly p: MigrateParams,
    private readonly token: string | undefined,
    private readonly log: Logger,
    private readonly hooks: OutgoingHooks,
  ) {
    this.stats = new MigrationStats(name, 'outgoing', p.mode, p.to, vm.memory.size);
  }

  /** Switches a hybrid migration to post-copy at the end of its current round. */
  startPostcopy(): boolean {
    if (this.p.mode !== 'hybrid' || this.stats.final || this.stateSent) return false;
    this.postcopyRequested = true;
    return true;
  }

  /** Post-copy failed after the switch-over: the guest can run on neither host. */
  get lost(): boolean {
    return this.vmLost;
  }

  /** `migrate pause` (QEMU's migrate-pause): drops a post-copy link on purpose; it stays paused until `recover`. */
  pauseLink(): boolean {
    if (!this.postcopySent || this.stats.final || this.stats.info.status === 'postcopy-paused') return false;
    this.holdRecovery = true;
    this.inbox?.interrupt(new FerryError('EPAUSED', 'post-copy paused by command'));
    this.wake();
    return true;
  }

  /**
   * This host is shutting down. Before the switch-over that is a cancel; in post-copy the
   * guest's newest state is on the destination and its missing pages leave with this process:
   * the VM is lost, and the migration says so instead of retrying.
   */
  abandon(reason: string, code = 'ESHUTDOWN'): void {
    if (this.stats.final) return;
    if (!this.postcopySent) {
      this.cancel(reason);
      return;
    }
    this.abandoned = { code, reason };
    this.inbox?.interrupt(new FerryError(code, reason));
    this.recoverWake?.();
    this.wake();
  }

  /** `migrate recover`: a paused post-copy reconnects now. */
  recover(): boolean {
    if (this.stats.final || this.stats.info.status !== 'postcopy-paused') return false;
    this.holdRecovery = false;
    this.recoverRequested = true;
    this.recoverWake?.();
    return true;
  }

  cancel(reason = 'cancelled by user'): boolean {
    if (this.stats.final || this.stateSent) return false;
    this.cancelled = reason;
    this.inbox?.interrupt(new FerryError('ECANCELED', reason));
    this.wake();
    return true;
  }

  /** Runs the migration to a final status; never throws. */
  async run(): Promise<void> {
    const t = this.log;
    try {
      await this.connect();
      this.stats.setStatus('active');
      this.hooks.update(this.stats);
      if (this.p.mode === 'cold') await this.cold();
      else if (this.p.mode === 'postcopy') await this.postcopy();
      else await this.precopy(); // precopy, or hybrid (pre-copy that may switch to post-copy)
      this.stats.setStatus('completed');
      t.info({ ...this.summary() }, 'migration completed');
      await this.hooks.release();
    } catch (e) {
      await this.fail(e as Error);
    } finally {
      this.close();
      this.hooks.update(this.stats);
    }
  }

  private summary(): Record<string, unknown> {
    const i = this.stats.info;
    return {
      to: this.p.to, totalMs: i['total-time-ms'], downtimeMs: i['downtime-ms'], rounds: i['dirty-sync-count'],
      bytes: i['transferred-bytes'], pages: i['pages-sent'],
    };
  }

  private linkOptions() {
    const base = new URL(this.p.to);
    base.pathname = '/migrate';
    return { url: base.href, version: MIGRATION_PROTOCOL_VERSION, maxPayload: MIGRATION_MAX_PAYLOAD, ...(this.token ? { token: this.token } : {}) };
  }

  private async connect(): Promise<void> {
    const common = this.linkOptions();
    const bulk = await openLink({ ...common, zeroMask: true, hello: { role: 'bulk', id: this.id } });
    this.bulk = bulk.ws;
    this.inbox = new Inbox(bulk.ws, this.p.to, { pages: this.vm.memory.pages });
    bulk.ws.on('close', () => this.wake());
    this.keepAlive(bulk.ws);
    this.checkCancelled();
    this.send({
      t: 'setup', vm: this.name, program: this.program, mode: this.p.mode, config: this.vm.config, insnLimit: this.vm.insnLimit,
      pageSize: PAGE_SIZE, isa: ISA, devices: DEVICES, ...(this.hooks.selfUrl() ? { source: this.hooks.selfUrl()! } : {}),
    });
    // The priority channel joins while the destination checks the setup.
    const prio = openLink({ ...common, hello: { role: 'prio', id: this.id } });
    prio.catch(() => undefined);
    const reply = await this.inbox.next(['setup-ok', 'refused'], ACK_TIMEOUT_MS);
    if (reply.t === 'refused') {
      void prio.then((l) => l.ws.close(), () => undefined);
      throw new FerryError(reply.code, `destination refused: ${reply.message}`);
    }
    this.prio = (await prio).ws;
    this.prio.on('error', () => {});
    this.checkCancelled();
  }

  private checkCancelled(): void {
    if (this.cancelled !== undefined) throw new FerryError('ECANCELED', this.cancelled);
  }

  private send(m: MigrationMsg): void {
    this.bulk!.send(encodeMsg(m));
  }

  /** Pages that were ever written: the rest are known zero and cost nothing. */
  private everWrittenPages(): Uint32Array {
    // Plain reads are enough: EVER_WRITTEN only ever goes from 0 to 1, and a page written after
    // this scan is in the dirty log (or, with the VM paused, nothing changes).
    const ps = this.vm.memory.pageState;
    const out = new Uint32Array(ps.length);
    let n = 0;
    for (let p = 0; p < ps.length; p++) if (ps[p]! & PAGE_EVER_WRITTEN) out[n++] = p;
    return out.slice(0, n);
  }

  private async cold(): Promise<void> {
    if (this.vm.state === 'running') throw new FerryError('ESTATE', 'cold migration needs a stopped VM: pause it first, or use --mode precopy');
    this.stats.setStatus('device');
    const t0 = performance.now();
    const pages = this.everWrittenPages();
    this.stats.info['touched-pages'] = pages.length;
    await this.sendPages(pages, 'downtime');
    await this.sendState();
    this.stats.info['downtime-ms'] = round2(performance.now() - t0);
  }

  private async precopy(): Promise<void> {
    const vm = this.vm;
    const limitBytesPerMs = (bwBytesPerMs: number) => bwBytesPerMs * this.p.downtimeLimitMs;
    await vm.syncDirty(); // a fresh dirty epoch: every write from here on is logged
    let pages = this.everWrittenPages();
    this.stats.info['touched-pages'] = pages.length;
    let round = 0;
    let hot = 0;
    let throttle = 0;
    let notConverging = 0;
    for (;;) {
      const r0 = performance.now();
      const { bytes } = await this.sendPages(pages, 'precopy');
      this.send({ t: 'round-end', round });
      await this.inbox!.next(['round-ack'], ACK_TIMEOUT_MS);
      const ms = Math.max(performance.now() - r0, 0.001);
      const dirty = await vm.syncDirty();
      const bw = bytes / ms; // bytes per ms, measured on this round
      const dirtyBytes = dirty.length * PAGE_SIZE;
      const expected = bw > 0 ? dirtyBytes / bw : Infinity;
      this.stats.round({
        round, pages: pages.length, bytes, ms: round2(ms), mbps: round2((bw * 1000 * 8) / 1e6),
        'dirty-pages': dirty.length, 'expected-downtime-ms': round2(expected),
      }, dirty.length);
      this.log.info({ round, pages: pages.length, ms: round2(ms), mbps: round2((bw * 8) / 1000), dirty: dirty.length, expectedDowntimeMs: round2(expected) }, 'pre-copy round');
      this.hooks.update(this.stats);
      pages = dirty;
      round++;
      this.checkCancelled();
      if (dirtyBytes <= limitBytesPerMs(bw) || vm.state !== 'running') break;
      if (this.p.mode === 'hybrid') {
        // A round leaves more than half of what it sent dirty again (QEMU's convergence trigger),
        // twice in a row: dirtying keeps up with the link, so pre-copy will not converge.
        notConverging = dirtyBytes > THROTTLE_TRIGGER * bytes ? notConverging + 1 : 0;
        const why = this.postcopyRequested ? 'requested'
          : round >= this.p.postcopyAfterRounds ? `after ${round} rounds`
            : notConverging >= 2 ? 'pre-copy is not converging'
              : round >= this.p.maxRounds ? `max rounds (${round})` : undefined;
        if (why !== undefined) {
          this.log.info({ round, why }, 'switching to post-copy');
          this.stats.info['postcopy-switch'] = why;
          // The pages dirtied in the last round are stale over there: they are the missing set.
          await this.postcopy(pages, throttle > 0);
          return;
        }
      }
      if (round >= this.p.maxRounds) break;
      if (this.p.autoConverge && bytes > 0 && dirtyBytes > THROTTLE_TRIGGER * bytes) {
        if (++hot >= 2) {
          throttle = throttle === 0 ? THROTTLE_INITIAL : Math.min(THROTTLE_MAX, throttle + THROTTLE_STEP);
          vm.setThrottle(throttle);
          this.stats.info['throttle-percent'] = throttle;
          this.log.info({ throttle }, 'auto-converge: throttling the vCPU');
        }
      }
    }
    // Stop-and-copy: from here the guest is paused until the destination resumes it.
    const tPause = await this.stopGuest();
    const tPaused = performance.now();
    if (throttle) vm.setThrottle(0);
    // Paused (or halted): no handshake needed to take what was dirtied since the last round.
    const last = vm.state === 'created' ? await vm.syncDirty() : vm.dirtyWhileStopped();
    const tSynced = performance.now();
    await this.sendPages(union(pages, last), 'downtime');
    const tSent = performance.now();
    await this.sendState();
    const tDone = performance.now();
    this.stats.info['downtime-ms'] = round2(tDone - tPause);
    this.log.debug({
      pauseMs: round2(tPaused - tPause), syncMs: round2(tSynced - tPaused), lastPagesMs: round2(tSent - tSynced),
      stateAckMs: round2(tDone - tSent), lastPages: last.length,
    }, 'stop-and-copy timing');
  }

  /**
   * Post-copy: pause, send only the CPU and device state plus the list of pages still to come,
   * and let the destination resume at once. Then push every page exactly once, pages the
   * destination faults on first (priority channel) and the background scan restarted at each
   * faulted page, so the neighbourhood of a fault follows it.
   */
  private async postcopy(hybridDirty?: Uint32Array, throttled = false): Promise<void> {
    // Advise (as QEMU's postcopy ADVISE) while the guest still runs: scanning and marking a
    // whole RAM's page states costs milliseconds that must not count as downtime. Post-copy
    // advises every page ever written; hybrid the pages its last round left dirty.
    const vm = this.vm;
    const firstWrites0 = vm.memory.firstWriteCount();
    const touched = hybridDirty ?? this.everWrittenPages();
    const missing = pageBitmap(vm.memory.pages, touched);
    const indexOf = pageIndex(vm.memory.pages, touched);
    this.send({ t: 'postcopy-advise', advice: { missing, missingCount: touched.length } });
    await this.inbox!.next(['advise-ok'], ACK_TIMEOUT_MS);
    // Pages that join the advised missing set (late pages). Post-copy: pages first written since
    // the advice, from the first-write ring, so the cost follows what the guest wrote meanwhile,
    // not the RAM size (pages written again are in the advice and go out from RAM as it is now;
    // should the ring have wrapped, every page state is scanned). Hybrid: every page dirtied
    // since its last round, most of them taken before the pause while the guest still runs, so
    // the dirty log left for the downtime covers only the last millisecond or so.
    let late: number[] = [];
    const addLate = (list: ArrayLike<number>) => {
      for (let i = 0; i < list.length; i++) {
        const p = list[i]!;
        if ((missing[p >>> 3]! & (1 << (p & 7))) !== 0) continue;
        missing[p >>> 3]! |= 1 << (p & 7);
        indexOf[p] = touched.length + late.length;
        late.push(p);
      }
    };
    if (hybridDirty && vm.state === 'running') addLate(await vm.syncDirty());
    const tPause = await this.stopGuest();
    if (throttled) vm.setThrottle(0);
    this.timing = { paused: performance.now() - tPause };
    const lastPages = hybridDirty ? vm.dirtyWhileStoppedExcept(missing) : vm.memory.firstWritesSince(firstWrites0) ?? this.everWrittenPages();
    this.timing.harvested = performance.now() - tPause;
    this.timing.lastPages = lastPages.length;
    addLate(lastPages);
    const nLate = late.length;
    let order = touched;
    if (nLate > 0) {
      order = new Uint32Array(touched.length + nLate);
      order.set(touched);
      order.set(late, touched.length);
    }
    const lateList = Uint32Array.from(late);
    late = [];
    if (!hybridDirty) this.stats.info['touched-pages'] = order.length;
    this.timing.late = performance.now() - tPause;
    await this.postcopySwitch(order, tPause, indexOf, lateList);
  }

  /**
   * The post-copy switch-over and what follows it, with the VM already stopped: `order` lists
   * the pages the destination does not have (or has stale), in push order.
   */
  private async postcopySwitch(order: Uint32Array, tPause: number, indexOf: Int32Array, late: Uint32Array): Promise<void> {
    const vm = this.vm;
    const pages = vm.memory.pages;
    const pc: PostcopyPush = {
      order, indexOf, sent: new Uint8Array(pages), cursor: 0, left: order.length,
      chunkPages: MIN_PUSH_CHUNK, lastFault: -Infinity, notBefore: 0, pushedBytes: 0, ackedBytes: 0,
    };
    this.pc = pc;
    this.serveFaults(this.prio!); // listen before the guest can resume over there
    const run: RunState = this.pausedByUs ? 'running' : (vm.state as RunState);
    this.stateSent = true;
    this.postcopySent = true;
    const tState = performance.now();
    const state = vm.exportState();
    const history = this.hooks.consoleHistory();
    const tExported = performance.now();
    // The destination has the advised missing set: only the pages written since join it.
    const msg = encodeMsg({ t: 'state', state, run, console: history, postcopy: { late, missingCount: order.length } });
    const tEncoded = performance.now();
    this.bulk!.send(msg);
    const timing = (this.timing ??= {});
    timing.stateSent = performance.now() - tPause;
    timing.exportMs = tExported - tState;
    timing.encodeMs = tEncoded - tExported;
    timing.sendMs = performance.now() - tEncoded;
    timing.stateBytes = msg.length;
    let outcome: 'resumed' | 'recovered' | 'completed' = 'resumed';
    try {
      await this.inbox!.next(['resumed'], ACK_TIMEOUT_MS);
    } catch (e) {
      // Whether the destination resumed before the link went, only it knows: a recovery asks.
      if (!isLinkLoss(e)) throw e;
      outcome = await this.recoverLink(e as FerryError);
    }
    this.stats.info['downtime-ms'] = round2(performance.now() - tPause);
    this.log.debug({ ...Object.fromEntries(Object.entries(this.timing ?? {}).map(([k, v]) => [k, round2(v)])), resumed: this.stats.info['downtime-ms'] }, 'post-copy switch-over timing (ms since the pause began)');
    // From here the guest runs on the destination; this side only serves its memory.
    this.postcopyActive = true;
    if (outcome === 'completed') return;
    this.stats.setStatus('postcopy-active');
    this.hooks.update(this.stats);
    pc.notBefore = performance.now() + this.p.pushDelayMs;
    for (;;) {
      try {
        await this.pushRest(pc);
        return;
      } catch (e) {
        if (!isLinkLoss(e)) throw e;
        if ((await this.recoverLink(e as FerryError)) === 'completed') return;
      }
    }
  }

  /**
   * Serves post-copy faults arriving on a priority channel: the page goes out at once (unless it
   * already has), and the background scan restarts at it, so the neighbourhood follows the fault.
   */
  private serveFaults(prio: WebSocket): void {
    const gen = this.linkGen;
    const pages = this.vm.memory.pages;
    const ram = this.vm.memory.ram;
    prio.on('message', (data: Buffer) => {
      const pc = this.pc;
      if (gen !== this.linkGen || !pc) return;
      let m: MigrationMsg;
      try {
        m = decodeMsg(data, { pages });
        if (m.t !== 'pushed' && m.t !== 'page-req') throw new FerryError('EPROTO', `unexpected "${m.t}" on the priority channel`);
      } catch (e) {
        // A destination that breaks the protocol: this link is given up (and recovered).
        this.inbox?.interrupt(e as FerryError);
        this.wake();
        return;
      }
      if (m.t === 'pushed') {
        pc.ackedBytes = m.bytes;
        this.wake();
        return;
      }
      this.stats.info['postcopy-requests']++;
      const p = m.page;
      // Already on its way on the bulk stream: the push is heading there, nothing to steer.
      if (pc.sent[p]) return;
      // A page the push has not covered: the scan moves there, in small chunks until faults stop.
      if (pc.indexOf[p]! >= 0) pc.cursor = pc.indexOf[p]!;
      pc.chunkPages = MIN_PUSH_CHUNK;
      pc.lastFault = performance.now();
      pc.sent[p] = 1;
      pc.left--;
      const { frame, zero } = encodePages(ram, [p], 0, 1);
      prio.send(frame);
      this.stats.sent(frame.length, 1, zero, 'postcopy');
    });
    prio.on('close', () => {
      if (gen === this.linkGen) this.inbox?.interrupt(new FerryError('ELINK', `priority channel to ${this.p.to} closed`));
      this.wake();
    });
    // A link that goes silent (a partition sends no FIN) is lost too.
    let heard = performance.now();
    const alive = () => { heard = performance.now(); };
    prio.on('pong', alive);
    prio.on('message', alive);
    const beat = setInterval(() => {
      if (gen !== this.linkGen || this.stats.final) {
        clearInterval(beat);
        return;
      }
      if (performance.now() - heard > LINK_SILENT_MS) {
        clearInterval(beat);
        this.inbox?.interrupt(new FerryError('ELINK', `no word from ${this.p.to} for ${LINK_SILENT_MS} ms`));
        this.wake();
        return;
      }
      if (prio.readyState === prio.OPEN) prio.ping();
    }, LINK_PING_MS);
    beat.unref();
  }

  /** The background push: every page of the list not yet sent, once, then `postcopy-done`. */
  private async pushRest(pc: PostcopyPush): Promise<void> {
    while (pc.left > 0 && performance.now() < pc.notBefore) {
      this.inbox!.check(); // demand paging only, for now
      await new Promise((r) => setTimeout(r, 5));
    }
    const chunk: number[] = [];
    const { order, indexOf, sent } = pc;
    const t0 = performance.now();
    let ackWaitMs = 0;
    while (pc.left > 0) {
      this.inbox!.check();
      chunk.length = 0;
      // The next unsent pages from the cursor on, wrapping around.
      for (let k = 0; k < order.length && chunk.length < pc.chunkPages; k++) {
        const i = (pc.cursor + k) % order.length;
        const p = order[i]!;
        if (sent[p]) continue;
        sent[p] = 1;
        chunk.push(p);
      }
      if (chunk.length === 0) break;
      pc.cursor = (indexOf[chunk[chunk.length - 1]!]! + 1) % order.length;
      pc.left -= chunk.length;
      pc.pushedBytes += await this.sendFrame(chunk, 'postcopy');
      // The chunk grows while no fault comes and shrinks back on a fault (CRIU's lazy-pages policy).
      pc.chunkPages = Math.min(MAX_PUSH_CHUNK, pc.chunkPages * 2);
      const ta = performance.now();
      await this.pushWindow(pc);
      ackWaitMs += performance.now() - ta;
    }
    this.log.debug({ pushMs: round2(performance.now() - t0), ackWaitMs: round2(ackWaitMs) }, 'post-copy push');
    await this.window(0);
    this.send({ t: 'postcopy-done', pages: order.length });
    await this.inbox!.next(['completed'], ACK_TIMEOUT_MS);
    this.stats.info['remaining-bytes'] = 0;
  }

  /**
   * Waits until at most POSTCOPY_WINDOW_BYTES of the push are beyond what the destination has
   * written (its `pushed` acknowledgements): a fault's page, on the priority channel, never
   * waits behind a bulk backlog in socket buffers. No acknowledgement for ACK_TIMEOUT_MS is a
   * lost link.
   */
  private async pushWindow(pc: PostcopyPush): Promise<void> {
    let acked = pc.ackedBytes;
    let deadline = performance.now() + ACK_TIMEOUT_MS;
    while (pc.pushedBytes - pc.ackedBytes > POSTCOPY_WINDOW_BYTES) {
      this.inbox!.check();
      if (pc.ackedBytes !== acked) {
        acked = pc.ackedBytes;
        deadline = performance.now() + ACK_TIMEOUT_MS;
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new FerryError('ETIMEDOUT', `${this.p.to} acknowledged no pushed page within ${ACK_TIMEOUT_MS} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /**
   * Post-copy lost its link: both sides keep their state (postcopy-paused) and this side
   * reconnects, with backoff or at once on `migrate recover`, until the destination answers.
   * Throws only when the destination says it no longer has the migration (ENOMIGRATION) or its
   * host refuses connections (its process is gone, and the guest's newer pages with it).
   */
  private async recoverLink(cause: FerryError): Promise<'recovered' | 'completed'> {
    const tPaused = performance.now();
    this.dropLink();
    this.stats.setStatus('postcopy-paused', `link lost: ${cause.message}`);
    this.hooks.update(this.stats);
    this.log.warn({ err: cause.message, to: this.p.to }, 'post-copy paused: the link is lost; both hosts keep their state until it is recovered');
    let delayMs = RECOVER_FIRST_MS;
    for (let attempt = 1; ; attempt++) {
      if (this.abandoned === undefined) await this.recoverDelay(this.holdRecovery || !this.p.autoRecover ? Infinity : delayMs);
      this.checkAbandoned();
      delayMs = Math.min(RECOVER_MAX_MS, delayMs * 2);
      try {
        const outcome = await this.reconnect();
        this.checkAbandoned();
        const i = this.stats.info;
        i['postcopy-recoveries'] = (i['postcopy-recoveries'] ?? 0) + 1;
        i['postcopy-paused-ms'] = round2((i['postcopy-paused-ms'] ?? 0) + performance.now() - tPaused);
        delete i['error-desc'];
        this.log.info({ attempt, pausedMs: round2(performance.now() - tPaused), outcome }, 'post-copy recovered');
        return outcome;
      } catch (e) {
        const err = e instanceof FerryError ? e : new FerryError('EINTERNAL', (e as Error).message);
        if (err.code === 'ENOMIGRATION' || this.abandoned !== undefined) {
          this.dropLink();
          throw err;
        }
        if (err.errno === 'ECONNREFUSED') {
          throw new FerryError('EHOSTGONE', `destination ${this.p.to} refuses connections: its host process is gone`);
        }
        this.dropLink();
        this.stats.info['error-desc'] = `link lost; recovery attempt ${attempt} failed: ${err.message}`;
        this.hooks.update(this.stats);
        this.log.info({ attempt, err: err.message, retryInMs: this.holdRecovery || !this.p.autoRecover ? undefined : delayMs }, 'post-copy recovery attempt failed');
      }
    }
  }

  /** Throws once the migration has been abandoned (host stopping, or the user gave the VM up). */
  private checkAbandoned(): void {
    const a = this.abandoned;
    if (a !== undefined) throw new FerryError(a.code, a.reason);
  }

  /** Waits `ms` (Infinity: until `migrate recover`), or less if a recover is asked for. */
  private recoverDelay(ms: number): Promise<void> {
    if (this.recoverRequested) {
      this.recoverRequested = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = Number.isFinite(ms) ? setTimeout(() => done(), ms) : undefined;
      const done = () => {
        clearTimeout(timer);
        this.recoverRequested = false;
        this.recoverWake = undefined;
        resolve();
      };
      this.recoverWake = done;
    });
  }

  /** A new link to the destination for a paused post-copy: its received-page bitmap says what to send again. */
  private async reconnect(): Promise<'recovered' | 'completed'> {
    const bulk = await openLink({ ...this.linkOptions(), zeroMask: true, hello: { role: 'bulk', id: this.id, recover: true } });
    this.bulk = bulk.ws;
    this.inbox = new Inbox(bulk.ws, this.p.to, { pages: this.vm.memory.pages });
    bulk.ws.on('close', () => this.wake());
    this.keepAlive(bulk.ws);
    this.send({ t: 'recover' });
    const reply = await this.inbox.next(['recv-bitmap', 'completed'], ACK_TIMEOUT_MS);
    if (reply.t === 'completed') return 'completed';
    const pc = this.pc!; // the bitmap's size and count were checked at decode
    let left = 0;
    let resent = 0;
    for (let i = 0; i < pc.order.length; i++) {
      const p = pc.order[i]!;
      if (reply.received[p >>> 3]! & (1 << (p & 7))) {
        pc.sent[p] = 1;
        continue;
      }
      if (pc.sent[p]) resent++; // sent before the link went, never arrived
      pc.sent[p] = 0;
      left++;
    }
    pc.left = left;
    pc.pushedBytes = 0; // the destination counts per link
    pc.ackedBytes = 0;
    const info = this.stats.info;
    info['postcopy-resent-pages'] = (info['postcopy-resent-pages'] ?? 0) + resent;
    const prio = await openLink({ ...this.linkOptions(), hello: { role: 'prio', id: this.id } });
    this.prio = prio.ws;
    this.prio.on('error', () => {});
    this.serveFaults(prio.ws);
    this.stats.setStatus('postcopy-active');
    this.hooks.update(this.stats);
    return 'recovered';
  }

  /**
   * Pings the bulk stream every LINK_PING_MS while it is open, so a destination knows this source
   * lives even while nothing else flows (a slow --max-bandwidth, a long dirty sync).
   */
  private keepAlive(ws: WebSocket): void {
    const timer = setInterval(() => {
      if (ws.readyState !== ws.OPEN) {
        clearInterval(timer);
        return;
      }
      ws.ping();
    }, LINK_PING_MS);
    timer.unref();
    ws.once('close', () => clearInterval(timer));
  }

  /** Forgets the current link: its sockets are closed and nothing that still comes from them counts. */
  private dropLink(): void {
    this.linkGen++;
    dropSockets([this.bulk, this.prio]);
    this.inflight = 0;
    this.wake();
  }

  /** Enters the device phase and stops the guest at a slice boundary; returns when the downtime clock started. */
  private async stopGuest(): Promise<number> {
    this.stats.setStatus('device');
    this.hooks.update(this.stats);
    const tPause = performance.now();
    if (this.vm.state === 'running') {
      this.pausedByUs = true;
      await this.vm.pause();
    }
    return tPause;
  }

  /** The device + CPU section, then the destination's acknowledgement that the VM runs there. */
  private async sendState(): Promise<void> {
    this.checkCancelled();
    const run: RunState = this.pausedByUs ? 'running' : (this.vm.state as RunState);
    const state = this.vm.exportState();
    this.stateSent = true;
    this.send({ t: 'state', state, run, console: this.hooks.consoleHistory() });
    await this.inbox!.next(['completed'], ACK_TIMEOUT_MS);
    this.stats.info['remaining-bytes'] = 0;
  }

  /** Streams pages in frames, keeping at most WINDOW_BYTES unsent and honouring max-bandwidth. */
  private async sendPages(pages: ArrayLike<number>, phase: 'precopy' | 'downtime'): Promise<{ bytes: number }> {
    let bytes = 0;
    for (let i = 0; i < pages.length; i += PAGES_PER_FRAME) {
      this.checkCancelled();
      this.inbox!.check(); // a dead link stops the round now, not at its end
      const j = Math.min(pages.length, i + PAGES_PER_FRAME);
      bytes += await this.sendFrame(pages, phase, i, j);
    }
    await this.window(0);
    return { bytes };
  }

  /** Encodes pages[from, to) into a reused frame buffer and sends it on the bulk stream within the window. */
  private async sendFrame(pages: ArrayLike<number>, phase: 'precopy' | 'downtime' | 'postcopy', from = 0, to = pages.length): Promise<number> {
    await this.window(MAX_FRAME_BYTES);
    const buf = this.spareFrames.pop() ?? Buffer.allocUnsafe(MAX_FRAME_BYTES);
    const { frame, zero } = encodePages(this.vm.memory.ram, pages, from, to, buf);
    this.inflight += frame.length;
    const gen = this.linkGen;
    this.bulk!.send(frame, (err) => {
      if (gen !== this.linkGen) return; // a dropped link: its frames are resent from the bitmap
      this.inflight -= frame.length;
      this.spareFrames.push(buf);
      if (err) this.inbox?.interrupt(new FerryError('ELINK', `link to ${this.p.to} failed: ${err.message}`));
      else this.stats.sent(frame.length, to - from, zero, phase); // counted once it has left
      this.wake();
    });
    return frame.length;
  }

  private wake(): void {
    const d = this.drained;
    this.drained = undefined;
    d?.();
  }

  private async window(next: number): Promise<void> {
    while (this.inflight > 0 && this.inflight + next > WINDOW_BYTES) {
      this.checkCancelled();
      this.inbox!.check();
      await new Promise<void>((resolve) => { this.drained = resolve; });
    }
    if (this.p.maxBandwidth > 0 && next > 0) {
      // A token bucket refilled at max-bandwidth bytes per second.
      const now = performance.now();
      this.bucket.bytes = Math.max(0, this.bucket.bytes - ((now - this.bucket.t) * this.p.maxBandwidth) / 1000) + next;
      this.bucket.t = now;
      const waitMs = (this.bucket.bytes / this.p.maxBandwidth) * 1000 - 1;
      if (waitMs > 1) await new Promise((r) => setTimeout(r, waitMs));
    }
  }

  private async fail(e: Error): Promise<void> {
    // The destination says it has no such migration although it never resumed the guest: the
    // copy here is the only one, and current.
    const neverRan = this.postcopySent && !this.postcopyActive && e instanceof FerryError && e.code === 'ENOMIGRATION';
    if (this.postcopySent && !neverRan) {
      // The guest's memory is split between the hosts: neither side can run it alone.
      this.vmLost = true;
      this.stats.info['error-code'] = e instanceof FerryError ? e.code : 'EINTERNAL';
      this.stats.setStatus('failed', `post-copy failed after the switch-over; the VM is lost: ${e.message}`);
      this.log.error({ err: e.message, to: this.p.to }, 'post-copy failed after the switch-over: the VM is lost');
      return;
    }
    const cancelled = this.cancelled !== undefined || (e instanceof FerryError && e.code === 'ECANCELED');
    const reason = cancelled ? (this.cancelled ?? e.message) : e.message;
    if (this.stateSent && !cancelled && !neverRan) {
      // The destination may already run the VM: ask it before resuming here (never two copies).
      if (await this.destinationHasVm()) {
        this.stats.setStatus('completed');
        this.log.warn({ err: reason }, 'link failed after switch-over, but the destination runs the VM: migration completed');
        await this.hooks.release();
        return;
      }
    }
    if (cancelled) {
      try {
        this.prio?.send(encodeMsg({ t: 'cancel', reason }));
      } catch { /* the link may be gone already */ }
    }
    if (this.pausedByUs && this.vm.state === 'paused') this.vm.resume();
    this.vm.setThrottle(0);
    if (e instanceof FerryError) this.stats.info['error-code'] = e.code;
    this.stats.setStatus(cancelled ? 'cancelled' : 'failed', reason);
    this.log[cancelled ? 'info' : 'warn']({ err: reason, to: this.p.to }, cancelled ? 'migration cancelled; the VM runs on here' : 'migration failed; the VM runs on here');
  }

  /**
   * After the state section went out, only the destination knows whether it resumed the VM.
   * It resumes only while the link is up and drops the VM otherwise, so: present and running
   * there means done; absent, or the host unreachable (dead), means ours to resume.
   */
  private async destinationHasVm(): Promise<boolean> {
    let c: ControlClient | undefined;
    try {
      c = await ControlClient.connect(this.p.to, { client: 'ferry-migration-check', timeoutMs: 3000, ...(this.token ? { token: this.token } : {}) });
      for (let i = 0; i < 20; i++) {
        const info = await c.request<{ state: string }>('vm.info', { name: this.name });
        if (info.state !== 'incoming') return true;
        await new Promise((r) => setTimeout(r, 150));
      }
      return false;
    } catch {
      return false;
    } finally {
      await c?.close().catch(() => undefined);
    }
  }

  private close(): void {
    for (const ws of [this.bulk, this.prio]) {
      if (ws && ws.readyState <= 1) ws.close(1000, 'migration over');
    }
  }
}

/** One bit per page, set for the pages listed. */
function pageBitmap(pages: number, list: ArrayLike<number>): Uint8Array {
  const bits = new Uint8Array(Math.ceil(pages / 8));
  for (let i = 0; i < list.length; i++) {
    const p = list[i]!;
    bits[p >>> 3]! |= 1 << (p & 7);
  }
  return bits;
}

/** Position of each listed page in the list, -1 for the others (steers the push to a fault). */
function pageIndex(pages: number, list: ArrayLike<number>): Int32Array {
  const index = new Int32Array(pages).fill(-1);
  for (let i = 0; i < list.length; i++) index[list[i]!] = i;
  return index;
}

function union(a: ArrayLike<number>, b: ArrayLike<number>): Uint32Array {
  const s = new Set<number>();
  for (let i = 0; i < a.length; i++) s.add(a[i]!);
  for (let i = 0; i < b.length; i++) s.add(b[i]!);
  return Uint32Array.from([...s].sort((x, y) => x - y));
}

