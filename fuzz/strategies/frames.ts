/**
 * Frame-level junk on either endpoint, as the first frame (before any hello: the unauthenticated
 * surface) or after a ready hello (the authenticated one): random bytes, text frames, truncated
 * msgpack, lying length headers, deep nesting and extension types.
 */
import type { Rng } from '../rng.ts';
import { concat, deepNesting, encode, ext, lyingHeader, raw, type Raw } from '../msgpack.ts';
import { hostileRaw, longString } from '../values.ts';
import { FRAME_LZ4, FRAME_PAGES, type Path } from '../wire.ts';
import { probeControl, sampleMessage, setField } from './common.ts';
import type { CaseContext, Strategy } from './types.ts';

interface Frame {
  data: Uint8Array | string;
  text?: boolean;
}

/**
 * One session: connect, then either send junk in place of the hello, or complete the hello and
 * send a few junk frames (on /control the connection should survive them; a probe checks it answers).
 */
async function session(ctx: CaseContext, gen: (path: Path) => Frame): Promise<void> {
  const path = ctx.path();
  const preAuth = ctx.rng.chance(0.35);
  if (preAuth) {
    ctx.note(`${path}:first-frame`);
    const conn = await ctx.connect(path);
    await conn.nextMsg(2000, 'hello');
    const f = gen(path);
    conn.send(f.data, f.text ?? false);
    await conn.waitClosed(1500);
    return;
  }
  ctx.note(`${path}:after-ready`);
  const extra = path === '/migrate' ? { role: ctx.rng.pick(['bulk', 'bulk', 'prio']), id: ctx.freshName('id') } : {};
  const conn = await ctx.connectReady(path, extra);
  if (!conn) return;
  const n = path === '/control' ? ctx.rng.range(4, 40) : ctx.rng.range(1, 3);
  for (let i = 0; i < n && conn.isOpen; i++) {
    const f = gen(path);
    conn.send(f.data, f.text ?? false);
  }
  if (path === '/control') await probeControl(ctx, conn);
  else await conn.waitClosed(1000);
}

function randomBytesFrame(rng: Rng): Uint8Array {
  const n = rng.chance(0.02) ? rng.range(1 << 16, 2 << 20) : rng.size(4096);
  const b = rng.bytes(n);
  const r = rng.int(6);
  if (r === 0 && b.length > 0) b[0] = FRAME_PAGES; // looks like a page frame
  if (r === 1 && b.length > 0) b[0] = 0x80 | (b[0]! & 0x0f); // a fixmap
  if (r === 2 && b.length > 1) { b[0] = 0x81; b[1] = 0xa1; } // {"?": ...}
  if (r === 3 && b.length > 0) b[0] = FRAME_LZ4; // looks like a compressed page frame
  return b;
}

export const randomBytes: Strategy = {
  name: 'random-bytes', surfaces: ['control', 'migrate'], weight: 6,
  run: (ctx) => session(ctx, () => ({ data: randomBytesFrame(ctx.rng) })),
};

export const textFrames: Strategy = {
  name: 'text-frames', surfaces: ['control', 'migrate'], weight: 4,
  run: (ctx) => session(ctx, (path) => {
    const rng = ctx.rng;
    const r = rng.int(6);
    if (r === 0) return { data: JSON.stringify(sampleMessage(ctx, path), (_k, v: unknown) => (v instanceof Uint8Array ? Array.from(v) : v)), text: true };
    if (r === 1) return { data: longString(rng), text: true };
    if (r === 2) return { data: '', text: true };
    if (r === 3) return { data: rng.chance(0.5) ? Uint8Array.from([0xff, 0xfe, 0xfd]) : rng.bytes(rng.size(2048)), text: true }; // invalid UTF-8
    if (r === 4) return { data: 'x'.repeat(rng.pick([125, 126, 65_535, 65_536, 1 << 20])), text: true };
    return { data: '\u0000'.repeat(rng.range(1, 100)), text: true };
  }),
};

