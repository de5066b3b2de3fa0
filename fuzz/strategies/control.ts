/**
 * The authenticated control surface: every method of the host's METHODS table with
 * type-confused parameters, and requests whose envelope (t, id, method, params) is wrong.
 * Destructive methods (vm.destroy/stop/pause, migrate.*) only ever name VMs that do not exist
 * or that this case created itself, never the fixture's.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { METHODS } from '../../src/host/control-server.ts';
import type { FuzzConn } from '../conn.ts';
import { encode } from '../msgpack.ts';
import type { Rng } from '../rng.ts';
import { REPO_ROOT } from '../spawn.ts';
import { hostileRaw, hostileString, hostileValue, longString } from '../values.ts';
import { MiB, req } from '../wire.ts';
import { mutate, notFixture, probeControl } from './common.ts';
import type { CaseContext, Strategy } from './types.ts';

/** The host's control methods, from its own table (so new methods are fuzzed as they appear). */
export const METHOD_NAMES: readonly string[] = Object.keys(METHODS);

export function isDestructive(method: string): boolean {
  return method === 'vm.destroy' || method === 'vm.stop' || method === 'vm.pause' || method.startsWith('migrate.');
}

const elfCache = new Map<string, Uint8Array | undefined>();
function builtElf(name: string): Uint8Array | undefined {
  if (!elfCache.has(name)) {
    try {
      elfCache.set(name, new Uint8Array(readFileSync(join(REPO_ROOT, 'guest-programs', 'build', `${name}.elf`))));
    } catch {
      elfCache.set(name, undefined);
    }
  }
  return elfCache.get(name);
}

/** A real guest ELF with its headers or bytes mangled (or random bytes when none is at hand). */
function mutatedElf(rng: Rng): Uint8Array {
  const base = builtElf(rng.pick(['hello', 'counter', 'echo']));
  if (!base || rng.chance(0.15)) return rng.bytes(rng.size(8192));
  const elf = base.slice();
  const dv = new DataView(elf.buffer);
  const phoff = dv.getUint32(0x1c, true);
  const fields: [number, 2 | 4][] = [
    [0x18, 4], [0x1c, 4], [0x2a, 2], [0x2c, 2], [0x20, 4], [0x2e, 2], [0x30, 2], [0x32, 2],
    [phoff + 4, 4], [phoff + 8, 4], [phoff + 12, 4], [phoff + 16, 4], [phoff + 20, 4], [phoff, 4],
  ];
  const r = rng.int(4);
  if (r === 0) return elf.subarray(0, rng.int(elf.length));
  for (let i = rng.range(1, 4); i > 0; i--) {
    if (r === 1) {
      elf[rng.int(elf.length)] = rng.int(256);
      continue;
    }
    const [off, size] = rng.pick(fields);
    if (off + size > elf.length) continue;
    const v = rng.pick([0, 1, 0xffff, 0xffff_ffff, 0x7fff_ffff, 0x8000_0000, 0x8800_0000, 0x7fff_f000, elf.length, elf.length + 1, rng.u32()]);
    if (size === 2) dv.setUint16(off, v & 0xffff, true);
    else dv.setUint32(off, v >>> 0, true);
  }
  return elf;
}

function vmName(ctx: CaseContext, method: string): string {
  if (isDestructive(method)) return ctx.freshName();
  return ctx.rng.chance(0.6) ? ctx.rng.pick(ctx.target.vms) : ctx.freshName();
}

