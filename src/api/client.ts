/**
 * Ferry as a library: a typed client of one host's control API, and a handle on each migration it
 * starts, with QEMU-style events (events.ts) and the statistics of QEMU's query-migrate.
 */
import { EventEmitter } from 'node:events';
import { FerryError } from '../errors.ts';
import type { PeerHost } from '../host/migrations.ts';
import type { PageMapSnapshot, VmSummary } from '../host/registry.ts';
import { FINAL_STATUSES, type MigrationInfo } from '../migration/stats.ts';
import { ControlClient } from '../wire/control-client.ts';
import type { TlsTrust } from '../wire/tls.ts';
import { MigrationEventStream, type MigrationEvent, type MigrationEventType } from './events.ts';

export type { MigrationInfo, RoundInfo, MigrationStatus } from '../migration/stats.ts';
export type { VmSummary, PageMapSnapshot } from '../host/registry.ts';
export type { PeerHost } from '../host/migrations.ts';
export { PAGE_CODES } from '../vm/page-map.ts';
export type { MigrationEvent, MigrationEventType } from './events.ts';

export interface ConnectOptions {
  /** The cluster token, when the host requires one. */
  token?: string;
  /** For wss://: the CA to verify the host against, and this side's certificate if the host asks for one (PEM). */
  tls?: TlsTrust;
  /** How the host names this client in its log (default "ferry-api"). */
  clientName?: string;
}

export interface CreateVmOptions {
  name: string;
  /** A built guest (hello, counter, memstress, sieve, life, echo) ... */
  program?: string;
  /** ... or an RV32 ELF's bytes. */
  elf?: Uint8Array;
  /** Guest RAM in bytes (a 4 KiB multiple). */
  memory: number;
  /** Deterministic mode: guest time from retired instructions. */
  icount?: boolean;
  /** Halt after exactly this many instructions (0: never). */
  insnLimit?: number;
  /** Boot arguments, "key=value" each. */
  args?: string[];
  /** Start it at once (default: created, not running). */
  start?: boolean;
}

/** Every option `ferry migrate` has (the host's defaults where one is left out: QEMU's, see the README). */
export interface MigrateOptions {
  /** The destination host: ws://HOST:PORT or wss://. */
  to: string;
  mode?: 'precopy' | 'postcopy' | 'hybrid' | 'cold';
  /** The VM's name on the destination. */
  as?: string;
  downtimeLimitMs?: number;
  /** Bytes per second; 0 = unlimited. */
  maxBandwidth?: number;
  maxRounds?: number;
  switchoverAtMaxRounds?: boolean;
  autoConverge?: boolean;
  postcopyAfterRounds?: number;
  /** Post-copy: hold the background push back this long (demand paging only until then). */
  pushDelayMs?: number;
  autoRecover?: boolean;
  giveUpAfterMs?: number;
  xbzrle?: 'auto' | 'on' | 'off';
  compress?: 'auto' | 'on' | 'off';
  xbzrleCacheBytes?: number;
  /** A convergence policy the source host knows, by name ('default', 'predictive', or one of its own). */
  convergencePolicy?: string;
  /** A post-copy push order the source host knows, by name ('default', 'near-pc', or one of its own). */
  pushOrder?: string;
}

export interface HostInfo {
  name: string;
  /** Control protocol version, and Ferry's. */
  version: number;
  ferry: string;
  /** The URL other hosts reach it at (null until it listens). */
  url: string | null;
  vms: number;
  memoryUsed: number;
  memoryLimit: number;
  peers: PeerHost[];
}

/** How often a handle asks for the statistics itself, should an event be lost. */
const POLL_MS = 500;

/**
 * One outgoing migration, as its source host reports it. Emits each MigrationEvent by its type
 * ('setup', 'pass', 'switchover', ..., 'completed') and all of them as 'event'. `done` settles
 * when it ends: resolved with the final statistics whatever the outcome (see `status`), rejected
 * only if the connection to the source host is lost first.
 */
type MigrationEmits = { [K in MigrationEventType | 'event']: [MigrationEvent] } & {
  /** Every statistics update seen (each before the events it brings). */
  update: [MigrationInfo];
};

