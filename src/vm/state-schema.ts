/**
 * What a valid exported VM state is (VM_STATE_VERSION 2), as the destination of a migration
 * checks it before it acknowledges anything: every device register within its width, the clock
 * in the VM's mode, CPU words the executor could have produced. State from our own `exportState`
 * always passes; anything else fails here, while the source still owns the guest.
 */
import { z } from 'zod';
import { CPU_STATE_WORDS, cpuStateProblem } from '../cpu/state.ts';
import { MAX_RAM_SIZE, MIN_RAM_SIZE, PAGE_SIZE } from '../memory/layout.ts';
import type { ClintState } from '../devices/clint.ts';
import type { ClockState } from '../devices/clock.ts';
import type { RtcState } from '../devices/goldfish-rtc.ts';
import { PLIC_CONTEXTS, PLIC_SOURCES, type PlicState } from '../devices/plic.ts';
import { MAX_UART_HELD, type UartState } from '../devices/uart16550.ts';
import type { DeviceStates, MachineConfig } from './machine.ts';
import type { HaltInfo } from './vcpu-protocol.ts';
import type { VmStateExport } from './vm.ts';

/** 2: the PMP registers in the CPU words, the PLIC and the RTC among the devices, the UART's pending THRE interrupt. */
export const VM_STATE_VERSION = 2;

/** mtime is a double: exact up to 2^53 ticks (28 years at 10 MHz). */
const MAX_MTIME = 2 ** 53;

/** A VM's name: what `vm create` accepts, and what an incoming migration may bring. */
export const VM_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
export const vmNameSchema = z.string().max(63).regex(VM_NAME_RE, "letters, digits, '.', '_' or '-' (at most 63)");

const byte = z.number().int().min(0).max(0xff);
const u32 = z.number().int().min(0).max(0xffff_ffff);
export const safeCount = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const machineConfigSchema: z.ZodType<MachineConfig> = z.strictObject({
  ramSize: z.number().int().min(MIN_RAM_SIZE).max(MAX_RAM_SIZE).refine((n) => n % PAGE_SIZE === 0, 'RAM size must be whole pages'),
  clock: z.enum(['realtime', 'icount']),
  tohost: z.number().int().min(-1).max(MAX_RAM_SIZE - 4),
}).refine((c) => c.tohost < c.ramSize - 3, 'tohost lies outside RAM');

const uartSchema: z.ZodType<UartState> = z.strictObject({
  ier: byte, lcr: byte, mcr: byte, scr: byte, fcr: byte, dll: byte, dlm: byte,
  rx: z.array(byte).max(MAX_UART_HELD),
  thrIpending: z.number().int().min(0).max(1),
});

const clintSchema: z.ZodType<ClintState> = z.strictObject({ msip: z.number().int().min(0).max(1), mtimecmpLo: u32, mtimecmpHi: u32 });

const clockSchema: z.ZodType<ClockState> = z.strictObject({
  mode: z.enum(['realtime', 'icount']),
  mtime: z.number().min(0).max(MAX_MTIME),
});

const priority = z.number().int().min(0).max(7);
const plicWords = PLIC_SOURCES / 32;
const plicSchema: z.ZodType<PlicState> = z.strictObject({
  priority: z.array(priority).length(PLIC_SOURCES + 1).refine((p) => p[0] === 0, 'source 0 has no priority'),
  pending: z.array(u32).length(plicWords),
  claimed: z.array(u32).length(plicWords),
  enable: z.array(u32).length(PLIC_CONTEXTS * plicWords),
  threshold: z.array(priority).length(PLIC_CONTEXTS),
});

const flag = z.number().int().min(0).max(1);
const rtcSchema: z.ZodType<RtcState> = z.strictObject({
  offsetHi: z.number().int().min(-0x8000_0000).max(0x7fff_ffff), offsetLo: u32, alarmHi: u32, alarmLo: u32,
  alarmRunning: flag, irqPending: flag, irqEnabled: flag, timeHigh: u32,
});

const devicesSchema: z.ZodType<DeviceStates> = z.strictObject({
  uart: uartSchema, clint: clintSchema, clock: clockSchema, plic: plicSchema, rtc: rtcSchema,
});

const haltSchema: z.ZodType<HaltInfo> = z.strictObject({
  exitCode: z.number().int().min(-0x8000_0000).max(0xffff_ffff),
  reason: z.string().max(256),
});

export const vmStateSchema: z.ZodType<VmStateExport> = z.strictObject({
  version: z.literal(VM_STATE_VERSION),
  config: machineConfigSchema,
  insnLimit: safeCount,
  cpu: z.array(z.number()).max(CPU_STATE_WORDS).superRefine((words, ctx) => {
    const why = cpuStateProblem(words);
    if (why !== undefined) ctx.addIssue({ code: 'custom', message: why });
  }),
  devices: devicesSchema,
  halted: haltSchema.optional(),
}).superRefine((s, ctx) => {
  if (s.devices.clock.mode !== s.config.clock) {
    ctx.addIssue({ code: 'custom', path: ['devices', 'clock', 'mode'], message: `a ${s.devices.clock.mode} clock in a VM whose clock is ${s.config.clock}` });
  }
});
