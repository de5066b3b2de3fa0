import type { LinkSocket } from '../wire/socket.ts';
import type { z } from 'zod';
import { PolicyRegistry, type ConvergencePolicyFactory, type PushOrderPolicy } from '../migration/policies.ts';
import { FerryError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { queryAnswer, recoveryAnswer } from '../migration/finished.ts';
import { IncomingMigration, type FinishedIncoming } from '../migration/incoming.ts';
import { PAGE_SIZE } from '../memory/layout.ts';
import type { EncodingMode } from '../migration/encoding-policy.ts';
import { MIGRATE_DEFAULTS, OutgoingMigration, type MigrateParams, type MigrationMode } from '../migration/outgoing.ts';
import { decodeMsg, encodeMsg, type MigrationMsg } from '../migration/protocol.ts';
import { Backoff } from '../migration/recovery.ts';
import { SwitchoverHistory } from '../migration/switchover-history.ts';
import type { MigrationInfo, MigrationStats } from '../migration/stats.ts';
import type { migrateHelloSchema } from '../wire/auth.ts';
import { ControlClient } from '../wire/control-client.ts';
import { closeWith } from '../wire/peer-text.ts';
import type { PeerCredentials } from '../wire/tls.ts';
import type { PageMapMarks } from '../vm/page-map.ts';
import type { VmRegistry } from './registry.ts';

/** What a control client may ask for in `migrate.start`. */
export interface MigrateRequest {
  name: string;
  to: string;
  /** The VM's name on the destination (default: its name here). */
  as?: string;
  /** A convergence policy and a post-copy push order this host knows, by name (default: Ferry's). */
  convergencePolicy?: string;
  pushOrder?: string;
  mode?: MigrationMode;
  downtimeLimitMs?: number;
  maxBandwidth?: number;
  maxRounds?: number;
  autoConverge?: boolean;
  postcopyAfterRounds?: number;
  pushDelayMs?: number;
  autoRecover?: boolean;
  switchoverAtMaxRounds?: boolean;
  giveUpAfterMs?: number;
  xbzrle?: EncodingMode;
  compress?: EncodingMode;
  xbzrleCacheBytes?: number;
}

/** How long a finished incoming migration still answers a late recovery (with its outcome), and how many are kept. */
const FINISHED_KEPT_MS = 60_000;
const FINISHED_KEPT = 256;
/** Completed migrations whose source may not know it yet, kept at most (far beyond any real backlog). */
const FINISHED_UNACKNOWLEDGED_MAX = 4096;
/** How long a host waits for another host's control API: to connect, and for each answer. */
const PEER_REQUEST_MS = 3_000;
/** A destination tells its source it resumed the guest: first after this long, then backing off to TELL_MAX_MS. */
const TELL_FIRST_MS = 500;
const TELL_MAX_MS = 5_000;
/** ...for at most this long (the source keeps asking by itself too; this only helps when it cannot reach us). */
const TELL_FOR_MS = 3_600_000;
/** Statistics of migrations whose VM is no longer here, kept for `migrate status` (the newest). */
const STATUS_KEPT = 256;

/** A host this one has migrated with: its control URL, how many migrations went each way, and when the last began. */
export interface PeerHost {
  url: string;
  to: number;
  from: number;
  last: string;
}

const PEERS_KEPT = 64;

/**
 * The migrations of one host: outgoing ones it drives for its VMs, incoming ones arriving on
 * `/migrate`, and the last statistics of each VM's latest migration for `migrate status`.
 * Emits progress through `publish` (pushed to control clients as 'migration' events).
 */
export class MigrationManager {
  private readonly outgoing = new Map<string, OutgoingMigration>();
  /** Each outgoing migration's end (its VM dropped, if it was lost). */
  private readonly ended = new Map<OutgoingMigration, Promise<void>>();
  private readonly incoming = new Map<string, IncomingMigration>();
  /** Incoming migrations that are over, by id: what a late recovery learns (bounded, expiring). */
  private readonly finished = new Map<string, FinishedIncoming & { at: number }>();
  private readonly last = new Map<string, MigrationStats>();
  /** The stop-and-copies this host measured, per destination: what later migrations' expected downtime is based on. */
  private readonly switchovers = new SwitchoverHistory();
  /** The hosts this one has migrated with, by control URL (the dashboard lists them; their pages may drive this host). */
  private readonly peerHosts = new Map<string, PeerHost>();
  /** This host's control URL once it listens (carried in setups, so a destination can check on us). */
  selfUrl: string | undefined;
  /** Ends the waits of work that outlives a migration (telling sources outcomes) when the host stops. */
  private readonly stopping = new AbortController();

  constructor(
    private readonly registry: VmRegistry,
    /** How this host proves itself to the hosts it dials (token, certificate). */
    private readonly credentials: PeerCredentials,
    private readonly log: Logger,
    private readonly publish: (vm: string, info: MigrationInfo) => void,
    private readonly incomingIdleMs: number,
    /** This host process's incarnation (see ReadyMsg). */
    private readonly incarnation: string,
    /** The convergence policies and push orders migrations from here may name (migration/policies.ts). */
    readonly policies: PolicyRegistry = new PolicyRegistry(),
  ) {}

  private notePeer(url: string | undefined, direction: 'to' | 'from'): void {
    if (url === undefined) return;
    const p = this.peerHosts.get(url) ?? { url, to: 0, from: 0, last: '' };
    if (!this.peerHosts.has(url) && this.peerHosts.size >= PEERS_KEPT) this.peerHosts.delete(this.peerHosts.keys().next().value!);
    p[direction]++;
    p.last = new Date().toISOString();
    this.peerHosts.delete(url);
    this.peerHosts.set(url, p);
  }

  /** The hosts this one has migrated with, the most recent last. */
  peers(): PeerHost[] {
    return [...this.peerHosts.values()].map((p) => ({ ...p }));
  }

  /** What the page map of `name` shows of a migration of it: the outgoing one's dirty log and pass. */
  pageMarks(name: string): PageMapMarks {
    return this.outgoing.get(name)?.pageMarks() ?? {};
  }

  /** Records a VM's latest migration statistics; those of VMs no longer here are kept, the newest STATUS_KEPT. */
  private remember(name: string, stats: MigrationStats): void {
    this.last.delete(name);
    this.last.set(name, stats);
    if (this.last.size <= STATUS_KEPT) return;
    const here = new Set(this.registry.names());
    for (const k of this.last.keys()) {
      if (this.last.size <= STATUS_KEPT) break;
      if (!here.has(k)) this.last.delete(k);
    }
  }

  start(r: MigrateRequest): MigrationInfo {
    const rec = this.registry.get(r.name);
    if (rec.incoming) throw new FerryError('ESTATE', `VM "${r.name}" is still arriving by migration`);
    if (rec.migrating) throw new FerryError('ESTATE', `VM "${r.name}" is already being migrated`);
    let to: URL;
    try {
      to = new URL(r.to);
    } catch {
      throw new FerryError('EINVAL', `destination "${r.to}" is not a URL like ws://HOST:PORT`);
    }
    if (to.protocol !== 'ws:' && to.protocol !== 'wss:') throw new FerryError('EINVAL', `destination must be ws:// or wss://HOST:PORT (got ${r.to})`);
    const p: MigrateParams = { ...MIGRATE_DEFAULTS, to: to.origin };
    if (r.mode !== undefined) p.mode = r.mode;
    if (r.downtimeLimitMs !== undefined) p.downtimeLimitMs = r.downtimeLimitMs;
    if (r.maxBandwidth !== undefined) p.maxBandwidth = r.maxBandwidth;
    if (r.maxRounds !== undefined) p.maxRounds = Math.max(1, r.maxRounds);
    if (r.autoConverge !== undefined) p.autoConverge = r.autoConverge;
    if (r.postcopyAfterRounds !== undefined) p.postcopyAfterRounds = Math.max(1, r.postcopyAfterRounds);
    if (r.pushDelayMs !== undefined) p.pushDelayMs = r.pushDelayMs;
    if (r.autoRecover !== undefined) p.autoRecover = r.autoRecover;
    if (r.switchoverAtMaxRounds !== undefined) p.switchoverAtMaxRounds = r.switchoverAtMaxRounds;
    if (r.giveUpAfterMs !== undefined) p.giveUpAfterMs = r.giveUpAfterMs;
    if (r.xbzrle !== undefined) p.xbzrle = r.xbzrle;
    if (r.compress !== undefined) p.compress = r.compress;
    if (r.as !== undefined && r.as !== r.name) p.as = r.as;
    if (r.xbzrleCacheBytes !== undefined) p.xbzrleCacheBytes = r.xbzrleCacheBytes === 0 ? 0 : Math.max(PAGE_SIZE, r.xbzrleCacheBytes); // 0: sized by itself
    if (p.mode === 'cold' && rec.vm.state === 'running') {
      throw new FerryError('ESTATE', `cold migration needs a stopped VM: pause "${r.name}" first, or use --mode precopy`);
    }
    let policies: { convergence: ConvergencePolicyFactory; pushOrder: PushOrderPolicy };
    try {
      policies = { convergence: this.policies.convergencePolicy(r.convergencePolicy), pushOrder: this.policies.pushOrder(r.pushOrder) };
    } catch (e) {
      throw new FerryError('EINVAL', (e as Error).message);
    }
    const m = new OutgoingMigration(rec.vm, rec.name, rec.program, p, this.credentials, rec.log.child({ migration: 'out' }), {
      policies,
      release: () => this.registry.remove(rec.name, `migrated to ${p.to}${p.as !== undefined ? ` as ${p.as}` : ''}`),
      update: (s) => this.publish(rec.name, s.snapshot()),
      consoleOutput: () => this.registry.consoleOutput(rec.name),
      self: () => ({ url: this.selfUrl, incarnation: this.incarnation }),
      switchovers: this.switchovers,
    });
    rec.migrating = true;
    this.notePeer(p.to, 'to');
    this.outgoing.set(rec.name, m);
    this.remember(rec.name, m.stats);
    rec.log.info({ to: p.to, mode: p.mode, downtimeLimitMs: p.downtimeLimitMs, maxBandwidth: p.maxBandwidth }, 'migration starting');
    this.ended.set(m, m.run().finally(async () => {
      rec.migrating = false;
      if (this.outgoing.get(rec.name) === m) this.outgoing.delete(rec.name);
      this.ended.delete(m);
      // Split across the hosts and the link is gone: this copy must never run again.
      if (m.lost) await this.registry.remove(rec.name, 'lost in post-copy');
    }));
    return m.stats.snapshot();
  }

  status(name: string): MigrationInfo {
    const s = this.last.get(name);
    if (!s) throw new FerryError('ENOMIGRATION', `no migration of "${name}" is known on this host`);
    return s.snapshot();
  }

  /** `migrate start-postcopy`: a running hybrid migration switches at the end of its round. */
  startPostcopy(name: string): MigrationInfo {
    const m = this.outgoing.get(name);
    if (!m) throw new FerryError('ENOMIGRATION', `no outgoing migration of "${name}" is in progress on this host`);
    if (!m.startPostcopy()) {
      throw new FerryError('ESTATE', `the migration of "${name}" is not a hybrid migration still in pre-copy (start it with --mode hybrid)`);
    }
    return m.stats.snapshot();
  }

  /**
   * `migrate resolve`: the operator decides the outcome of a switch-over the source could not
   * learn (its link lost before the destination answered, and the destination unreachable).
   */
  resolve(name: string, decision: 'resume' | 'release'): MigrationInfo {
    const m = this.outgoing.get(name);
    if (!m) throw this.notTheSource(name, 'resolve');
    if (!m.resolve(decision)) {
      throw new FerryError('ESTATE', `the migration of "${name}" is ${m.stats.info.status}; only one whose outcome is unknown (outcome-unknown) can be resolved`);
    }
    return m.stats.snapshot();
  }

  /** `migrate recover`: a post-copy that lost its link reconnects now. */
  recover(name: string): MigrationInfo {
    const m = this.outgoing.get(name);
    if (!m) throw this.notTheSource(name, 'recover');
    if (!m.recover()) {
      throw new FerryError('ESTATE', `the migration of "${name}" is ${m.stats.info.status}; only a post-copy migration in postcopy-paused can be recovered`);
    }
    return m.stats.snapshot();
  }

  /**
   * `vm destroy` of a VM a migration holds. A VM still arriving (before its switch-over) is
   * dropped and the source, which keeps its guest, is told. A VM whose post-copy migration is
   * paused (its link lost) is given up: this side drops its half and reports the VM lost.
   * Undefined when no migration holds the VM that way (then destroy is refused or done as usual).
   */
  releaseForDestroy(name: string): Promise<void> | undefined {
    const out = this.outgoing.get(name);
    if (out && out.stats.info.status === 'postcopy-paused') {
      out.abandon('given up by the user (vm destroy) while post-copy was paused', 'EABANDONED');
      return this.ended.get(out);
    }
    for (const m of this.incoming.values()) {
      if (m.vmName !== name) continue;
      if (m.paused) return m.abandon('given up by the user (vm destroy) while post-copy was paused');
      const cancelled = m.cancelHere('destroyed on the destination (vm destroy) before the switch-over');
      if (cancelled) return cancelled;
    }
    return undefined;
  }

  /** `migrate pause`: drops the link of a post-copy migration on purpose; it waits for `migrate recover`. */
  pause(name: string): MigrationInfo {
    const m = this.outgoing.get(name);
    if (!m) throw this.notTheSource(name, 'pause');
    if (!m.pauseLink()) {
      throw new FerryError('ESTATE', `the migration of "${name}" is ${m.stats.info.status}; only a post-copy migration past its switch-over can be paused`);
    }
    return m.stats.snapshot();
  }

  /** The error for a command meant for the source host, sent elsewhere. */
  private notTheSource(name: string, verb: string): FerryError {
    for (const m of this.incoming.values()) {
      if (m.vmName === name && !m.finished) {
        return new FerryError('ENOMIGRATION', `"${name}" is arriving here from ${m.peer}: run "ferry migration ${verb}" against the source host`);
      }
    }
    return new FerryError('ENOMIGRATION', `no outgoing migration of "${name}" is in progress on this host`);
  }

  cancel(name: string): MigrationInfo {
    const m = this.outgoing.get(name);
    if (!m) throw new FerryError('ENOMIGRATION', `no outgoing migration of "${name}" is in progress on this host`);
    if (!m.cancel()) throw new FerryError('ESTATE', `the migration of "${name}" is past its switch-over; it can no longer be cancelled`);
    return m.stats.snapshot();
  }

  /** A `/migrate` connection after its hello: the bulk stream opens a migration, the priority channel joins it. */
  accept(ws: LinkSocket, hello: z.infer<typeof migrateHelloSchema>, peer: string): void {
    const { id } = hello;
    if (hello.role === 'bulk' && hello.recover === true) {
      // Answered once the source asks (its `recover`), so the answer cannot overtake the hello's end.
      const silent = setTimeout(() => closeWith(ws, 1008, 'no recover message'), this.incomingIdleMs);
      silent.unref();
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
        try {
          this.recoverIncoming(ws, id);
        } catch (e) {
          this.log.error({ err: e, id }, 'post-copy recovery failed unexpectedly');
          closeWith(ws, 1011, 'recovery failed');
        }
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
    let seenSetup = false;
    const m = new IncomingMigration(id, ws, peer, this.registry.maxMemory, this.log.child({ migration: 'in' }), {
      checkRoom: (setup) => this.registry.checkRoom(setup.as ?? setup.vm, setup.config.ramSize),
      reserve: (setup, vm) => this.registry.reserveIncoming(setup.as ?? setup.vm, setup.program, vm),
      adopt: (name, history, settling) => this.registry.adoptIncoming(name, history, settling),
      settled: (name) => this.registry.settleIncoming(name),
      probeSource: (url, name, incarnation) => this.probeSource(url, name, incarnation),
      discard: (name) => this.registry.remove(name, 'incoming migration failed'),
      update: (s) => {
        if (!seenSetup) {
          seenSetup = true;
          this.notePeer(m.sourceUrl(), 'from');
        }
        this.remember(s.info.vm, s);
        this.publish(s.info.vm, s.snapshot());
      },
      ended: (f) => this.incomingEnded(id, m, f),
    }, { idleMs: this.incomingIdleMs });
    this.incoming.set(id, m);
  }

  /**
   * An incoming migration is over: only its outcome is kept, for a source that asks later. One
   * that resumed the guest here is kept until its source has learned that (it closed the link
   * cleanly after `completed`, or asked); the others for FINISHED_KEPT_MS at most.
   */
  private incomingEnded(id: string, m: IncomingMigration, f: FinishedIncoming): void {
    if (this.incoming.get(id) === m) this.incoming.delete(id);
    const now = performance.now();
    this.finished.set(id, Object.assign(f, { at: now }));
    if (!f.postcopy && f.stats?.info.status === 'completed') {
      this.tellSource(id, f).catch((e: unknown) => this.log.error({ err: e, id }, 'telling the source how its migration ended failed unexpectedly'));
    }
    for (const [k, v] of this.finished) {
      const mustKeep = !v.acknowledged && (v.postcopy || v.stats?.info.status === 'completed') && this.finished.size <= FINISHED_UNACKNOWLEDGED_MAX;
      if (mustKeep) continue;
      if (this.finished.size > FINISHED_KEPT || now - v.at > FINISHED_KEPT_MS) this.finished.delete(k);
    }
  }

  /**
   * A source that lost its link at the switch-over asks how the migration ended here (once it
   * has said `query`, so the answer cannot overtake the hello's end).
   */
  private answerQuery(ws: LinkSocket, id: string): void {
    const silent = setTimeout(() => closeWith(ws, 1008, 'no query message'), this.incomingIdleMs);
    silent.unref();
    ws.once('message', (data: Buffer, isBinary: boolean) => {
      clearTimeout(silent);
      try {
        const m = isBinary ? decodeMsg(data) : undefined;
        if (m?.t !== 'query') {
          closeWith(ws, 1002, 'expected query on a query link');
          return;
        }
        const answer = queryAnswer(this.incoming.get(id), this.finished.get(id));
        ws.send(encodeMsg(answer));
        closeWith(ws, 1000, 'query answered');
      } catch (e) {
        this.log.error({ err: e, id }, 'answering a migration query failed unexpectedly');
        closeWith(ws, 1011, 'query failed');
      }
    });
  }

  /**
   * The guest resumed here (pre-copy or cold) and the source has not learned it yet: its link may
   * have been lost with `completed`, leaving it paused in outcome-unknown. It asks us over fresh
   * links; where it cannot reach us and we can reach it (a one-way path), we tell it on its
   * control API, backing off, until it knows (a clean close, its query, or our word), it turns out
   * restarted or no longer sending that VM, the host stops, or TELL_FOR_MS pass.
   */
  private async tellSource(id: string, f: FinishedIncoming): Promise<void> {
    const to = f.source;
    if (to === undefined || f.vm === undefined) return;
    const until = performance.now() + TELL_FOR_MS;
    const backoff = new Backoff(TELL_FIRST_MS, TELL_MAX_MS);
    for (;;) {
      if (!(await this.wait(backoff.next())) || f.acknowledged) return;
      if (performance.now() > until) {
        this.log.warn({ vm: f.vm, source: to.url }, 'the source never learned that the VM resumed here; it stays paused there until it asks or its operator resolves it');
        return;
      }
      const told = await this.tellCompleted(to.url, to.incarnation, f.vm, id);
      if (told === undefined) continue;
      f.acknowledged = true;
      this.log[told.startsWith('!') ? 'error' : 'info']({ vm: f.vm, source: to.url, told: told.replace(/^!/, '') }, 'told the source that the VM resumed here');
      return;
    }
  }

  /** One attempt: what the source answered ('!' first if it is bad news), or undefined if it could not be reached. */
  private async tellCompleted(url: string, incarnation: string | undefined, name: string, id: string): Promise<string | undefined> {
    let c: ControlClient | undefined;
    try {
      c = await ControlClient.connect(url, { client: 'ferry-outcome-report', timeoutMs: PEER_REQUEST_MS, ...this.credentials });
      if (incarnation !== undefined && c.incarnation !== incarnation) return 'the source host was restarted: its paused copy died with it';
      const s = await c.request<MigrationInfo>('migrate.outcome', { name, id, outcome: 'completed' }, PEER_REQUEST_MS);
      if (s.status === 'completed') return 'it released its paused copy';
      if (s.status === 'failed' || s.status === 'cancelled') return `!the source had already resumed its own copy (${s['error-desc'] ?? s.status}): two copies may run`;
      return undefined; // still waiting for our `completed` on the link: it will get it, or ask, or hear from us again
    } catch (e) {
      if ((e as FerryError).code === 'ENOMIGRATION') return 'it no longer sends that VM (it learned the outcome, or was restarted)';
      return undefined;
    } finally {
      await c?.close().catch(() => undefined);
    }
  }

  /** Sleeps `ms`; false if the host stopped meanwhile. */
  private wait(ms: number): Promise<boolean> {
    const signal = this.stopping.signal;
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve(!signal.aborted);
      };
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', done);
        done();
      }, ms);
      timer.unref();
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /**
   * `migrate.outcome`, from a destination host: it resumed the guest of `name` (migration `id`).
   * A source waiting in outcome-unknown releases its paused copy; in any case the answer is this
   * migration's status.
   */
  outcomeFromDestination(name: string, id: string): MigrationInfo {
    const m = this.outgoing.get(name);
    if (!m || m.id !== id) throw new FerryError('ENOMIGRATION', `no outgoing migration ${id} of "${name}" is in progress on this host`);
    if (m.destinationCompleted()) this.log.info({ vm: name }, 'the destination says it resumed the VM');
    return m.stats.snapshot();
  }

  /** A source reconnecting a post-copy migration that lost its link. */
  private recoverIncoming(ws: LinkSocket, id: string): void {
    const m = this.incoming.get(id);
    if (m) {
      m.recover(ws);
      return;
    }
    const answer = recoveryAnswer(this.finished.get(id));
    ws.send(encodeMsg(answer));
    closeWith(ws, 1000, 'migration over');
  }

  /**
   * The host is stopping: outgoing migrations are cancelled (in post-copy: the VM is lost, and
   * said so); resolves when they have ended (at most a few seconds).
   */
  async cancelAll(): Promise<void> {
    this.stopping.abort();
    for (const m of this.outgoing.values()) m.abandon('host shutting down');
    for (const m of this.incoming.values()) m.shutdown();
    const ended = Promise.all(this.ended.values());
    await Promise.race([ended, new Promise((r) => setTimeout(r, 3_000).unref())]);
  }

  /**
   * Asks a source host whether a post-copy migration it sends still lives there: 'gone' when it
   * answers and is another incarnation of its host (restarted), no longer knows the migration,
   * or has given the guest up; 'alive' when it answers that it still serves it; 'unknown' when it
   * cannot be reached (refused, unreachable, silent: none of that says anything about the host).
   */
  async probeSource(url: string, name: string, incarnation: string | undefined): Promise<{ verdict: 'gone' | 'alive' | 'unknown'; why: string }> {
    let c: ControlClient | undefined;
    try {
      c = await ControlClient.connect(url, { client: 'ferry-postcopy-probe', timeoutMs: PEER_REQUEST_MS, ...this.credentials });
      if (incarnation !== undefined && c.incarnation !== incarnation) return { verdict: 'gone', why: `the source host ${url} was restarted: the guest's pages there died with it` };
      const s = await c.request<MigrationInfo>('migrate.status', { name }, PEER_REQUEST_MS);
      if (s.direction !== 'outgoing') return { verdict: 'gone', why: `the source host ${url} no longer sends "${name}"` };
      if (s.status === 'failed' || s.status === 'cancelled') return { verdict: 'gone', why: `the source host ${url} gave the migration up: ${s['error-desc'] ?? s.status}` };
      return { verdict: 'alive', why: `the source host ${url} reports ${s.status}` };
    } catch (e) {
      const err = e as FerryError;
      if (err.code === 'ENOMIGRATION') return { verdict: 'gone', why: `the source host ${url} knows no migration of "${name}" (restarted?)` };
      return { verdict: 'unknown', why: err.message };
    } finally {
      await c?.close().catch(() => undefined);
    }
  }
}