/** Plausible parameters for `method`, before mutation. */
function baseParams(ctx: CaseContext, method: string): Record<string, unknown> {
  const rng = ctx.rng;
  const name = vmName(ctx, method);
  switch (method) {
    case 'host.info':
    case 'vm.list':
      return rng.chance(0.5) ? {} : { name };
    case 'vm.create':
      if (rng.chance(0.3)) return { name: ctx.freshName(), elf: mutatedElf(rng), elfName: rng.chance(0.5) ? 'fuzz.elf' : longString(rng), memory: rng.pick([MiB, 2 * MiB, 4 * MiB]), start: rng.chance(0.5) };
      return {
        name: ctx.freshName(),
        program: rng.pick(['hello', 'counter', 'echo', 'nope', '../../../etc/passwd', 'hello.elf', '', 'build/hello', '.']),
        memory: rng.pick([MiB, 2 * MiB, 4 * MiB, 8 * MiB]),
        icount: rng.chance(0.5), insnLimit: rng.pick([0, 1000, 1_000_000]),
        args: rng.pick<string[]>([[], ['period_ms=1000'], ['x=y', 'a=b'], [longString(rng)], new Array<string>(rng.range(10, 300)).fill('k=v')]),
        start: rng.chance(0.5),
      };
    case 'console.input':
      return { name, data: rng.chance(0.9) ? rng.bytes(rng.size(512)) : rng.bytes(rng.pick([16_384, 65_536, 262_144])) };
    case 'console.attach':
      return { name, follow: rng.chance(0.5) };
    case 'migrate.start':
      return {
        name, to: rng.pick([ctx.target.url, ctx.target.sourceUrl, 'ws://127.0.0.1:1', 'http://127.0.0.1:1', 'ws://[::1', 'wss://x', 'ws://0.0.0.0:0', hostileString(rng)]),
        mode: rng.pick(['precopy', 'postcopy', 'hybrid', 'cold', 'x']),
        downtimeLimitMs: rng.pick([0, 300]), maxBandwidth: rng.pick([0, 1]), maxRounds: rng.pick([0, 1, 30]),
        pushDelayMs: rng.pick([0, 100]), autoConverge: rng.chance(0.5), autoRecover: rng.chance(0.5),
      };
    default:
      return { name };
  }
}

/** Parameters for `method`: plausible, type-confused, or not a map at all. */
function params(ctx: CaseContext, method: string): unknown {
  const rng = ctx.rng;
  const base = baseParams(ctx, method);
  const r = rng.int(10);
  let p: unknown;
  if (r < 3) p = base;
  else if (r < 9) p = mutate(base, rng, rng.range(1, 3), ['name', 'program', 'memory', 'args', 'data', 'to', 'mode', 'elf', 'insnLimit']);
  else p = rng.chance(0.5) ? hostileValue(rng) : hostileRaw(rng);
  if (isDestructive(method) && p !== null && typeof p === 'object' && !Array.isArray(p) && 'name' in p) {
    (p as Record<string, unknown>).name = notFixture(ctx, (p as Record<string, unknown>).name);
  }
  return p;
}

/**
 * Waits for the answers to `ids`; notes the requests that got none. A frame the host could not
 * decode at all is answered with an `error` message that has no id: each one answers one request.
 */
async function answers(ctx: CaseContext, conn: FuzzConn, ids: Map<number, string>, timeoutMs: number): Promise<Map<number, Record<string, unknown>>> {
  const got = new Map<number, Record<string, unknown>>();
  let errors = 0;
  const deadline = Date.now() + timeoutMs;
  while (got.size + errors < ids.size && conn.isOpen) {
    const m = await conn.nextMsg(Math.max(1, deadline - Date.now()), 'res', 'error');
    if (!m) break;
    if (m.t === 'error') errors++;
    else if (typeof m.id === 'number' && ids.has(m.id)) got.set(m.id, m);
  }
  if (conn.isOpen && got.size + errors < ids.size) {
    for (const [id, method] of ids) if (!got.has(id)) ctx.note(`!no-answer:${method}`);
  }
  return got;
}

/** Sends `calls` on one ready connection, waits for the answers, destroys what they created. */
async function callSession(ctx: CaseContext, calls: [number, string, unknown][]): Promise<void> {
  const conn = await ctx.connectReady('/control');
  if (!conn) return;
  const ids = new Map<number, string>();
  for (const [id, method, p] of calls) {
    ctx.note(method);
    conn.send(encode(req(id, method, p)));
    ids.set(id, method);
  }
  const got = await answers(ctx, conn, ids, 5000);
  // Whatever this case created goes again (by its own name only).
  let next = 1000;
  const cleanup = new Map<number, string>();
  for (const [id, method, p] of calls) {
    const res = got.get(id);
    const name = (p as Record<string, unknown> | null)?.name;
    if (res?.ok !== true || typeof name !== 'string' || ctx.target.vms.includes(name)) continue;
    if (method === 'vm.create') {
      conn.send(encode(req(next, 'vm.destroy', { name })));
      cleanup.set(next++, 'vm.destroy');
    }
    if (method === 'migrate.start') {
      conn.send(encode(req(next, 'migrate.cancel', { name })));
      cleanup.set(next++, 'migrate.cancel');
    }
  }
  if (cleanup.size > 0) await answers(ctx, conn, cleanup, 5000);
  await probeControl(ctx, conn);
}

