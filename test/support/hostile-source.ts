// A scripted migration source for the hostile-peer tests: it speaks `/migrate` one message at a
// time (hello, setup, advice, state, page frames on either channel), so a test can bring a
// destination to any phase and then send it whatever it likes.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { CPU_STATE_WORDS } from '../../src/cpu/state.ts';
import { resetRtcState } from '../../src/devices/goldfish-rtc.ts';
import { resetPlicState } from '../../src/devices/plic.ts';
import { VM_STATE_VERSION } from '../../src/vm/state-schema.ts';
import { proof } from '../../src/wire/auth.ts';
import { frameKeys } from '../../src/wire/frame-mac.ts';
import { DEVICES, ISA, MIGRATION_PROTOCOL_VERSION } from '../../src/migration/protocol.ts';
import { rawConnect, type RawClient } from './host-helpers.ts';

/** A raw link (see rawConnect) that also sends raw frames and can be cut. */
export interface ScriptedLink extends RawClient {
  sendRaw(frame: Buffer | Uint8Array | string): void;
  terminate(): void;
}

/** Opens a raw WebSocket to `url` + `path`, optionally from another loopback source address. */
export async function openScripted(url: string, path: string, o: { localAddress?: string } = {}): Promise<ScriptedLink> {
  const raw = await rawConnect(url, path, o);
  return Object.assign(raw, { sendRaw: (f: Buffer | Uint8Array | string) => raw.sendFrame(f), terminate: () => raw.ws.terminate() });
}

/** A `/migrate` link past its hello, as a source opens it (bulk or priority channel). */
export async function sourceLink(url: string, hello: Record<string, unknown>, token?: string): Promise<ScriptedLink> {
  const link = await openScripted(url, '/migrate');
  const h = await link.next();
  if (h.t !== 'hello') throw new Error(`expected hello, got ${JSON.stringify(h)}`);
  const challenge = h.challenge as Uint8Array | undefined;
  const nonce = new Uint8Array(randomBytes(32));
  if (token !== undefined && challenge) link.tagAfterReady(frameKeys(token, 'client', '/migrate', challenge, nonce));
  link.send({
    t: 'hello', v: MIGRATION_PROTOCOL_VERSION, nonce, ...hello,
    ...(token !== undefined && challenge ? { mac: proof(token, 'client', '/migrate', challenge) } : {}),
  });
  const ready = await link.next();
  if (ready.t !== 'ready') throw new Error(`expected ready, got ${JSON.stringify(ready)}`);
  return link;
}

export const SCRIPT_RAM = 1024 * 1024;
export const SCRIPT_PAGES = SCRIPT_RAM / 4096;

export function setupMsg(vm: string, mode: 'precopy' | 'postcopy' | 'hybrid' | 'cold' = 'precopy'): Record<string, unknown> {
  return {
    t: 'setup', vm, program: 'scripted', mode, config: { ramSize: SCRIPT_RAM, clock: 'icount', tohost: -1 }, insnLimit: 0,
    pageSize: 4096, isa: ISA, devices: DEVICES,
  };
}

/** A CPU and device state a fresh VM could have: pc at RAM base, M-mode, devices at reset. */
export function plausibleState(): Record<string, unknown> {
  const cpu = new Array<number>(CPU_STATE_WORDS).fill(0);
  cpu[33] = 0x8000_0000 | 0; // pc
  cpu[34] = 3; // M-mode
  return {
    version: VM_STATE_VERSION, config: { ramSize: SCRIPT_RAM, clock: 'icount', tohost: -1 }, insnLimit: 0, cpu,
    devices: {
      uart: { ier: 0, lcr: 0, mcr: 0, scr: 0, fcr: 0, dll: 0, dlm: 0, rx: [], thrIpending: 0 },
      clint: { msip: 0, mtimecmpLo: 0xffff_ffff, mtimecmpHi: 0xffff_ffff },
      clock: { mode: 'icount', mtime: 0 },
      plic: resetPlicState(), rtc: resetRtcState(),
    },
  };
}

/** A raw page frame: header, the page numbers as given, then `dataPages` pages of `fill`. */
export function pageFrame(pages: number[], dataPages = pages.length, fill = 0xab, count = pages.length): Buffer {
  const f = Buffer.alloc(8 + pages.length * 4 + dataPages * 4096, fill);
  f[0] = 0x50;
  f[1] = 0;
  f.writeUInt16LE(0, 2);
  f.writeUInt32LE(count >>> 0, 4);
  pages.forEach((p, i) => f.writeUInt32LE(p >>> 0, 8 + i * 4));
  return f;
}

/** A fresh migration id, as a source makes one. */
export function migrationId(): string {
  return randomBytes(16).toString('hex');
}

/**
 * Brings a destination to post-copy: setup, an advice that every page is missing, and a state
 * section with the guest paused; resolves with both channels once the host said `resumed`.
 */
export async function scriptedPostcopy(url: string, vm: string, token?: string): Promise<{ bulk: ScriptedLink; prio: ScriptedLink }> {
  const id = migrationId();
  const bulk = await sourceLink(url, { role: 'bulk', id }, token);
  bulk.send(setupMsg(vm, 'postcopy'));
  const ok = await bulk.next();
  if (ok.t !== 'setup-ok') throw new Error(`expected setup-ok, got ${JSON.stringify(ok)}`);
  const prio = await sourceLink(url, { role: 'prio', id }, token);
  bulk.send({ t: 'postcopy-advise', advice: { missing: new Uint8Array(SCRIPT_PAGES / 8).fill(0xff), missingCount: SCRIPT_PAGES } });
  const adv = await bulk.next();
  if (adv.t !== 'advise-ok') throw new Error(`expected advise-ok, got ${JSON.stringify(adv)}`);
  bulk.send({ t: 'state', state: plausibleState(), run: 'paused', console: new Uint8Array(0), postcopy: { late: new Uint32Array(0), missingCount: SCRIPT_PAGES } });
  const resumed = await bulk.next();
  if (resumed.t !== 'resumed') throw new Error(`expected resumed, got ${JSON.stringify(resumed)}`);
  return { bulk, prio };
}

/** Plain TCP connections that send nothing (or only the start of a request). */
export function idleSockets(port: number, n: number, localAddress: string, send?: string): Promise<net.Socket[]> {
  return Promise.all(Array.from({ length: n }, () => new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    s.on('error', () => {});
    s.once('connect', () => {
      if (send !== undefined) s.write(send);
      resolve(s);
    });
    s.once('error', reject);
  })));
}