export const msgpackTruncated: Strategy = {
  name: 'msgpack-truncated', surfaces: ['control', 'migrate'], weight: 5,
  run: (ctx) => session(ctx, (path) => {
    const rng = ctx.rng;
    const full = encode(sampleMessage(ctx, path));
    const r = rng.int(4);
    if (r === 0) return { data: full.subarray(0, rng.int(full.length)) };
    if (r === 1) return { data: concat([full.subarray(0, rng.int(full.length)), rng.bytes(rng.range(1, 16))]) };
    if (r === 2) {
      // One byte dropped from the middle.
      const i = rng.int(full.length);
      return { data: concat([full.subarray(0, i), full.subarray(i + 1)]) };
    }
    return { data: concat([full, rng.bytes(rng.range(1, 8))]) }; // trailing bytes
  }),
};

const LYING_KINDS = ['str8', 'str16', 'str32', 'bin8', 'bin16', 'bin32', 'array16', 'array32', 'map16', 'map32', 'ext32'] as const;

export const msgpackHugeHeader: Strategy = {
  name: 'msgpack-huge-header', surfaces: ['control', 'migrate'], weight: 5,
  run: (ctx) => session(ctx, (path) => {
    const rng = ctx.rng;
    const lie = lyingHeader(rng.pick(LYING_KINDS), rng.pick([0x7fff_ffff, 0xffff_ffff, 0x1000_0000, 1 << 20, 0xffff, 300]), rng.bytes(rng.int(64)));
    if (rng.chance(0.4)) return { data: lie.bytes };
    // Inside an otherwise valid message, in a field the host reads first.
    return { data: encode(setField(sampleMessage(ctx, path), rng, lie, ['t', 'v', 'id', 'method', 'params', 'client', 'role', 'vm', 'config'])) };
  }),
};

export const msgpackDeepNesting: Strategy = {
  name: 'msgpack-deep-nesting', surfaces: ['control', 'migrate'], weight: 4,
  run: (ctx) => session(ctx, (path) => {
    const rng = ctx.rng;
    const deep = deepNesting(rng.pick([1000, 5000, 10_000, 50_000, 200_000]), rng.pick(['array', 'map', 'mixed'] as const));
    if (rng.chance(0.3)) return { data: deep.bytes };
    return { data: encode(setField(sampleMessage(ctx, path), rng, deep, ['params', 'client', 'id', 'state', 'config', 'advice', 't'])) };
  }),
};

export const msgpackExt: Strategy = {
  name: 'msgpack-ext', surfaces: ['control', 'migrate'], weight: 5,
  run: (ctx) => session(ctx, (path) => {
    const rng = ctx.rng;
    const value = rng.chance(0.7) ? extValue(rng) : hostileRaw(rng);
    if (rng.chance(0.3)) return { data: value.bytes };
    return { data: encode(setField(sampleMessage(ctx, path), rng, value, ['t', 'v', 'id', 'method', 'params', 'nonce', 'mac', 'client', 'role', 'round', 'state'])) };
  }),
};

/** The extension types msgpackr decodes, with hostile payloads. */
function extValue(rng: Rng): Raw {
  const r = rng.int(7);
  if (r === 0) return ext(0x42, rng.bytes(rng.pick([1, 8, 9, 1024, 65_536, 1 << 20]))); // BigInt
  if (r === 1) return ext(0x74, Uint8Array.from([rng.pick([11, 12, 16, 17, 99, 255, 8, 10]), ...rng.bytes(rng.pick([0, 3, 7, 13, 4096]))])); // typed array
  if (r === 2) return concatRaw([0xd4, 0x65, 0x00], encode([rng.pick(['Error', 'RangeError', 'constructor', '__proto__', 'valueOf']), longString(rng), null])); // Error
  if (r === 3) return concatRaw([0xd4, 0x72, rng.pick([0x40, 0x7f, 0x00])], encode(['t', 'id']), encode('req'), encode(rng.int(10))); // record
  if (r === 4) return ext(0xff, rng.chance(0.5) ? Uint8Array.from([0xff, 0xff, 0xff, 0xff]) : rng.bytes(rng.pick([8, 12, 5]))); // timestamp -1
  if (r === 5) return ext(rng.pick([0x69, 0x70, 0x73, 0x78, 0x62, 0x00, 0x01, 0x7f, 0x80, 0xfe]), rng.bytes(rng.pick([1, 2, 4, 8, 16, 40])));
  return ext(0x42, new Uint8Array(rng.pick([4 << 20, 8 << 20])).fill(0x7f)); // a very large BigInt
}

function concatRaw(head: number[], ...rest: Uint8Array[]): Raw {
  return raw(head, ...rest);
}
