/** What a fuzz strategy is, and what a running case may do (connect, send, park, wait). */
import type { FuzzConn } from '../conn.ts';
import type { RawSocket } from '../raw.ts';
import type { Rng } from '../rng.ts';
import type { AuthMode, Path } from '../wire.ts';

export type Surface = 'control' | 'migrate';

export interface TargetInfo {
  /** ws://127.0.0.1:PORT of the host under fuzz. */
  url: string;
  host: string;
  port: number;
  token: string | undefined;
  /** The fixture's VMs: never driven by destructive methods. */
  vms: readonly string[];
  postcopyVm: string;
  /** The control URL of host A (the post-copy's source). */
  sourceUrl: string;
}

export interface HelloResult {
  /** The host answered `ready`. */
  ready: boolean;
  /** The host's hello (challenge, version), if it sent one. */
  hello: Record<string, unknown> | undefined;
}

export interface CaseContext {
  readonly rng: Rng;
  readonly index: number;
  readonly target: TargetInfo;
  /** Ids of this run's own fuzz migrations whose bulk stream is open (for prio/recover hellos). */
  readonly liveMigrationIds: Set<string>;
  /** A path on an allowed surface (control and/or migrate, as the run was asked). */
  path(): Path;
  /** How to answer the challenge: mostly with the right mac when there is a token. */
  auth(): AuthMode;
  /** A fresh random name (for VMs and migration ids the fixture does not own). */
  freshName(prefix?: string): string;
  /** A loopback source address other than 127.0.0.1 (127.0.0.2 .. 127.0.0.50). */
  otherAddress(): string;
  /** Opens a WebSocket on `path`; closed when the case ends unless parked. */
  connect(path: Path, o?: { localAddress?: string }): Promise<FuzzConn>;
  /** Waits for the host's hello and answers it with ours (`extra` fields merged over a valid one). */
  hello(conn: FuzzConn, path: Path, auth: AuthMode, extra?: Record<string, unknown>): Promise<HelloResult>;
  /** connect + hello with the right mac; undefined if the host did not get to ready. */
  connectReady(path: Path, extra?: Record<string, unknown>): Promise<FuzzConn | undefined>;
  /** A raw TCP connection to the host; closed when the case ends unless parked. */
  raw(o?: { localAddress?: string }): Promise<RawSocket>;
  /** Writes raw bytes, counted as `frames` frames (default 1). */
  write(sock: RawSocket, data: Uint8Array | string, frames?: number): void;
  /** Hands a connection over to the idle pool: it stays open after the case, until the host closes it. */
  park(c: FuzzConn | RawSocket, kind: string): void;
  /**
   * Takes the run's single slot for work that makes the host start a vCPU thread (a valid
   * migration setup); released when the case ends.
   */
  heavy(): Promise<void>;
  /** Sleeps; throws when the case is cancelled meanwhile. */
  sleep(ms: number): Promise<void>;
  /** Records which variant of the strategy ran (reported per strategy). */
  note(variant: string): void;
  readonly cancelled: boolean;
}

export interface Strategy {
  name: string;
  /** Surfaces it can attack; a run limited to one surface skips the others' strategies. */
  surfaces: readonly Surface[];
  /** Relative share of cases. */
  weight: number;
  /** Per-case deadline (default 8 s). */
  deadlineMs?: number;
  /**
   * Its cases may make the host start a vCPU thread (valid setups, created VMs): the run keeps
   * only a couple of them in flight, so they never hold up the light cases.
   */
  heavy?: boolean;
  run(ctx: CaseContext): Promise<void>;
}
