/**
 * One running fuzz case: the CaseContext a strategy drives. It counts frames, owns the
 * connections it opened (closed when the case ends, unless parked), and can be cancelled (its
 * deadline, the host dying, the run being interrupted).
 */
import { FuzzConn } from './conn.ts';
import { encode } from './msgpack.ts';
import type { Parking } from './parking.ts';
import { openRaw, type RawSocket } from './raw.ts';
import type { StrategyStats } from './report.ts';
import type { Rng } from './rng.ts';
import type { Slot } from './slot.ts';
import type { CaseContext, HelloResult, Strategy, Surface, TargetInfo } from './strategies/types.ts';
import { frameKeys, macFor, nonce, versionFrom, type AuthMode, type Path } from './wire.ts';

/** What every case of one fixture shares. */
export interface CaseEnv {
  target: TargetInfo;
  surfaces: readonly Surface[];
  parking: Parking;
  liveMigrationIds: Set<string>;
  heavy: Slot;
  /** Counts one frame sent (run-wide). */
  countFrame(): void;
  /** The host under fuzz is still running. */
  alive(): boolean;
}

export class CaseCancelled extends Error {
  constructor(reason: string) {
    super(`case cancelled: ${reason}`);
  }
}

interface Owned {
  terminate(): void;
}

export class CaseRun implements CaseContext {
  private readonly owned = new Set<Owned>();
  private cancelReason: string | undefined;
  private readonly cancelWaiters = new Set<(e: Error) => void>();
  private holdsHeavy = false;
  private finished = false;
  private markCancelled: () => void = () => {};
  /** Resolves when the case is cancelled. */
  readonly whenCancelled = new Promise<void>((resolve) => { this.markCancelled = resolve; });
  readonly liveMigrationIds: Set<string>;
  readonly target: TargetInfo;

  constructor(
    readonly index: number,
    readonly rng: Rng,
    readonly strategy: Strategy,
    private readonly env: CaseEnv,
    private readonly stats: StrategyStats,
  ) {
    this.liveMigrationIds = env.liveMigrationIds;
    this.target = env.target;
  }

  get cancelled(): boolean {
    return this.cancelReason !== undefined;
  }

  /** When this case last sent something (ms epoch; 0: never). */
  lastSendAt = 0;
  /** Endpoints it spoke to through WebSockets ('raw' for raw TCP, whose path it chose itself). */
  readonly endpoints = new Set<string>();

  private count(n = 1): void {
    this.stats.frames += n;
    for (let i = 0; i < n; i++) this.env.countFrame();
    this.lastSendAt = Date.now();
  }

  private check(): void {
    if (this.cancelReason !== undefined) throw new CaseCancelled(this.cancelReason);
  }

  path(): Path {
    const s = this.env.surfaces;
    if (s.includes('control') && s.includes('migrate')) return this.rng.chance(0.5) ? '/control' : '/migrate';
    return s.includes('migrate') ? '/migrate' : '/control';
  }

  auth(): AuthMode {
    if (this.target.token === undefined) return this.rng.chance(0.9) ? 'valid' : 'wrong';
    return this.rng.weighted([['valid', 6], ['none', 2], ['wrong', 2]] as const);
  }

  freshName(prefix = 'fz'): string {
    return `${prefix}-${this.index}-${this.rng.u32().toString(36)}`;
  }

  otherAddress(): string {
    return `127.0.0.${this.rng.range(2, 50)}`;
  }

  async connect(path: Path, o: { localAddress?: string } = {}): Promise<FuzzConn> {
    this.check();
    this.endpoints.add(path);
    const conn = await FuzzConn.open(`${this.target.url}${path}`, {
      localAddress: o.localAddress ?? '127.0.0.1', timeoutMs: 3000, onSend: () => this.count(),
    });
    this.owned.add(conn);
    if (this.cancelled) {
      conn.terminate();
      this.check();
    }
    return conn;
  }

