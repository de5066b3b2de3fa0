import type { GuestMemoryBuffers } from '../memory/guest-memory.ts';
import type { DeviceStates, MachineConfig } from './machine.ts';

/** workerData for a vCPU thread: shared buffers plus plain configuration. */
export interface VcpuInit {
  memory: GuestMemoryBuffers;
  cpu: SharedArrayBuffer;
  control: SharedArrayBuffer;
  rx: SharedArrayBuffer;
  config: MachineConfig;
  /** Device state to restore; absent for a fresh boot. */
  devices?: DeviceStates;
  /** Halt after this many retired instructions in total; 0 = no limit. */
  insnLimit: number;
}

/** Messages the vCPU thread posts to its host. */
export type VcpuMessage =
  | { type: 'console'; data: Uint8Array }
  | { type: 'paused'; seq: number; devices: DeviceStates; instret: number }
  | { type: 'halted'; exitCode: number; reason: string; devices: DeviceStates; instret: number }
  | { type: 'exited' }
  | { type: 'fatal'; message: string };
