/**
 * Ferry's wire messages, valid, as a starting point for the generators: hellos, control
 * requests, migration setups, machine state sections and page frames. Protocol constants come
 * from src/ (read-only use), so the fuzzer follows the protocol as it evolves.
 */
import { randomBytes } from 'node:crypto';
import { CPU_STATE_WORDS, S_MTVEC, S_PC, S_PRIV } from '../src/cpu/state.ts';
import { resetRtcState } from '../src/devices/goldfish-rtc.ts';
import { resetPlicState } from '../src/devices/plic.ts';
import { PAGE_SIZE } from '../src/memory/layout.ts';
import { FRAME_LZ4 } from '../src/memory/page-compression.ts';
import { FRAME_PAGES, ZERO_PAGE } from '../src/memory/page-frame.ts';
import { DEVICES, ISA, MIGRATION_PROTOCOL_VERSION } from '../src/migration/protocol.ts';
import { proof } from '../src/wire/auth.ts';
import { frameKeys } from '../src/wire/frame-mac.ts';
import { CONTROL_PROTOCOL_VERSION } from '../src/wire/control-protocol.ts';
import { VM_STATE_VERSION } from '../src/vm/state-schema.ts';
import type { Rng } from './rng.ts';

export { CONTROL_PROTOCOL_VERSION, DEVICES, FRAME_LZ4, FRAME_PAGES, frameKeys, ISA, MIGRATION_PROTOCOL_VERSION, PAGE_SIZE, proof, ZERO_PAGE };

export const MiB = 1024 * 1024;
export const CPU_WORDS = CPU_STATE_WORDS;

export type Path = '/control' | '/migrate';
/** How a fuzz connection answers the host's challenge: with the right mac, none, or a wrong one. */
export type AuthMode = 'valid' | 'none' | 'wrong';

/** The protocol version to answer a host's hello with: the one it announced. */
export function versionFrom(hello: Record<string, unknown> | undefined, path: Path): number {
  const v = hello?.v;
  return typeof v === 'number' ? v : versionFor(path);
}

export function nonce(): Uint8Array {
  return new Uint8Array(randomBytes(32));
}

export function versionFor(path: Path): number {
  return path === '/control' ? CONTROL_PROTOCOL_VERSION : MIGRATION_PROTOCOL_VERSION;
}

/** The mac field for a hello on `path` answering `challenge` (absent when none is asked for or `auth` says so). */
export function macFor(auth: AuthMode, path: Path, token: string | undefined, challenge: unknown, rng: Rng): Record<string, unknown> {
  if (auth === 'none') return {};
  if (auth === 'wrong') {
    const c = challenge instanceof Uint8Array ? challenge : new Uint8Array(32);
    const other: Path = path === '/control' ? '/migrate' : '/control';
    return {
      mac: rng.pick<unknown>([
        new Uint8Array(32), rng.bytes(32), proof('not-the-token-0123456789', 'client', path, c), rng.bytes(31),
        proof(token ?? 'x'.repeat(16), 'host', path, c), proof(token ?? 'x'.repeat(16), 'client', other, c),
      ]),
    };
  }
  if (token === undefined || !(challenge instanceof Uint8Array)) return {};
  return { mac: proof(token, 'client', path, challenge) };
}

export function controlHello(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { t: 'hello', v: CONTROL_PROTOCOL_VERSION, client: 'ferry-fuzz', nonce: nonce(), ...extra };
}

export function migrateHello(role: string, id: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { t: 'hello', v: MIGRATION_PROTOCOL_VERSION, nonce: nonce(), role, id, ...extra };
}

export function req(id: number, method: string, params: unknown): Record<string, unknown> {
  return { t: 'req', id, method, params };
}

export interface SetupShape {
  t: 'setup';
  vm: string;
  program: string;
  mode: string;
  config: { ramSize: number; clock: string; tohost: number };
  insnLimit: number;
  pageSize: number;
  isa: string;
  devices: string[];
  source?: string;
}