export class Migration extends EventEmitter<MigrationEmits> {
  readonly done: Promise<MigrationInfo>;
  private latest: MigrationInfo | undefined;
  private readonly stream = new MigrationEventStream();
  /** Every event so far, in order (one emitted before a listener was attached is still here). */
  readonly history: MigrationEvent[] = [];
  private poll: NodeJS.Timeout | undefined;
  private finish: (err: Error | undefined, info?: MigrationInfo) => void = () => {};

  /** Listens at once (no event of the migration about to start is missed); `begin` once it has started. */
  constructor(private readonly c: ControlClient, readonly vm: string) {
    super();
    this.done = new Promise((resolve, reject) => {
      let settled = false;
      this.finish = (err, info) => {
        if (settled) return;
        settled = true;
        clearInterval(this.poll);
        c.off('event', onEvent);
        c.off('close', onClose);
        if (err) reject(err);
        else resolve(info!);
      };
      const onEvent = (event: string, name: string | undefined, data: unknown) => {
        if (event === 'migration' && name === vm) this.see(data as MigrationInfo);
      };
      const onClose = (e: Error) => this.finish(e);
      c.on('event', onEvent);
      c.on('close', onClose);
    });
    this.done.catch(() => undefined); // (a caller that never awaits it is not an unhandled rejection)
  }

  /** The host accepted the migration: from now on its status is also asked for (an event may be lost). */
  begin(): void {
    this.poll = setInterval(() => { this.c.request<MigrationInfo>('migrate.status', { name: this.vm }).then((i) => this.see(i), () => undefined); }, POLL_MS);
  }

  /** Stops following it (the start was refused, or the caller has seen enough): `done` rejects with `e`. */
  abandon(e: Error): void {
    this.finish(e);
  }

  private see(info: MigrationInfo): void {
    if (info.direction !== 'outgoing' || info.vm !== this.vm || this.latest !== undefined && FINAL_STATUSES.includes(this.latest.status)) return;
    this.latest = info;
    this.emit('update', info);
    for (const e of this.stream.next(info)) {
      this.history.push(e);
      this.emit(e.type, e);
      this.emit('event', e);
    }
    if (FINAL_STATUSES.includes(info.status)) this.finish(undefined, info);
  }

  /**
   * Resolves with the first event of `type` (already in `history`, or to come); rejects when the
   * migration ends without one, or after `timeoutMs`.
   */
  until(type: MigrationEventType, timeoutMs = 60_000): Promise<MigrationEvent> {
    const seen = this.history.find((e) => e.type === type);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new FerryError('ETIMEDOUT', `no ${type} event for the migration of "${this.vm}" within ${timeoutMs} ms`)), timeoutMs);
      const onEvent = (e: MigrationEvent) => {
        if (e.type === type) done(undefined, e);
        else if (e.type === 'completed' || e.type === 'failed' || e.type === 'cancelled') done(new FerryError('ESTATE', `the migration of "${this.vm}" ended (${e.type}) without a ${type} event`));
      };
      const done = (err: Error | undefined, e?: MigrationEvent) => {
        clearTimeout(timer);
        this.off('event', onEvent);
        if (err) reject(err);
        else resolve(e!);
      };
      this.on('event', onEvent);
      this.done.catch((err: Error) => done(err));
    });
  }

  /** The statistics last seen (undefined before the first). */
  get status(): MigrationInfo | undefined {
    return this.latest;
  }

  /** Asks the source host now. */
  refresh(): Promise<MigrationInfo> {
    return this.c.request<MigrationInfo>('migrate.status', { name: this.vm });
  }

  /** Cancels before the switch-over (after it, fails with ESTATE: the destination runs the guest). */
  async cancel(): Promise<void> {
    await this.c.request('migrate.cancel', { name: this.vm });
  }

  /** Hybrid: switch to post-copy at the end of the current round. */
  async startPostcopy(): Promise<void> {
    await this.c.request('migrate.start-postcopy', { name: this.vm });
  }

  /** Post-copy: drop the link on purpose; it stays postcopy-paused until `recover`. */
  async pause(): Promise<void> {
    await this.c.request('migrate.pause', { name: this.vm });
  }

  /** Post-copy: reconnect a paused migration now. */
  async recover(): Promise<void> {
    await this.c.request('migrate.recover', { name: this.vm });
  }

  /** outcome-unknown: the operator's decision (release: the destination runs it; resume: it does not). */
  async resolve(decision: 'release' | 'resume'): Promise<void> {
    await this.c.request('migrate.resolve', { name: this.vm, decision });
  }
}

