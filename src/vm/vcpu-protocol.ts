import type { GuestMemoryBuffers } from '../memory/guest-memory.ts';
import type { MessagePort } from 'node:worker_threads';
import type { ControlBuffers } from './control-block.ts';
import type { DeviceStates, MachineConfig } from './machine.ts';

/** workerData for a vCPU thread: shared buffers plus plain configuration. */
export interface VcpuInit {
  memory: GuestMemoryBuffers;
  cpu: SharedArrayBuffer;
  control: ControlBuffers;
  config: MachineConfig;
  /** Device state to restore; absent for a fresh boot. */
  devices?: DeviceStates;
  /** Halt after this many retired instructions in total; 0 = no limit. */
  insnLimit: number;
  /** Start already halted (a powered-off guest that was migrated). */
  halted?: HaltInfo;
  /** Where the host posts a RestoreMessage before a restore request. */
  statePort: MessagePort;
  /** Where the host posts incoming page frames (Uint8Array) during a migration. */
  pagesPort: MessagePort;
}

export interface HaltInfo {
  exitCode: number;
  reason: string;
}

/** Device state (and halt status) for a Restore; the CPU words travel in the shared state. */
export interface RestoreMessage {
  devices: DeviceStates;
  halted?: HaltInfo;
}

/** Messages the vCPU thread posts to its host. */
export type VcpuMessage =
  | { type: 'console'; data: Uint8Array }
  /** Answers command `seq` (modulo 2^28, see HostControlBlock.answered): the vCPU is paused. */
  | { type: 'paused'; seq: number; devices: DeviceStates; instret: number }
  | { type: 'halted'; exitCode: number; reason: string; devices: DeviceStates; instret: number }
  | { type: 'exited' }
  /** Post-copy: the vCPU touched a page that is not here yet and waits for it. */
  | { type: 'fault'; page: number }
  | { type: 'fatal'; message: string };