/** A setup the host accepts (for a fresh name): small RAM, so each costs little. */
export function validSetup(vm: string, mode: 'precopy' | 'postcopy' | 'hybrid' | 'cold', ramMiB: number, source?: string): SetupShape {
  return {
    t: 'setup', vm, program: 'fuzz', mode,
    config: { ramSize: ramMiB * MiB, clock: 'realtime', tohost: -1 },
    insnLimit: 0, pageSize: PAGE_SIZE, isa: ISA, devices: [...DEVICES],
    ...(source !== undefined ? { source } : {}),
  };
}

/** Device state as a VM exports it (an idle UART, CLINT without a deadline, realtime clock, PLIC and RTC at reset). */
export function validDevices(clock = 'realtime'): Record<string, unknown> {
  return {
    uart: { ier: 0, lcr: 3, mcr: 0, scr: 0, fcr: 0, dll: 1, dlm: 0, rx: [], thrIpending: 0 },
    clint: { msip: 0, mtimecmpLo: 0xffff_ffff, mtimecmpHi: 0xffff_ffff },
    clock: { mode: clock, mtime: 0 },
    plic: resetPlicState(),
    rtc: resetRtcState(),
  };
}

/** CPU words of a hart in M-mode at the start of RAM. */
export function validCpu(): number[] {
  const cpu = new Array<number>(CPU_WORDS).fill(0);
  cpu[S_PC] = 0x8000_0000 | 0;
  cpu[S_PRIV] = 3;
  cpu[S_MTVEC] = 0x8000_0000 | 0;
  cpu[2] = (0x8000_0000 + 0x10000) | 0;
  return cpu;
}

/** A state section matching `setup` (what a source sends at the switch-over). */
export function validState(setup: SetupShape, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    t: 'state',
    state: { version: VM_STATE_VERSION, config: { ...setup.config }, insnLimit: setup.insnLimit, cpu: validCpu(), devices: validDevices(setup.config.clock) },
    run: 'running',
    console: new Uint8Array(0),
    ...extra,
  };
}

/** Page 0 of a guest that idles: `wfi; j -4`. */
export function idlePage(): Uint8Array {
  const page = new Uint8Array(PAGE_SIZE);
  const dv = new DataView(page.buffer);
  dv.setUint32(0, 0x1050_0073, true);
  dv.setUint32(4, 0xffdf_f06f, true);
  return page;
}

export interface PageSpec {
  page: number;
  /** Page bytes; absent = the zero-page bit is set and no bytes follow. */
  data?: Uint8Array;
}

/** A well-formed page frame. */
export function pageFrame(pages: readonly PageSpec[]): Uint8Array {
  const withData = pages.filter((p) => p.data !== undefined).length;
  const out = new Uint8Array(8 + pages.length * 4 + withData * PAGE_SIZE);
  const dv = new DataView(out.buffer);
  out[0] = FRAME_PAGES;
  dv.setUint32(4, pages.length, true);
  let data = 8 + pages.length * 4;
  pages.forEach((p, i) => {
    dv.setUint32(8 + i * 4, p.data === undefined ? (p.page | ZERO_PAGE) >>> 0 : p.page >>> 0, true);
    if (p.data !== undefined) {
      out.set(p.data.subarray(0, PAGE_SIZE), data);
      data += PAGE_SIZE;
    }
  });
  return out;
}

/** A raw page frame header with any count, followed by `body`. */
export function pageFrameRaw(count: number, pageNumbers: readonly number[], body: Uint8Array, flags = 0, reserved = 0): Uint8Array {
  const out = new Uint8Array(8 + pageNumbers.length * 4 + body.length);
  const dv = new DataView(out.buffer);
  out[0] = FRAME_PAGES;
  out[1] = flags & 0xff;
  dv.setUint16(2, reserved & 0xffff, true);
  dv.setUint32(4, count >>> 0, true);
  pageNumbers.forEach((p, i) => dv.setUint32(8 + i * 4, p >>> 0, true));
  out.set(body, 8 + pageNumbers.length * 4);
  return out;
}