/** A connection to one host's control API (`/control`). */
export class FerryClient {
  private constructor(readonly url: string, private readonly c: ControlClient) {}

  static async connect(url: string, o: ConnectOptions = {}): Promise<FerryClient> {
    const c = await ControlClient.connect(url, {
      client: o.clientName ?? 'ferry-api',
      ...(o.token !== undefined ? { token: o.token } : {}),
      ...(o.tls !== undefined ? { tls: o.tls } : {}),
    });
    return new FerryClient(url, c);
  }

  createVm(o: CreateVmOptions): Promise<VmSummary> {
    return this.c.request<VmSummary>('vm.create', { ...o });
  }

  listVms(): Promise<VmSummary[]> {
    return this.c.request<VmSummary[]>('vm.list');
  }

  vmInfo(name: string): Promise<VmSummary> {
    return this.c.request<VmSummary>('vm.info', { name });
  }

  startVm(name: string): Promise<VmSummary> {
    return this.c.request<VmSummary>('vm.start', { name });
  }

  pauseVm(name: string): Promise<VmSummary> {
    return this.c.request<VmSummary>('vm.pause', { name });
  }

  resumeVm(name: string): Promise<VmSummary> {
    return this.c.request<VmSummary>('vm.resume', { name });
  }

  /** Stops the guest for good (it can be destroyed or inspected, not resumed). */
  stopVm(name: string): Promise<VmSummary> {
    return this.c.request<VmSummary>('vm.stop', { name });
  }

  async destroyVm(name: string): Promise<void> {
    await this.c.request('vm.destroy', { name });
  }

  /** SHA-256 over RAM, CPU and device state (a running VM is paused for it, then resumed). */
  async digest(name: string): Promise<string> {
    return (await this.c.request<{ digest: string }>('vm.digest', { name })).digest;
  }

  /** Resolves once `name` has halted (an --insn-limit reached, the guest powered off), with its summary. */
  async waitHalted(name: string, timeoutMs = 60_000): Promise<VmSummary> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const v = await this.vmInfo(name);
      if (v.state === 'halted') return v;
      if (performance.now() > deadline) throw new FerryError('ETIMEDOUT', `VM "${name}" did not halt within ${timeoutMs} ms (it is ${v.state})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Starts migrating `name` away; the handle follows it (await `migration.done` for the outcome). */
  async migrate(name: string, o: MigrateOptions): Promise<Migration> {
    const m = new Migration(this.c, name);
    try {
      await this.c.request<MigrationInfo>('migrate.start', { name, ...o });
    } catch (e) {
      m.abandon(e as Error);
      throw e;
    }
    m.begin();
    return m;
  }

  /** The host: its name, URL, version, VMs and memory, and the hosts it has migrated with. */
  hostInfo(): Promise<HostInfo> {
    return this.c.request<HostInfo>('host.info');
  }

  /** The VM's page map: one code per page (PAGE_CODES: never written, clean, dirty, queued, in flight, missing, faulted, waiting) and the vCPU's counters. */
  async pageMap(name: string): Promise<PageMapSnapshot & { map: Uint8Array }> {
    return this.c.request<PageMapSnapshot & { map: Uint8Array }>('vm.pagemap', { name });
  }

  /** The current or last migration of `name` on this host (either direction). */
  migrationStatus(name: string): Promise<MigrationInfo> {
    return this.c.request<MigrationInfo>('migrate.status', { name });
  }

  close(): Promise<void> {
    return this.c.close();
  }
}
