/**
 * What the migration engine needs of a VM, on each side: narrow ports the host's Vm satisfies,
 * and a test's fake can, so both state machines run without threads, processes or sockets.
 */
import type { MachineConfig } from '../vm/machine.ts';
import type { VmState, VmStateExport } from '../vm/vm.ts';
import type { RunState, SetupMsg } from './protocol.ts';

/** Guest memory as the source reads it. */
export interface SourceMemory {
  readonly ram: Uint8Array;
  readonly pages: number;
  readonly size: number;
  readonly pageState: Int32Array;
  firstWriteCount(): number;
  firstWritesSince(since: number): Uint32Array | undefined;
}

/** The VM a source migrates. */
export interface SourceVm {
  readonly memory: SourceMemory;
  readonly state: VmState;
  readonly config: MachineConfig;
  readonly insnLimit: number;
  pause(): Promise<void>;
  resume(): void;
  setThrottle(percent: number): void;
  /** One dirty-log round with the vCPU running: the pages dirtied since the last. */
  syncDirty(): Promise<Uint32Array>;
  /** With the vCPU stopped: every page dirtied since the last sync. */
  dirtyWhileStopped(): Uint32Array;
  /** With the vCPU stopped: the pages dirtied since the last sync whose bit in `known` is clear. */
  dirtyWhileStoppedExcept(known: Uint8Array): ArrayLike<number>;
  exportState(): VmStateExport;
  /** The pc the vCPU last published (the control block's PC word: a slice old while it runs). */
  readonly publishedPc: number;
}

export type { RunState };

/** Guest memory as the destination fills it. */
export interface DestinationMemory {
  readonly ram: Uint8Array;
  readonly pages: number;
  readonly pageState: Int32Array;
}

/**
 * The VM a destination builds (not started) and fills: page frames go to its vCPU thread, the
 * state section restores (and resumes) it, and in post-copy its vCPU reports faults
 * (`on('fault', page)`) and writes pushed frames while it runs.
 */
export interface DestinationVm {
  readonly memory: DestinationMemory;
  readonly state: VmState;
  postPageFrame(frame: Uint8Array, owned?: boolean): void;
  pageFramesPending(): number;
  pageFramesDone(): number;
  /** Resolves when more than `seen` frames are written, after `ms`, or when the VM goes. */
  pageFramesDoneAfter(seen: number, ms: number): Promise<void>;
  /** Post-copy: from the restore on, posted frames fill missing pages while the guest runs. */
  acceptPostcopyPages(): void;
  pagesFilled(): number;
  wakeVcpu(): void;
  traps(): number;
  blockedMs(): number;
  /** Each blocked trap's wait, counted in vm/latency-histogram.ts buckets. */
  blockedHistogram(): number[];
  on(event: 'fault', listener: (page: number) => void): unknown;
  restore(st: VmStateExport, run: RunState, onRunning?: () => void): Promise<void>;
  destroy(): Promise<void>;
}

/** Builds the destination's VM for a setup, and what it holds until the migration ends (released once). */
export type NewDestinationVm<V extends DestinationVm> = (setup: SetupMsg) => { vm: V; release: () => void };
