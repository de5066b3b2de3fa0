import { randomUUID } from 'node:crypto';
import { FerryError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { PAGE_EVER_WRITTEN, PAGE_SIZE } from '../memory/layout.ts';
import { encodePages, PAGES_PER_FRAME } from '../memory/page-frame.ts';
import { holdReclaim } from '../memory/reclaim.ts';
import { XbzrleCache } from '../memory/xbzrle-cache.ts';
import { dropSockets, openLink, type Dial } from '../wire/link.ts';
import { closeWith, peerText } from '../wire/peer-text.ts';
import type { PeerCredentials } from '../wire/tls.ts';
import type { LinkSocket } from '../wire/socket.ts';
import { expectedDowntimeMs } from './convergence.ts';
import { ASCENDING_PUSH, DEFAULT_CONVERGENCE, type ConvergencePolicyFactory, type PushOrderContext, type PushOrderPolicy } from './policies.ts';
import { Inbox } from './inbox.ts';
import { LinkLiveness } from './liveness.ts';
import { queryOutcome } from './outcome.ts';
import { Backoff, giveUpLeftMs, recoveryAttemptIsFinal } from './recovery.ts';
import { SOURCE_OWNER, SOURCE_TRANSITIONS, type SourcePhase } from './ownership.ts';
import { encodeOnPool, ENCODE_THREADS } from './encode-pool.ts';
import { chooseEncoding, encodingName, encodingNotWorthIt, type EncodingMode, type EncodingRates } from './encoding-policy.ts';
import { PageSender, type PageEncoding } from './page-sender.ts';
import type { PageMapMarks } from '../vm/page-map.ts';
import type { SourceVm } from './ports.ts';
import { PushQueue } from './postcopy-push.ts';
import type { SwitchoverHistory } from './switchover-history.ts';
import {
  decodeMsg, DEVICES, encodeMsg, ISA, LINK_PING_MS, LINK_SILENT_MS, MIGRATION_MAX_PAYLOAD, MIGRATION_PROTOCOL_VERSION, type MigrationMsg, type RunState,
} from './protocol.ts';
import { mib, MigrationStats, round2, type MigrationStatus } from './stats.ts';

export type MigrationMode = 'precopy' | 'cold' | 'postcopy' | 'hybrid';

export interface MigrateParams {
  to: string;
  mode: MigrationMode;
  /** Switch over once the remaining dirty pages would take at most this long to send. */
  downtimeLimitMs: number;
  /** Bytes per second on the wire; 0 = unlimited. */
  maxBandwidth: number;
  /** After this many rounds without converging: throttle the vCPU until it converges (hybrid: switch to post-copy). */
  maxRounds: number;
  /** Switch over at max rounds even above the downtime limit. */
  switchoverAtMaxRounds: boolean;
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
  /** Post-copy: give the VM up (lost, on both sides) after this long without a link; 0 = never. */
  giveUpAfterMs: number;
  /**
   * Pre-copy: re-sent pages as XBZRLE deltas, and frames compressed with LZ4, encoded on the
   * page pool. 'auto': both when the link is the bottleneck (encoding-policy.ts).
   */
  xbzrle: EncodingMode;
  compress: EncodingMode;
  /**
   * The XBZRLE cache: the versions last sent of this many bytes of pages. 0 (the default): the
   * set about to be sent when deltas start, and a quarter more (bounded by XBZRLE_CACHE_MIN,
   * XBZRLE_CACHE_AUTO_MAX and the RAM): QEMU's fixed 64 MiB default misses every page of a larger
   * working set.
   */
  xbzrleCacheBytes: number;
  /** The VM's name on the destination, when it is not its name here. */
  as?: string;
}

/** QEMU's defaults where they exist (downtime-limit 300 ms; guestperf's 30 iterations). */
export const MIGRATE_DEFAULTS: Omit<MigrateParams, 'to'> = {
  mode: 'precopy', downtimeLimitMs: 300, maxBandwidth: 0, maxRounds: 30, switchoverAtMaxRounds: false, autoConverge: false,
  postcopyAfterRounds: 30, pushDelayMs: 0, autoRecover: true, giveUpAfterMs: 0,
  xbzrle: 'auto', compress: 'auto', xbzrleCacheBytes: 0,
};

/** Trial frames the pool encodes to measure its rate (encoding-policy.ts). */
const ENCODE_TRIALS = 8;
/**
 * Rounds whose measurement 'auto' takes before it settles on plain frames: a pool measured slower
 * than the link may have met a moment the machine was busy (seen: 13 MB/s once, where it encodes
 * 2 GB/s), so it asks again a round later. Turning encoding on is decided by one measurement.
 */
const PLAIN_AFTER_MEASUREMENTS = 2;
/**
 * 'auto' takes the link's rate only from a round that carried this much: a smaller one measures
 * the round trip and the threads' wake-ups (an 819-byte round, a guest just started, read as
 * 1 Mbit/s on loopback and turned encoding on, which then took 0.3 s a round to fill its cache).
 */
const LINK_RATE_MIN_BYTES = 1024 * 1024;
/**
 * The XBZRLE cache sized by itself: at least this, and at most XBZRLE_CACHE_AUTO_MAX (memory the
 * source host takes beside the guest's, outside its --max-memory; a larger one is --xbzrle-cache's).
 */
export const XBZRLE_CACHE_MIN = 4 * 1024 * 1024;
export const XBZRLE_CACHE_AUTO_MAX = 512 * 1024 * 1024;

const ACK_TIMEOUT_MS = 30_000;
/** Switch-overs given up at the pause (too much dirty there) before pre-copy gives up altogether. */
const MAX_SWITCHOVER_DEFERRALS = 5;
/** The state section less its console output, as the downtime estimate counts it (CPU and devices: about 500 bytes). */
const STATE_SECTION_ESTIMATE = 1024;
/** Reconnecting (post-copy recovery) and asking (outcome unknown): the first after this long, doubling up to the max. */
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 5_000;

const STATUS_OF: Record<SourcePhase, MigrationStatus> = {
  setup: 'setup', precopy: 'active', advise: 'active', 'stop-and-copy': 'device', switching: 'device', 'outcome-unknown': 'outcome-unknown',
  'postcopy-active': 'postcopy-active', 'postcopy-paused': 'postcopy-paused', completed: 'completed', failed: 'failed', cancelled: 'cancelled', lost: 'failed',
};

/** Errors after which a post-copy link is recovered: a link that failed, went silent, or broke the protocol (QEMU pauses on a bad stream too). */
function isLinkLoss(e: unknown): boolean {
  return e instanceof FerryError && (e.code === 'ELINK' || e.code === 'ETIMEDOUT' || e.code === 'EPAUSED' || e.code === 'EPROTO');
}

export interface OutgoingHooks {
  /** This host's control URL and process incarnation, for the destination to check on it. */
  self(): { url: string | undefined; incarnation: string };
  /** The VM now lives on the destination: drop it here. */
  release(): Promise<void>;
  /** Live statistics changed (a round ended, the status moved). */
  update(stats: MigrationStats): void;
  /** Console history so far (carried to the destination), and the bytes of output seen in all. */
  consoleOutput(): { history: Uint8Array; total: number };
  /** This host's measured switch-overs: what the expected downtime is based on, and where this one's figures go. */
  readonly switchovers: SwitchoverHistory;
  /** The convergence decision and the post-copy push order (policies.ts; default: Ferry's own). */
  readonly policies?: { convergence?: ConvergencePolicyFactory; pushOrder?: PushOrderPolicy };
}

/** One link to the destination: the bulk stream, the priority channel, and what serves them. */
interface Link {
  gen: number;
  bulk: LinkSocket;
  prio: LinkSocket | undefined;
  inbox: Inbox;
  sender: PageSender;
  liveness: LinkLiveness;
}

/**
 * The source side of one migration: a state machine over SourcePhase (see ownership.ts for who
 * owns the VM in each phase and what a failure means there). Operator commands (cancel, pause,
 * recover, resolve, abandon) only record what was asked and wake the machine; every decision is
 * taken by `run` and `fail`, by phase.
 */
export class OutgoingMigration {
  readonly stats: MigrationStats;
  readonly id = randomUUID();
  private phaseNow: SourcePhase = 'setup';
  private link: Link | undefined;
  /** Bumped whenever a link is dropped: callbacks of an older link are ignored. */
  private linkGen = 0;
  /** The destination host process that took the migration (a restarted host has another). */
  private destIncarnation = '';
  private pausedByUs = false;
  /** Console output (bytes in all) as of the last `console` message sent ahead, if any. */
  private consoleSentAt: number | undefined;
  /** Post-copy: the destination said it resumed the guest (or a recovery found it running). */
  private resumedThere = false;
  private push: PushQueue | undefined;
  /** What the operator (or the host) asked for; acted on by the machine. */
  private readonly asked: {
    cancel?: string;
    abandon?: { code: string; reason: string };
    resolve?: 'resume' | 'release';
    /** The destination told us (over our control API) that it resumed the guest. */
    destinationSaid?: boolean;
    postcopy: boolean;
    holdRecovery: boolean;
    recoverNow: boolean;
  } = { postcopy: false, holdRecovery: false, recoverNow: false };
  private retryWake: (() => void) | undefined;
  private pushWake: (() => void) | undefined;
  /** Switch-over milestones for the debug log. */
  private timing: Record<string, number> = {};
  /** How pre-copy frames are encoded (undefined: plain), and whether 'auto' has been decided. */
  private encoding: PageEncoding | undefined;
  private encodingDecided = false;
  private encodingMeasurements = 0;
  /** Page bytes per ms of the best plain round, and rounds sent encoded since (judgeEncoding). */
  private plainPageRate = 0;
  private encodedRounds = 0;

  constructor(
    private readonly vm: SourceVm,
    private readonly name: string,
    private readonly program: string,
    private readonly p: MigrateParams,
    /** How this host proves itself to the destination (token, TLS certificate). */
    private readonly credentials: PeerCredentials | undefined,
    private readonly log: Logger,
    private readonly hooks: OutgoingHooks,
    /** Opens links to the destination (a test's in-memory network instead of WebSockets). */
    private readonly dial: Dial = openLink,
  ) {
    this.stats = new MigrationStats(name, 'outgoing', p.mode, p.to, vm.memory.size);
    if (p.mode === 'precopy' || p.mode === 'hybrid') this.stats.info['downtime-limit-ms'] = p.downtimeLimitMs;
    const { convergence, pushOrder } = hooks.policies ?? {};
    if (convergence && convergence !== DEFAULT_CONVERGENCE) this.stats.info['convergence-policy'] = convergence.name;
    if (pushOrder && pushOrder !== ASCENDING_PUSH) this.stats.info['push-order'] = pushOrder.name;
  }

  get phase(): SourcePhase {
    return this.phaseNow;
  }

  /** For the page map: pre-copy shows the dirty log; any sending phase its current pass. */
  pageMarks(): PageMapMarks {
    const sending = this.phaseNow === 'precopy' || this.phaseNow === 'stop-and-copy' || this.phaseNow === 'postcopy-active';
    const post = this.phaseNow === 'postcopy-active' || this.phaseNow === 'postcopy-paused';
    return {
      dirtyLog: this.phaseNow === 'precopy', pass: sending ? this.link?.sender.pass : undefined,
      push: post && this.push !== undefined ? { order: this.push.order, sent: this.push.sentPages } : undefined,
    };
  }

  /** Post-copy failed after the switch-over: the guest can run on neither host. */
  get lost(): boolean {
    return this.phaseNow === 'lost';
  }

  private enter(next: SourcePhase, why?: string): void {
    if (!SOURCE_TRANSITIONS[this.phaseNow].includes(next)) {
      throw new FerryError('EINTERNAL', `migration of ${this.name}: no transition from ${this.phaseNow} to ${next}`);
    }
    this.phaseNow = next;
    this.stats.setStatus(STATUS_OF[next], why);
    this.hooks.update(this.stats);
  }

  // ---- operator commands: each records what was asked and wakes the machine ----

  /** `migrate start-postcopy`: a hybrid migration switches at the end of its current round. */
  startPostcopy(): boolean {
    if (this.p.mode !== 'hybrid' || (this.phaseNow !== 'setup' && this.phaseNow !== 'precopy')) return false;
    this.asked.postcopy = true;
    return true;
  }

  cancel(reason = 'cancelled by user'): boolean {
    if (SOURCE_OWNER[this.phaseNow] !== 'source' || this.stats.final) return false;
    this.asked.cancel = reason;
    this.interrupt(new FerryError('ECANCELED', reason));
    return true;
  }

  /** `migrate pause` (QEMU's migrate-pause): drops a post-copy link on purpose; it stays paused until `recover`. */
  pauseLink(): boolean {
    if (this.phaseNow !== 'postcopy-active' && this.phaseNow !== 'switching') return false;
    if (this.phaseNow === 'switching' && this.p.mode !== 'postcopy' && this.p.mode !== 'hybrid') return false;
    this.asked.holdRecovery = true;
    this.interrupt(new FerryError('EPAUSED', 'post-copy paused by command'));
    return true;
  }

  /** `migrate recover`: a paused post-copy reconnects now. */
  recover(): boolean {
    if (this.phaseNow !== 'postcopy-paused') return false;
    this.asked.holdRecovery = false;
    this.asked.recoverNow = true;
    this.retryWake?.();
    return true;
  }

  /**
   * `migrate resolve`: the operator decides an outcome the source cannot learn (the destination
   * is unreachable): `release` (it runs the guest: drop the copy here) or `resume` (it does not:
   * run the copy here). Only in outcome-unknown.
   */
  resolve(decision: 'resume' | 'release'): boolean {
    if (this.phaseNow !== 'outcome-unknown') return false;
    this.asked.resolve = decision;
    this.retryWake?.();
    return true;
  }

  /** The destination says (on our control API) that it resumed the guest: an unknown outcome is known. */
  destinationCompleted(): boolean {
    if (this.phaseNow !== 'outcome-unknown') return false;
    this.asked.destinationSaid = true;
    this.retryWake?.();
    return true;
  }

  /**
   * Give up. Where the source owns the guest that is a cancel; where the destination may run it
   * (outcome unknown) the copy here is released; in post-copy the VM is lost (the host stops, or
   * the user destroys a paused post-copy).
   */
  abandon(reason: string, code = 'ESHUTDOWN'): void {
    if (this.stats.final) return;
    if (SOURCE_OWNER[this.phaseNow] === 'source') {
      this.cancel(reason);
      return;
    }
    if (this.phaseNow === 'outcome-unknown') {
      this.resolve('release');
      return;
    }
    this.asked.abandon = { code, reason };
    // The destination learns it now if the link is up (in post-copy a cancel means the VM is lost).
    try {
      this.link?.prio?.send(encodeMsg({ t: 'cancel', reason }));
    } catch { /* the link may be gone already */ }
    this.interrupt(new FerryError(code, reason));
    this.retryWake?.();
  }

  /** Fails the current link's waits with `e` (and wakes whatever waits on the link). */
  private interrupt(e: FerryError): void {
    this.link?.inbox.interrupt(e);
    this.link?.sender.wake();
    this.pushWake?.();
  }

  // ---- the machine ----

  /** Runs the migration to a final status; never throws. */
  async run(): Promise<void> {
    const releaseReclaim = holdReclaim(); // no full collection stalls this host mid-migration (reclaim.ts)
    try {
      await this.connect();
      if (this.p.mode === 'cold') await this.cold();
      else if (this.p.mode === 'postcopy') await this.postcopy();
      else await this.precopy(); // precopy, or hybrid (pre-copy that may switch to post-copy)
      if (this.phaseNow !== 'completed') this.enter('completed');
      this.log.info({ ...this.summary() }, 'migration completed');
      await this.hooks.release();
    } catch (e) {
      await this.fail(e instanceof FerryError ? e : new FerryError('EINTERNAL', (e as Error).message));
    } finally {
      releaseReclaim();
      this.closeLink();
      this.hooks.update(this.stats);
    }
  }

  private summary(): Record<string, unknown> {
    const i = this.stats.info;
    return {
      to: this.p.to, totalMs: i['total-time-ms'], downtimeMs: i['downtime-ms'], rounds: i['dirty-sync-count'],
      bytes: i['transferred-bytes'], pages: i['pages-sent'], switchover: i['switchover-reason'],
    };
  }

  /** What a failure means, by phase (ownership.ts). Never throws. */
  private async fail(e: FerryError): Promise<void> {
    try {
      await this.failByPhase(e);
    } catch (bug) {
      // A transition the table does not allow is a bug; the VM must not be left running twice.
      this.log.error({ err: bug, cause: e.message, phase: this.phaseNow }, 'migration failure handling failed');
      this.phaseNow = SOURCE_OWNER[this.phaseNow] === 'source' ? 'failed' : 'lost';
      this.stats.setStatus('failed', `${e.message} (and: ${(bug as Error).message})`);
    }
  }

  private async failByPhase(e: FerryError): Promise<void> {
    const phase = this.phaseNow;
    if (SOURCE_OWNER[phase] === 'source' || (phase === 'outcome-unknown' && e.code === 'ENOTRESUMED') || (!this.resumedThere && e.code === 'ENOMIGRATION')) {
      // The copy here is the only one (and current): it runs on.
      const cancelled = this.asked.cancel !== undefined || e.code === 'ECANCELED';
      const reason = cancelled ? (this.asked.cancel ?? e.message) : e.message;
      if (cancelled) {
        try {
          this.link?.prio?.send(encodeMsg({ t: 'cancel', reason }));
        } catch { /* the link may be gone already */ }
      }
      if (this.pausedByUs && this.vm.state === 'paused') this.vm.resume();
      this.vm.setThrottle(0);
      this.stats.info['error-code'] = e.code;
      this.enter(cancelled ? 'cancelled' : 'failed', reason);
      this.log[cancelled ? 'info' : 'warn']({ err: reason, to: this.p.to }, cancelled ? 'migration cancelled; the VM runs on here' : 'migration failed; the VM runs on here');
      return;
    }
    // The guest's memory is split between the hosts (or the destination may run it): this copy must never run.
    this.stats.info['error-code'] = e.code;
    this.enter('lost', `post-copy failed after the switch-over; the VM is lost: ${e.message}`);
    this.log.error({ err: e.message, to: this.p.to }, 'post-copy failed after the switch-over: the VM is lost');
  }

  private linkOptions() {
    const base = new URL(this.p.to);
    base.pathname = '/migrate';
    const c = this.credentials;
    return {
      url: base.href, display: this.p.to, version: MIGRATION_PROTOCOL_VERSION, maxPayload: MIGRATION_MAX_PAYLOAD,
      ...(c?.token !== undefined ? { token: c.token } : {}), ...(c?.tls !== undefined ? { tls: c.tls } : {}),
    };
  }

  /**
   * Opens the bulk stream of a new link (a fresh migration, or a recovery): its inbox, its page
   * sender, and its liveness (the source pings; a link silent for LINK_SILENT_MS is lost).
   */
  private async openBulk(recover: boolean): Promise<Link> {
    const bulk = await this.dial({ ...this.linkOptions(), zeroMask: true, hello: { role: 'bulk', id: this.id, ...(recover ? { recover: true } : {}) } });
    if (this.destIncarnation === '') this.destIncarnation = bulk.incarnation;
    else if (bulk.incarnation !== this.destIncarnation) {
      dropSockets([bulk.ws]);
      throw new FerryError('EHOSTGONE', `the destination host ${this.p.to} was restarted: the guest's newest state died with it`);
    }
    const gen = ++this.linkGen;
    const inbox = new Inbox(bulk.ws, this.p.to, { pages: this.vm.memory.pages });
    const sender = new PageSender(bulk.ws, this.vm.memory.ram, this.p.maxBandwidth, this.stats, () => {
      this.checkCancelled();
      inbox.check();
    }, (e) => inbox.interrupt(e));
    const liveness = new LinkLiveness();
    liveness.watch(bulk.ws);
    liveness.pingThrough(bulk.ws);
    sender.setEncoding(this.encoding);
    const link: Link = { gen, bulk: bulk.ws, prio: undefined, inbox, sender, liveness };
    bulk.ws.on('close', () => sender.wake());
    liveness.start(LINK_PING_MS, (silentMs) => {
      if (gen !== this.linkGen) return liveness.stop();
      if (silentMs > LINK_SILENT_MS) {
        liveness.stop();
        inbox.interrupt(new FerryError('ELINK', `no word from ${this.p.to} for ${LINK_SILENT_MS} ms`));
        sender.wake();
        this.pushWake?.();
      }
    });
    this.link = link;
    return link;
  }

  /** The priority channel of `link`; once it is there the source pings it instead of the busy bulk stream. */
  private async openPrio(link: Link, opening?: Promise<{ ws: LinkSocket }>): Promise<void> {
    const prio = (await (opening ?? this.dial({ ...this.linkOptions(), hello: { role: 'prio', id: this.id } }))).ws;
    prio.on('error', () => {});
    prio.on('close', (code: number, reason: Buffer) => {
      const why = reason.length > 0 ? `${code}: ${peerText(reason.toString(), 123)}` : `${code}`;
      if (link.gen === this.linkGen) link.inbox.interrupt(new FerryError('ELINK', `priority channel to ${this.p.to} closed (${why})`));
      link.sender.wake();
      this.pushWake?.();
    });
    link.prio = prio;
    link.liveness.watch(prio);
    link.liveness.pingThrough(prio);
  }

  private async connect(): Promise<void> {
    const link = await this.openBulk(false).catch((e: unknown) => {
      // Say whose credentials: the source host dials with its own, not the CLI's that asked for the migration.
      if (e instanceof FerryError && (e.code === 'EAUTH' || e.code === 'ETLS')) {
        throw new FerryError(e.code, `${e.message} (the source host dials the destination with its own credentials: start both hosts with the same --token-file / FERRY_TOKEN, and with TLS, certificates from one CA)`);
      }
      throw e;
    });
    this.checkCancelled();
    const self = this.hooks.self();
    this.send({
      t: 'setup', vm: this.name, ...(this.p.as !== undefined ? { as: this.p.as } : {}), program: this.program, mode: this.p.mode, config: this.vm.config, insnLimit: this.vm.insnLimit,
      pageSize: PAGE_SIZE, isa: ISA, devices: DEVICES, sourceIncarnation: self.incarnation,
      ...(self.url ? { source: self.url } : {}), ...(this.p.giveUpAfterMs > 0 ? { giveUpAfterMs: this.p.giveUpAfterMs } : {}),
    });
    // The priority channel joins while the destination checks the setup.
    const prio = this.dial({ ...this.linkOptions(), hello: { role: 'prio', id: this.id } });
    prio.catch(() => undefined);
    const reply = await link.inbox.next(['setup-ok', 'refused'], ACK_TIMEOUT_MS);
    if (reply.t === 'refused') {
      void prio.then((l) => l.ws.close(), () => undefined);
      throw new FerryError(reply.code, `destination refused: ${reply.message}`);
    }
    await this.openPrio(link, prio);
    this.checkCancelled();
  }

  private checkCancelled(): void {
    if (this.asked.cancel !== undefined) throw new FerryError('ECANCELED', this.asked.cancel);
  }

  /** Sends `m` on the bulk channel; returns its encoded size. */
  private send(m: MigrationMsg): number {
    const bytes = encodeMsg(m);
    this.link!.bulk.send(bytes);
    return bytes.length;
  }

  /** The console history, sent with a round when it has grown, so the state section need carry only what follows; returns the bytes sent. */
  private sendConsoleAhead(): number {
    const out = this.hooks.consoleOutput();
    if (out.total === this.consoleSentAt) return 0;
    this.consoleSentAt = out.total;
    return this.send({ t: 'console', history: out.history });
  }

  /** The state section's console: what was printed since the history sent ahead, or the whole history. */
  private consoleSection(): { console: Uint8Array; consoleAppend?: true } {
    const out = this.hooks.consoleOutput();
    const since = this.consoleSentAt === undefined ? Infinity : out.total - this.consoleSentAt;
    if (since > out.history.length) return { console: out.history };
    return { console: out.history.subarray(out.history.length - since), consoleAppend: true };
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
    this.enter('stop-and-copy');
    await this.stateKnown();
    this.stats.info['switchover-reason'] = 'cold migration';
    const t0 = performance.now();
    const pages = this.everWrittenPages();
    this.stats.info['touched-pages'] = pages.length;
    await this.link!.sender.sendAll(pages, 'downtime');
    await this.switchOver();
    this.stats.info['downtime-ms'] = round2(performance.now() - t0);
  }

  private async precopy(): Promise<void> {
    const vm = this.vm;
    this.enter('precopy');
    await vm.syncDirty(); // a fresh dirty epoch: every write from here on is logged
    let pages: Uint32Array = this.everWrittenPages();
    this.stats.info['touched-pages'] = pages.length;
    const convergence = (this.hooks.policies?.convergence ?? DEFAULT_CONVERGENCE).create();
    /** The vCPU throttle the decisions have set (percent). */
    let throttle = 0;
    /** The pause the switch-over starts from, once the guest stopped with a set that fits. */
    let pausedHere: { tPause: number; tPaused: number; tSynced: number; last: Uint32Array } | undefined;
    /** The last round's rate, plain page-frame bytes per ms. */
    let roundRate = 0;
    /** The downtime a measured estimate expected when it decided the switch-over (undefined: the round's rate decided). */
    let expectedAtSwitch: number | undefined;
    if (this.p.xbzrle !== 'auto' && this.p.compress !== 'auto') this.useEncoding(undefined, pages.length);
    for (let round = 1; ; round++) {
      const link = this.link!;
      const r0 = performance.now();
      const sent = await link.sender.sendAll(pages, 'precopy');
      const consoleBytes = this.sendConsoleAhead();
      // The rate the estimates use is in plain page-frame bytes: what the dirty pages weigh.
      const bytes = sent.raw + consoleBytes;
      const wire = sent.wire + consoleBytes;
      const tEnd = performance.now(); // before the send, so a preemption can only lengthen the round trip sampled below
      this.send({ t: 'round-end', round: round - 1 });
      await link.inbox.next(['round-ack'], ACK_TIMEOUT_MS);
      const tAck = performance.now();
      link.liveness.rttSample(tAck - tEnd); // at least a round trip (and what was still queued)
      const ms = Math.max(tAck - r0, 0.001);
      this.judgeEncoding(bytes / ms);
      const rttMs = link.liveness.rttMs() ?? 0;
      this.stats.info['rtt-ms'] = round2(rttMs);
      const dirty = await vm.syncDirty();
      roundRate = bytes / ms;
      const result = {
        rounds: round, bytes, ms, rttMs, stateBytes: STATE_SECTION_ESTIMATE + this.consoleSection().console.length, dirtyBytes: dirty.length * PAGE_SIZE,
        stopped: vm.state !== 'running', postcopyRequested: this.asked.postcopy, switchover: this.expectedSwitchover(roundRate, dirty.length * PAGE_SIZE),
      };
      const expected = expectedDowntimeMs(result);
      this.stats.round({
        round: round - 1, pages: pages.length, bytes: wire, ms: round2(ms), mbps: round2((wire / ms) * 8 / 1000),
        'dirty-pages': dirty.length, 'expected-downtime-ms': round2(expected),
      }, dirty.length);
      this.log.info({ round: round - 1, pages: pages.length, ms: round2(ms), mbps: round2((wire / ms) * 8 / 1000), dirty: dirty.length, expectedDowntimeMs: round2(expected) }, 'pre-copy round');
      this.hooks.update(this.stats);
      pages = dirty;
      this.checkCancelled();
      const decision = convergence.afterRound(result, { ...this.p, mode: this.p.mode === 'hybrid' ? 'hybrid' : 'precopy' });
      const warned = this.stats.info['convergence-warning'];
      this.stats.info['convergence-warning'] = decision.next === 'round' ? decision.notConverging : undefined;
      if (this.stats.info['convergence-warning'] !== undefined && warned === undefined) {
        this.log.warn({ round, why: this.stats.info['convergence-warning'] }, 'pre-copy is not converging');
      }
      if (this.stats.info['convergence-warning'] !== warned) this.hooks.update(this.stats);
      if (decision.next === 'postcopy') {
        this.log.info({ round, why: decision.reason }, 'switching to post-copy');
        this.stats.info['postcopy-switch'] = decision.reason;
        this.stats.info['switchover-reason'] = `post-copy: ${decision.reason}`;
        // The pages dirtied in the last round are stale over there: they are the missing set.
        await this.postcopy(pages, throttle > 0);
        return;
      }
      if (decision.next === 'stop-and-copy') {
        if (vm.state === 'running') {
          // Pause, then judge what the guest really left dirty: a throttled vCPU runs in bursts,
          // and one between the last harvest and the pause can dirty its whole working set again.
          const tPause = performance.now();
          this.pausedByUs = true;
          await vm.pause();
          const tPaused = performance.now();
          const last = vm.dirtyWhileStopped();
          const tSynced = performance.now();
          const all = union(pages, last);
          const expectedNow = expectedDowntimeMs({ ...result, dirtyBytes: all.length * PAGE_SIZE });
          const allowedAbove = this.p.switchoverAtMaxRounds && round >= this.p.maxRounds;
          // (vm.state moved across the await: the guest may have halted meanwhile.)
          if ((vm.state as SourceVm['state']) === 'paused' && !allowedAbove && expectedNow > this.p.downtimeLimitMs) {
            vm.resume();
            this.pausedByUs = false;
            const deferred = (this.stats.info['switchover-deferrals'] ?? 0) + 1;
            this.stats.info['switchover-deferrals'] = deferred;
            this.log.info({ round, expectedMs: round2(expectedNow), dirtyAtPause: all.length, pausedMs: round2(performance.now() - tPause) },
              'switch-over deferred: at the pause more was dirty than fits the downtime limit; the guest runs on for another round');
            pages = all;
            if (deferred >= MAX_SWITCHOVER_DEFERRALS) {
              const why = `${deferred} times the guest had dirtied more by the pause than the last round left `
                + `(expected downtime ${round2(expectedNow)} ms against a limit of ${this.p.downtimeLimitMs} ms)`;
              if (this.p.mode === 'hybrid') {
                // What post-copy is for: a guest that dirties faster than pre-copy can catch.
                this.log.info({ round, why }, 'switching to post-copy');
                this.stats.info['postcopy-switch'] = `pre-copy is not converging: ${why}`;
                this.stats.info['switchover-reason'] = `post-copy: ${this.stats.info['postcopy-switch']}`;
                await this.postcopy(pages, throttle > 0);
                return;
              }
              // Allowed above the limit at max rounds: the rounds go on to there.
              if (!this.p.switchoverAtMaxRounds) {
                throw new FerryError('ENOCONVERGE', `pre-copy cannot converge: ${why}; raise --downtime-limit, use --mode hybrid, or allow --switchover-at-max-rounds`);
              }
            }
            continue;
          }
          pausedHere = { tPause, tPaused, tSynced, last };
          expectedAtSwitch = result.switchover === undefined ? undefined : expectedNow;
          this.stats.info['switchover-reason'] = allowedAbove && expectedNow > this.p.downtimeLimitMs
            ? `max rounds (${round}), allowed above the limit: expected downtime ${round2(expectedNow)} ms at the pause`
            : decision.reason;
        } else {
          expectedAtSwitch = result.switchover === undefined ? undefined : expected;
          this.stats.info['switchover-reason'] = decision.reason;
        }
        break;
      }
      if (decision.next === 'give-up') throw new FerryError('ENOCONVERGE', decision.reason);
      if (!this.encodingDecided && pages.length > 0 && wire >= LINK_RATE_MIN_BYTES) {
        // Another round it is: measure whether encoding would carry it faster (once, on its pages).
        let unavailable: string | undefined;
        const rates = await this.measureEncoding(pages, wire / ms).catch((e: unknown) => {
          // No pool (its threads could not start): plain frames, as before there was one.
          unavailable = `auto: ${(e as Error).message}: plain frames`;
          this.log.warn({ err: (e as Error).message }, 'page-encoding pool unavailable: pre-copy sends plain frames');
          return undefined;
        });
        this.useEncoding(rates, pages.length, unavailable);
        if (rates !== undefined && this.encoding === undefined && ++this.encodingMeasurements < PLAIN_AFTER_MEASUREMENTS) {
          this.encodingDecided = false; // plain frames this round; measured again after the next
        }
        this.checkCancelled();
      }
      if (decision.throttle !== throttle) {
        vm.setThrottle(decision.throttle);
        this.stats.info['throttle-percent'] = decision.throttle;
        this.log.info({ throttle: decision.throttle, round }, round >= this.p.maxRounds ? 'max rounds without converging: throttling the vCPU' : 'auto-converge: throttling the vCPU');
      }
      throttle = decision.throttle;
    }
    // Stop-and-copy: from here the guest is paused until the destination resumes it.
    let tPause: number, tPaused: number, tSynced: number, last: Uint32Array;
    if (pausedHere) {
      this.enter('stop-and-copy');
      ({ tPause, tPaused, tSynced, last } = pausedHere);
    } else {
      tPause = await this.stopGuest();
      tPaused = performance.now();
      // Paused (or halted): no handshake needed to take what was dirtied since the last round.
      last = vm.state === 'created' ? await vm.syncDirty() : vm.dirtyWhileStopped();
      tSynced = performance.now();
    }
    if (throttle) vm.setThrottle(0);
    const key = this.switchoverKey();
    const sent = await this.link!.sender.sendAll(union(pages, last), 'downtime');
    const tSent = performance.now();
    const answered = await this.switchOver();
    const tDone = performance.now();
    this.stats.info['downtime-ms'] = round2(tDone - tPause);
    const sample = { bytes: sent.raw, pauseMs: tSynced - tPause, sendMs: tDone - tSynced, roundRate, ...(expectedAtSwitch === undefined ? {} : { expectedMs: expectedAtSwitch }) };
    this.stats.info['stop-and-copy-mbps'] = round2((sample.bytes / sample.sendMs) * 8 / 1000);
    // Plain frames, a guest that ran through the last round, and an answer on the link: a stop-and-copy as the next will be.
    if (answered && this.pausedByUs && this.encoding === undefined) this.hooks.switchovers.record(key, sample);
    this.log.debug({
      pauseMs: round2(tPaused - tPause), syncMs: round2(tSynced - tPaused), lastPagesMs: round2(tSent - tSynced),
      stateAckMs: round2(tDone - tSent), lastPages: last.length,
    }, 'stop-and-copy timing');
  }

  /**
   * Auto encoding, judged by its results: a round's page bytes per ms (`pageRate`) with plain
   * frames is the bar, and encoding that, its cache warm (its second round on), carries pages
   * slower than plain frames did is turned off again (pages that do not delta or compress).
   */
  private judgeEncoding(pageRate: number): void {
    if (this.encoding === undefined) {
      this.plainPageRate = Math.max(this.plainPageRate, pageRate);
      return;
    }
    if (this.p.xbzrle !== 'auto' && this.p.compress !== 'auto') return;
    const why = encodingNotWorthIt(this.plainPageRate, pageRate, ++this.encodedRounds);
    if (why === undefined) return;
    this.encoding = undefined;
    this.link?.sender.setEncoding(undefined);
    this.stats.info.encoding = 'none';
    this.stats.info['encoding-reason'] = why;
    this.log.info({ why }, 'pre-copy page encoding');
  }

  /**
   * Encodes pre-copy's frames as chosen from `rates` (undefined: by the forced modes only) from
   * the next send on, of `setPages` pages; `why` says why, if not the choice's own reason.
   */
  private useEncoding(rates: EncodingRates | undefined, setPages: number, why?: string): void {
    this.encodingDecided = true;
    const choice = chooseEncoding(this.p, rates);
    if (why !== undefined) choice.reason = why;
    const ram = this.vm.memory.size;
    const cacheBytes = this.p.xbzrleCacheBytes > 0
      ? Math.min(this.p.xbzrleCacheBytes, ram)
      : Math.min(ram, XBZRLE_CACHE_AUTO_MAX, Math.max(XBZRLE_CACHE_MIN, Math.ceil(setPages * 1.25) * PAGE_SIZE));
    const cache = choice.xbzrle ? XbzrleCache.create(cacheBytes) : undefined;
    if (cache) this.stats.info['xbzrle-cache-bytes'] = cache.slots * PAGE_SIZE;
    this.encoding = cache !== undefined || choice.compress ? { xbzrle: cache, compress: choice.compress } : undefined;
    this.link?.sender.setEncoding(this.encoding);
    this.stats.info.encoding = encodingName(choice);
    this.stats.info['encoding-reason'] = choice.reason;
    this.log.info({ encoding: this.stats.info.encoding, why: choice.reason, ...(rates ?? {}) }, 'pre-copy page encoding');
  }

  /**
   * The pool's rate and LZ4's ratio on a trial frame of `pages`, encoded ENCODE_TRIALS + 2 times
   * against a cache of its own (never the one sent with): the first starts the pool's threads and
   * fills the cache, the others pay what a re-sent page costs (its whole compare); the fastest of
   * them counts (the first few run before the threads' code is optimized).
   */
  private async measureEncoding(pages: Uint32Array, wireBytesPerMs: number): Promise<EncodingRates> {
    const ram = this.vm.memory.ram;
    const trial = pages.slice(0, PAGES_PER_FRAME);
    const task = { ram: ram.buffer as SharedArrayBuffer, ramBytes: ram.length, pages: trial, compress: true, cache: XbzrleCache.create(trial.length * PAGE_SIZE).buffers };
    const first = await encodeOnPool(task);
    let r = await encodeOnPool(task);
    for (let i = 0; i < ENCODE_TRIALS; i++) {
      const again = await encodeOnPool(task);
      if (again.ms < r.ms) r = again;
    }
    return {
      wireBytesPerMs,
      poolBytesPerMs: ((r.pages - r.zero) * PAGE_SIZE / Math.max(r.ms, 0.001)) * ENCODE_THREADS, // page bytes taken in
      lz4Ratio: first.frame.length / first.innerBytes, // of whole pages: what a page sent the first time shrinks to
    };
  }

  /** Stops the guest at a slice boundary (stop-and-copy); returns when the downtime clock started. */
  private async stopGuest(): Promise<number> {
    this.enter('stop-and-copy');
    const tPause = performance.now();
    if (this.vm.state === 'running') {
      this.pausedByUs = true;
      await this.vm.pause();
    } else {
      await this.stateKnown();
    }
    return tPause;
  }

  /** A VM that never ran reports its device state once its vCPU acknowledges a pause (it stays created). */
  private async stateKnown(): Promise<void> {
    if (this.vm.state === 'created') await this.vm.pause();
  }

  /** How the destination should leave the guest: running if it ran here before the switch-over, else as it is. */
  private runState(): RunState {
    return this.pausedByUs ? 'running' : (this.vm.state as RunState);
  }

  /**
   * Pre-copy and cold switch-over: the state section, then the destination's acknowledgement
   * that the guest runs there. A link lost in between leaves the outcome unknown: the copy here
   * stays paused until the destination says what it did (or the operator decides).
   */
  private async switchOver(): Promise<boolean> {
    this.checkCancelled();
    const state = this.vm.exportState();
    this.stats.info['state-bytes'] = this.send({ t: 'state', state, run: this.runState(), ...this.consoleSection() });
    this.enter('switching'); // after the send: what observers hear (hooks) need not count as downtime
    let answered = true;
    try {
      await this.link!.inbox.next(['completed'], ACK_TIMEOUT_MS);
    } catch (e) {
      // Whatever went wrong (a lost or silent link, a peer that broke the protocol), the
      // destination may have resumed the guest: only it can say.
      answered = false;
      await this.learnOutcome(e instanceof FerryError ? e : new FerryError('EINTERNAL', (e as Error).message));
    }
    this.stats.info['remaining-bytes'] = 0;
    return answered;
  }

  /** Plain switch-overs to the same destination under the same bandwidth cap are alike. */
  private switchoverKey(): string {
    return `${this.p.to} cap=${this.p.maxBandwidth}`;
  }

  /**
   * The stop-and-copy of `dirtyBytes` this migration can expect after a round at `roundRate`, from
   * the ones measured to the same destination (undefined: none of a comparable size, or encoded
   * pages; the round's rate stands); said in the statistics either way.
   */
  private expectedSwitchover(roundRate: number, dirtyBytes: number): { rate: number; fixedMs: number } | undefined {
    if (this.encoding !== undefined) {
      // How fast encoded pages move depends on how well they delta and compress: the workload's, not the destination's.
      this.stats.info['downtime-estimate'] = 'at the last round\'s rate (encoded pages: a stop-and-copy moves them as fast as they encode)';
      return undefined;
    }
    const e = this.hooks.switchovers.estimate(this.switchoverKey(), roundRate, dirtyBytes);
    if (e === undefined) {
      const upTo = this.hooks.switchovers.measuredUpTo(this.switchoverKey());
      this.stats.info['downtime-estimate'] = upTo === 0 ? 'at the last round\'s rate (no switch-over to this destination measured yet)'
        : `at the last round's rate (switch-overs to this destination were measured up to ${mib(upTo)}, not ${mib(dirtyBytes)})`;
      return undefined;
    }
    // A paced link paces the stop-and-copy too: plain frames go no faster than --max-bandwidth.
    const rate = this.p.maxBandwidth > 0 ? Math.min(e.rate, this.p.maxBandwidth / 1000) : e.rate;
    this.stats.info['downtime-estimate'] = `at the stop-and-copy rate measured to this destination (${e.samples} switch-over${e.samples === 1 ? '' : 's'}): `
      + `${round2((rate * 8) / 1000)} Mb/s after ${round2(e.fixedMs)} ms (the pause, the pipeline's start), with a margin of ${round2(e.margin)}x`;
    return { rate, fixedMs: e.fixedMs };
  }

  /**
   * Outcome unknown: the state section left and no answer came back. The guest stays paused here
   * while this side asks the destination over fresh links (backoff), or until the operator
   * decides (`migrate resolve`). Returns when the destination runs the guest (or the operator
   * says so); throws ENOTRESUMED when it never will (the guest then runs on here).
   */
  private async learnOutcome(cause: FerryError): Promise<void> {
    this.dropLink();
    this.enter('outcome-unknown', `the link was lost before the destination answered the switch-over: ${cause.message}`);
    this.log.warn({ err: cause.message, to: this.p.to }, 'switch-over outcome unknown: the VM stays paused here until the destination says whether it resumed it');
    const backoff = new Backoff(RETRY_FIRST_MS, RETRY_MAX_MS);
    for (;;) {
      if (this.asked.destinationSaid) {
        this.log.info({ to: this.p.to }, 'switch-over outcome learned: the destination told us it runs the VM');
        this.enter('completed');
        return;
      }
      const decided = this.asked.resolve;
      if (decided === 'release') {
        this.stats.info['switchover-reason'] = `${this.stats.info['switchover-reason'] ?? 'switch-over'}; outcome decided by the operator (the destination runs the guest)`;
        this.enter('completed');
        return;
      }
      if (decided === 'resume') throw new FerryError('ENOTRESUMED', 'the operator decided the destination does not run the guest');
      const answer = await queryOutcome(this.linkOptions(), this.id, this.destIncarnation, this.vm.memory.pages, this.dial);
      if (answer.outcome === 'completed') {
        this.log.info({ why: answer.why }, 'switch-over outcome learned: the destination runs the VM');
        this.enter('completed');
        return;
      }
      if (answer.outcome === 'discarded') throw new FerryError('ENOTRESUMED', `the destination never resumed the guest: ${answer.why}`);
      this.stats.info['error-desc'] = `outcome unknown; asking ${this.p.to}: ${answer.why}`;
      this.hooks.update(this.stats);
      const delayMs = backoff.next();
      await this.retryDelay(answer.outcome === 'pending' ? RETRY_FIRST_MS : delayMs);
    }
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
    this.enter('advise');
    if (this.p.mode === 'postcopy') this.stats.info['switchover-reason'] ??= 'post-copy';
    const firstWrites0 = vm.memory.firstWriteCount();
    // In push order (policies.ts), decided here while the guest runs: nothing of it is downtime.
    const pushOrder = this.hooks.policies?.pushOrder ?? ASCENDING_PUSH;
    const advised = hybridDirty ?? this.everWrittenPages();
    const touched = pushOrder === ASCENDING_PUSH ? advised
      : checkedPushOrder(pushOrder, advised, { pc: vm.publishedPc, ramPages: vm.memory.pages, ...(hybridDirty ? { recentlyDirty: hybridDirty } : {}) });
    const missing = pageBitmap(vm.memory.pages, touched);
    const indexOf = pageIndex(vm.memory.pages, touched);
    this.send({ t: 'postcopy-advise', advice: { missing, missingCount: touched.length } });
    await this.link!.inbox.next(['advise-ok'], ACK_TIMEOUT_MS);
    // Pages that join the advised missing set (late pages). Post-copy: pages first written since
    // the advice, from the first-write ring, so the cost follows what the guest wrote meanwhile,
    // not the RAM size (pages written again are in the advice and go out from RAM as it is now;
    // should the ring have wrapped, every page state is scanned). Hybrid: every page dirtied
    // since its last round, most of them taken before the pause while the guest still runs, so
    // the dirty log left for the downtime covers only the last millisecond or so.
    const late: number[] = [];
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
    let order = touched;
    if (late.length > 0) {
      order = new Uint32Array(touched.length + late.length);
      order.set(touched);
      order.set(late, touched.length);
    }
    if (!hybridDirty) this.stats.info['touched-pages'] = order.length;
    this.timing.late = performance.now() - tPause;
    await this.postcopySwitch(order, tPause, indexOf, Uint32Array.from(late));
  }

  /**
   * The post-copy switch-over and what follows it, with the VM already stopped: `order` lists
   * the pages the destination does not have (or has stale), in push order.
   */
  private async postcopySwitch(order: Uint32Array, tPause: number, indexOf: Int32Array, late: Uint32Array): Promise<void> {
    const vm = this.vm;
    const link = this.link!;
    const push = new PushQueue(order, indexOf, vm.memory.pages, () => link.liveness.rttMs());
    this.push = push;
    this.stats.toSend(push.left); // pages still here, counted down as they are pushed or asked for
    this.serveFaults(link); // listen before the guest can resume over there
    const tState = performance.now();
    const state = vm.exportState();
    const tExported = performance.now();
    // The destination has the advised missing set: only the pages written since join it.
    const msg = encodeMsg({ t: 'state', state, run: this.runState(), ...this.consoleSection(), postcopy: { late, missingCount: order.length } });
    const tEncoded = performance.now();
    link.bulk.send(msg);
    this.enter('switching'); // after the send, as in switchOver
    const timing = this.timing;
    timing.stateSent = performance.now() - tPause;
    timing.exportMs = tExported - tState;
    timing.encodeMs = tEncoded - tExported;
    timing.sendMs = performance.now() - tEncoded;
    timing.stateBytes = msg.length;
    let outcome: 'resumed' | 'recovered' | 'completed' = 'resumed';
    try {
      await link.inbox.next(['resumed'], ACK_TIMEOUT_MS);
      this.resumedThere = true;
    } catch (e) {
      // Whether the destination resumed before the link went, only it knows: a recovery asks. So
      // when it failed before saying `resumed` (a `vm destroy` there as the state section came):
      // that says nothing about whether it had resumed the guest.
      if (!isLinkLoss(e) && !link.inbox.failedByPeer) throw e;
      outcome = await this.recoverLink(e as FerryError);
    }
    this.stats.info['downtime-ms'] = round2(performance.now() - tPause);
    this.log.debug({ ...Object.fromEntries(Object.entries(timing).map(([k, v]) => [k, round2(v)])), resumed: this.stats.info['downtime-ms'] }, 'post-copy switch-over timing (ms since the pause began)');
    // From here the guest runs on the destination; this side only serves its memory.
    if (outcome === 'completed') {
      this.enter('completed');
      return;
    }
    if (this.phaseNow !== 'postcopy-active') this.enter('postcopy-active');
    push.notBefore = performance.now() + this.p.pushDelayMs;
    for (;;) {
      try {
        await this.pushRest(push);
        this.enter('completed');
        return;
      } catch (e) {
        if (!isLinkLoss(e)) throw e;
        if ((await this.recoverLink(e as FerryError)) === 'completed') {
          this.enter('completed');
          return;
        }
      }
    }
  }

  /**
   * Serves post-copy faults arriving on a link's priority channel: the page goes out at once
   * (unless it already has), and the background scan restarts at it.
   */
  private serveFaults(link: Link): void {
    const prio = link.prio!;
    const pages = this.vm.memory.pages;
    const ram = this.vm.memory.ram;
    prio.on('message', (data: Buffer) => {
      const push = this.push;
      if (link.gen !== this.linkGen || !push) return;
      let m: MigrationMsg;
      try {
        m = decodeMsg(data, { pages });
        if (m.t !== 'pushed' && m.t !== 'page-req') throw new FerryError('EPROTO', `unexpected "${m.t}" on the priority channel`);
      } catch (e) {
        // A destination that breaks the protocol: this link is given up (and recovered).
        link.inbox.interrupt(e as FerryError);
        this.pushWake?.();
        return;
      }
      if (m.t === 'pushed') {
        try {
          push.window.onAck(m.received, m.bytes, performance.now());
        } catch (e) {
          link.inbox.interrupt(new FerryError('EPROTO', `${this.p.to} ${(e as Error).message}`));
        }
        this.pushWake?.();
        return;
      }
      this.stats.info['postcopy-requests']++;
      push.window.onFault();
      if (!push.fault(m.page)) return; // already on its way on the bulk stream
      if (push.left === 0) this.pushWake?.(); // a push held back (pushDelayMs) has nothing left to wait for
      const { frame, zero } = encodePages(ram, [m.page], 0, 1);
      prio.send(frame);
      this.stats.sent(frame.length, 1, zero, 'postcopy');
    });
  }

  /** The background push: every page of the queue not yet sent, once, then `postcopy-done`. */
  private async pushRest(push: PushQueue): Promise<void> {
    const link = this.link!;
    // Demand paging only, until the push may start (or every page has been asked for).
    for (let wait = push.notBefore - performance.now(); push.left > 0 && wait > 0; wait = push.notBefore - performance.now()) {
      link.inbox.check();
      await this.pushIdle(wait);
    }
    const t0 = performance.now();
    let ackWaitMs = 0;
    for (;;) {
      link.inbox.check();
      const chunk = push.nextChunk(push.window.framePages(PAGE_SIZE));
      if (chunk.length === 0) break;
      const bytes = await link.sender.send(chunk, 'postcopy');
      push.window.onSent(bytes, chunk.length, performance.now());
      const ta = performance.now();
      await this.pushWindow(push, link);
      ackWaitMs += performance.now() - ta;
    }
    this.log.debug({ pushMs: round2(performance.now() - t0), ackWaitMs: round2(ackWaitMs), windowBytes: Math.round(push.window.bytes) }, 'post-copy push');
    this.send({ t: 'postcopy-done', pages: push.order.length });
    await link.inbox.next(['completed'], ACK_TIMEOUT_MS);
    this.stats.info['remaining-bytes'] = 0;
  }

  /**
   * Waits until the push window has room (migration/push-window.ts): a fault's page, on the
   * priority channel, never waits behind a bulk backlog on the path. No acknowledgement for
   * ACK_TIMEOUT_MS is a lost link.
   */
  private async pushWindow(push: PushQueue, link: Link): Promise<void> {
    const w = push.window;
    let acked = w.received + w.written;
    let deadline = performance.now() + ACK_TIMEOUT_MS;
    while (!w.hasRoom()) {
      link.inbox.check();
      if (w.received + w.written !== acked) {
        acked = w.received + w.written;
        deadline = performance.now() + ACK_TIMEOUT_MS;
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new FerryError('ETIMEDOUT', `${this.p.to} acknowledged no pushed page within ${ACK_TIMEOUT_MS} ms`);
      await this.pushIdle(left);
    }
  }

  /** Sleeps until `ms` pass or something the push waits on happens (an acknowledgement, a fault, a lost link). */
  private pushIdle(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.pushWake = () => {
        clearTimeout(timer);
        this.pushWake = undefined;
        resolve();
      };
    });
  }

  /**
   * Post-copy lost its link: both sides keep their state (postcopy-paused) and this side
   * reconnects, with backoff or at once on `migrate recover`, until the destination answers.
   * A refused or unreachable destination is waited for (it says nothing about the host). Throws
   * when the destination answers that it no longer has the migration (ENOMIGRATION), or that it
   * had resumed the guest and lost it (ELOST: never the older copy here then), when it is
   * another incarnation of its host (EHOSTGONE), when the user gives the VM up, or when the
   * --give-up-after deadline passes.
   */
  private async recoverLink(cause: FerryError): Promise<'recovered' | 'completed'> {
    const tPaused = performance.now();
    this.dropLink();
    this.enter('postcopy-paused', `link lost: ${cause.message}`);
    this.log.warn({ err: cause.message, to: this.p.to }, 'post-copy paused: the link is lost; both hosts keep their state until it is recovered');
    const backoff = new Backoff(RETRY_FIRST_MS, RETRY_MAX_MS);
    for (let attempt = 1; ; attempt++) {
      const delayMs = backoff.next();
      if (this.asked.abandon === undefined) {
        const giveUpIn = giveUpLeftMs(tPaused, this.p.giveUpAfterMs, performance.now());
        await this.retryDelay(Math.min(giveUpIn, this.asked.holdRecovery || !this.p.autoRecover ? Infinity : delayMs));
      }
      this.checkAbandoned();
      if (giveUpLeftMs(tPaused, this.p.giveUpAfterMs, performance.now()) <= 0) {
        throw new FerryError('EGIVENUP', `no link to ${this.p.to} for ${this.p.giveUpAfterMs} ms (--give-up-after): the VM is given up`);
      }
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
        this.dropLink();
        if (recoveryAttemptIsFinal(err.code) || this.asked.abandon !== undefined) throw err;
        this.stats.info['error-desc'] = `link lost; recovery attempt ${attempt} failed: ${err.message}`;
        this.hooks.update(this.stats);
        this.log.info({ attempt, err: err.message, retryInMs: this.asked.holdRecovery || !this.p.autoRecover ? undefined : backoff.peek() }, 'post-copy recovery attempt failed');
      }
    }
  }

  /** Throws once the migration has been abandoned (host stopping, or the user gave the VM up). */
  private checkAbandoned(): void {
    const a = this.asked.abandon;
    if (a !== undefined) throw new FerryError(a.code, a.reason);
  }

  /** Waits `ms` (Infinity: until an operator command), or less if one comes. */
  private retryDelay(ms: number): Promise<void> {
    if (this.asked.recoverNow) {
      this.asked.recoverNow = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = Number.isFinite(ms) ? setTimeout(() => done(), Math.max(0, ms)) : undefined;
      const done = () => {
        clearTimeout(timer);
        this.asked.recoverNow = false;
        this.retryWake = undefined;
        resolve();
      };
      this.retryWake = done;
    });
  }

  /** A new link to the destination for a paused post-copy: its received-page bitmap says what to send again. */
  private async reconnect(): Promise<'recovered' | 'completed'> {
    const link = await this.openBulk(true);
    this.send({ t: 'recover' });
    const reply = await link.inbox.next(['recv-bitmap', 'completed'], ACK_TIMEOUT_MS);
    if (reply.t === 'completed') return 'completed';
    // It answered with its bitmap: it runs the guest (a recovery never resumes one that had not).
    this.resumedThere = true;
    const resent = this.push!.resync(reply.received, () => link.liveness.rttMs()); // the bitmap's size and count were checked at decode
    const info = this.stats.info;
    info['postcopy-resent-pages'] = (info['postcopy-resent-pages'] ?? 0) + resent;
    await this.openPrio(link);
    this.serveFaults(link);
    this.enter('postcopy-active');
    return 'recovered';
  }

  /** Forgets the current link: its sockets are cut and nothing that still comes from them counts. */
  private dropLink(): void {
    this.linkGen++;
    const link = this.link;
    if (!link) return;
    link.liveness.stop();
    link.sender.abandon();
    dropSockets([link.bulk, link.prio]);
    this.pushWake?.();
  }

  private closeLink(): void {
    const link = this.link;
    if (!link) return;
    link.liveness.stop();
    for (const ws of [link.bulk, link.prio]) if (ws) closeWith(ws, 1000, 'migration over');
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
/** A push order's answer, checked: the same pages, each once (else the default order, said in the error). */
function checkedPushOrder(policy: PushOrderPolicy, pages: Uint32Array, ctx: PushOrderContext): Uint32Array {
  const out = policy.order(Uint32Array.from(pages), ctx);
  const seen = new Uint8Array(ctx.ramPages);
  for (const p of pages) seen[p] = 1;
  let ok = out.length === pages.length;
  for (let i = 0; ok && i < out.length; i++) {
    const p = out[i]!;
    if (p >= ctx.ramPages || seen[p] !== 1) ok = false;
    else seen[p] = 2;
  }
  if (!ok) throw new FerryError('EPOLICY', `push order "${policy.name}" did not return the missing pages, each once`);
  return out;
}

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