/** Every method but vm.create (see control-vm-create), 1..10 calls pipelined on one connection. */
export const controlParams: Strategy = {
  name: 'control-params', surfaces: ['control'], weight: 12, deadlineMs: 12_000,
  async run(ctx) {
    const methods = METHOD_NAMES.filter((m) => m !== 'vm.create');
    const calls: [number, string, unknown][] = [];
    for (let i = ctx.rng.range(1, 10); i > 0; i--) {
      const method = ctx.rng.pick(methods);
      calls.push([calls.length + 1, method, params(ctx, method)]);
    }
    await callSession(ctx, calls);
  },
};

/** vm.create with type-confused parameters and mangled ELF images (a VM that gets created starts a vCPU thread). */
export const controlVmCreate: Strategy = {
  name: 'control-vm-create', surfaces: ['control'], weight: 2, deadlineMs: 12_000, heavy: true,
  async run(ctx) {
    const calls: [number, string, unknown][] = [];
    for (let i = ctx.rng.range(1, 3); i > 0; i--) calls.push([calls.length + 1, 'vm.create', params(ctx, 'vm.create')]);
    if (ctx.rng.chance(0.3)) {
      const method = ctx.rng.pick(METHOD_NAMES);
      calls.push([calls.length + 1, method, params(ctx, method)]);
    }
    await ctx.heavy();
    await callSession(ctx, calls);
  },
};

export const controlReqConfused: Strategy = {
  name: 'control-req-confused', surfaces: ['control'], weight: 6,
  async run(ctx) {
    const rng = ctx.rng;
    const conn = await ctx.connectReady('/control');
    if (!conn) return;
    const variant = rng.weighted([['envelope', 5], ['unknown-t', 2], ['flood', 2], ['duplicate-ids', 1], ['server-msgs', 1]] as const);
    ctx.note(variant);
    switch (variant) {
      case 'envelope':
        for (let i = rng.range(1, 8); i > 0; i--) {
          conn.send(encode(mutate(req(rng.int(1000), rng.pick(METHOD_NAMES.filter((m) => !isDestructive(m))), {}), rng, rng.range(1, 2), ['t', 'id', 'method', 'params'])));
        }
        break;
      case 'unknown-t':
        for (let i = rng.range(1, 4); i > 0; i--) conn.send(encode({ t: rng.chance(0.5) ? longString(rng) : hostileValue(rng), id: 1 }));
        break;
      case 'flood': {
        const n = rng.range(20, 200);
        for (let i = 0; i < n; i++) conn.send(encode(req(i, rng.pick(['host.info', 'vm.list', 'nope', '__proto__', 'toString']), {})));
        break;
      }
      case 'duplicate-ids':
        for (let i = rng.range(2, 10); i > 0; i--) conn.send(encode(req(7, rng.pick(['host.info', 'vm.list', 'vm.info']), { name: rng.pick(ctx.target.vms) })));
        break;
      case 'server-msgs':
        conn.send(encode(rng.pick<unknown>([
          { t: 'res', id: 1, ok: true, result: null }, { t: 'event', event: 'console', vm: ctx.target.vms[0], data: new Uint8Array(4) },
          { t: 'ready', v: 1, host: 'x' }, { t: 'error', error: { code: 'X', message: longString(rng) } }, { t: 'hello', v: 1, client: 'again', nonce: new Uint8Array(32) },
        ])));
        break;
    }
    await probeControl(ctx, conn);
  },
};
