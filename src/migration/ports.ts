/**
 * What the migration engine needs of a VM, on each side: narrow ports the host's Vm satisfies,
 * and a test's fake can, so both state machines run without threads, processes or sockets.
 */
import type { MachineConfig } from '../vm/machine.ts';
import type { VmState, VmStateExport } from '../vm/vm.ts';
import type { RunState } from './protocol.ts';

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
}

export type { RunState };