  async hello(conn: FuzzConn, path: Path, auth: AuthMode, extra: Record<string, unknown> = {}): Promise<HelloResult> {
    const hello = await conn.nextMsg(2000, 'hello');
    this.check();
    const ours = nonce();
    const msg = {
      t: 'hello', v: versionFrom(hello, path), nonce: ours,
      ...(path === '/control' ? { client: 'ferry-fuzz' } : {}),
      ...macFor(auth, path, this.target.token, hello?.challenge, this.rng),
      ...extra,
    };
    // In with the token over plain TCP: from the host's `ready` on every message is tagged, so what
    // the fuzzer sends next reaches the host's decoders as an authenticated peer's would.
    const challenge = hello?.challenge;
    if (this.target.token !== undefined && challenge instanceof Uint8Array && msg.nonce === ours) {
      conn.tagAfterReady(frameKeys(this.target.token, 'client', path, challenge, ours));
    }
    conn.send(encode(msg));
    const ready = await conn.nextMsg(2000, 'ready');
    return { ready: ready !== undefined, hello };
  }

  async connectReady(path: Path, extra: Record<string, unknown> = {}): Promise<FuzzConn | undefined> {
    const conn = await this.connect(path);
    const r = await this.hello(conn, path, 'valid', extra);
    if (!r.ready) {
      // The host may well refuse a priority channel or a recovery; a plain client or bulk stream it should let in.
      const plain = path === '/control' || (extra.role === 'bulk' && extra.recover === undefined);
      this.note(plain ? `!no-ready:${path}` : `no-ready:${String(extra.role)}`);
      conn.terminate();
      return undefined;
    }
    return conn;
  }

  async raw(o: { localAddress?: string } = {}): Promise<RawSocket> {
    this.check();
    this.endpoints.add('raw');
    const sock = await openRaw(this.target.host, this.target.port, { localAddress: o.localAddress ?? '127.0.0.1', timeoutMs: 3000 });
    const owned = { terminate: () => sock.sock.destroy() };
    this.owned.add(owned);
    (sock as RawSocket & { owned?: Owned }).owned = owned;
    if (this.cancelled) {
      sock.sock.destroy();
      this.check();
    }
    return sock;
  }

  write(sock: RawSocket, data: Uint8Array | string, frames = 1): void {
    if (sock.isClosed() || sock.sock.destroyed) return;
    this.count(frames);
    sock.sock.write(data);
  }

  park(c: FuzzConn | RawSocket, kind: string): void {
    if (c instanceof FuzzConn) {
      this.owned.delete(c);
      this.env.parking.add({ close: () => c.terminate(), isClosed: () => c.closedWith !== undefined, closed: c.closed }, kind, this.env.alive);
      return;
    }
    const owned = (c as RawSocket & { owned?: Owned }).owned;
    if (owned) this.owned.delete(owned);
    this.env.parking.add({ close: () => c.sock.destroy(), isClosed: () => c.isClosed(), closed: c.closed }, kind, this.env.alive);
  }

  async heavy(): Promise<void> {
    if (this.holdsHeavy) return;
    this.check();
    await this.env.heavy.acquire();
    if (this.finished || this.cancelled) {
      // Given up while waiting for the slot: pass it on at once.
      this.env.heavy.release();
      throw new CaseCancelled(this.cancelReason ?? 'finished');
    }
    this.holdsHeavy = true;
  }

  sleep(ms: number): Promise<void> {
    this.check();
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        this.cancelWaiters.delete(onCancel);
        resolve();
      }, ms);
      const onCancel = (e: Error) => {
        clearTimeout(t);
        reject(e);
      };
      this.cancelWaiters.add(onCancel);
    });
  }

  note(variant: string): void {
    if (variant.startsWith('!')) {
      const k = variant.slice(1);
      this.stats.anomalies[k] = (this.stats.anomalies[k] ?? 0) + 1;
    } else {
      this.stats.variants[variant] = (this.stats.variants[variant] ?? 0) + 1;
    }
  }

  /** Stops the case: its connections close, its sleeps throw. */
  cancel(reason: string): void {
    if (this.cancelReason !== undefined) return;
    this.cancelReason = reason;
    this.markCancelled();
    const e = new CaseCancelled(reason);
    for (const w of [...this.cancelWaiters]) w(e);
    this.cancelWaiters.clear();
    this.closeOwned();
  }

  private closeOwned(): void {
    for (const o of this.owned) o.terminate();
    this.owned.clear();
  }

  /** The case is over: connections it did not park close; the heavy slot is given back. */
  finish(): void {
    this.finished = true;
    this.closeOwned();
    if (this.holdsHeavy) {
      this.holdsHeavy = false;
      this.env.heavy.release();
    }
  }
}
