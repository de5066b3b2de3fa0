/**
 * Hostile values for the fields of otherwise valid messages: type-confused numbers, long and
 * multi-byte strings (beyond the 123 bytes a WebSocket close reason may carry), containers of
 * the wrong kind, and msgpack the host's decoder has to survive (lying headers, deep nesting,
 * extension types).
 */
import { badUtf8String, deepNesting, encode, ext, lyingExt, lyingHeader, packr, raw, Raw } from './msgpack.ts';
import type { Rng } from './rng.ts';

const PIECES = [
  'a', 'Z', '0', ' ', '"', '\\', '%s', '${x}', '\n', '\r\n', '\t', '\u0000', '\u001b[31m', 'é', 'ß', '€', '中', '😀', '\u202e',
  '\ud800', '\udfff', '\ufeff', '\ufffd', '<script>', '{"level":60,"msg":"forged"}', '../', '__proto__', '\u0085', 'ﷺ',
];

/** A string of about `bytes` UTF-8 bytes or more, built from `pieces`. */
function buildString(rng: Rng, bytes: number, pieces: readonly string[]): string {
  let s = '';
  let n = 0;
  const enc = new TextEncoder();
  while (n < bytes) {
    const p = rng.pick(pieces);
    s += p;
    n += enc.encode(p).length;
  }
  return s;
}

/** A string longer than a close reason may be (>123 bytes), mostly multi-byte. */
export function longString(rng: Rng): string {
  const bytes = rng.pick([61, 62, 100, 119, 120, 121, 122, 124, 125, 200, 1000, 65_536]);
  const kind = rng.int(5);
  if (kind === 0) return 'x'.repeat(bytes);
  if (kind === 1) return '€'.repeat(Math.ceil(bytes / 3));
  if (kind === 2) return '😀'.repeat(Math.ceil(bytes / 4));
  if (kind === 3) return 'é'.repeat(Math.ceil(bytes / 2));
  return buildString(rng, bytes, PIECES);
}

export function hostileString(rng: Rng): string {
  const r = rng.int(10);
  if (r < 4) return longString(rng);
  if (r === 4) return '';
  if (r === 5) return rng.pick(['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', 'then']);
  if (r === 6) return rng.pick(['hello', 'ready', 'req', 'res', 'setup', 'state', 'bulk', 'prio', 'host.info', 'vm.list']);
  if (r === 7) return buildString(rng, rng.range(1, 40), PIECES);
  if (r === 8) return 'a'.repeat(rng.pick([63, 64, 65, 255, 256, 4096]));
  return rng.pick(['\u0000', ' ', '.', '-', '..', '/', 'ws://', 'ws://127.0.0.1:1', 'http://[::1', 'ws://0.0.0.0:0']);
}

export function hostileNumber(rng: Rng): number | bigint {
  return rng.pick<number | bigint>([
    NaN, Infinity, -Infinity, -1, -0, 0, 0.5, 1e-300, 1e308, -1e308,
    2 ** 31, 2 ** 31 - 1, -(2 ** 31), 2 ** 32, 2 ** 32 - 1, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 2 ** 63, 2 ** 64,
    Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, Number.MAX_VALUE, Number.MIN_VALUE, Number.EPSILON,
    4096, 4095, 0x8000_0000, 0xffff_ffff, 1024 * 1024, 2 * 1024 ** 3, 2 * 1024 ** 3 + 4096,
    2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n, 12345678901234567890n,
  ]);
}

/** msgpack the decoder has to survive, as a value to splice into a message. */
export function hostileRaw(rng: Rng): Raw {
  const r = rng.int(16);
  switch (r) {
    case 0: {
      const kind = rng.pick(['str8', 'str16', 'str32', 'bin8', 'bin16', 'bin32', 'array16', 'array32', 'map16', 'map32', 'ext32'] as const);
      const announced = rng.pick([0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 0x1000_0000, 1 << 20, 100]);
      return lyingHeader(kind, announced, rng.bytes(rng.int(16)));
    }
    case 1:
      return deepNesting(rng.pick([100, 1000, 5000, 10_000, 20_000, 100_000]), rng.pick(['array', 'map', 'mixed'] as const));
    case 2: {
      // BigInt ext 0x42 with a large payload.
      const n = rng.pick([9, 64, 4096, 65_536, 1 << 20, 2 << 20]);
      return ext(0x42, n <= 4096 ? rng.bytes(n) : fillBytes(rng, n));
    }
    case 3: {
      // Typed array ext 0x74: a bad or odd type code, or a length that is no multiple of the element size.
      const code = rng.pick([11, 12, 15, 16, 17, 18, 0x7f, 0xff, 8, 9, 10, 6]);
      return ext(0x74, Uint8Array.from([code, ...rng.bytes(rng.pick([0, 1, 3, 5, 7, 9, 15]))]));
    }
    case 4: {
      // Error ext 0x65: [name, message, cause] read after the ext byte.
      const name = rng.pick(['Error', 'TypeError', 'AggregateError', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'x']);
      return raw([0xd4, 0x65, 0x00], encode([name, rng.chance(0.5) ? longString(rng) : 'boom', rng.chance(0.5) ? { a: 1 } : null]));
    }
    case 5: {
      // Records 0x72: a structure definition, maybe lying about its fields.
      const id = rng.pick([0x40, 0x41, 0x7f, 0x00, 0x3f]);
      return raw([0xd4, 0x72, id], encode(rng.chance(0.5) ? ['t', 'id'] : [1, null, 'x']), encode('v'), encode(rng.int(100)));
    }
    case 6: {
      // Timestamp ext -1 (0xff): 4, 8, 12 bytes or an odd size.
      return ext(0xff, rng.bytes(rng.pick([4, 8, 12, 0, 1, 3, 16, 20])));
    }
    case 7:
      // Structured-clone id/pointer extensions (cycles, unknown references).
      return rng.chance(0.5)
        ? raw([0xd6, 0x69, 0, 0, 0, 1, 0x81, 0xa1, 0x61, 0xd6, 0x70, 0, 0, 0, 1])
        : raw([0xd6, 0x70, ...rng.bytes(4)]);
    case 8:
      // Set 0x73, RegExp 0x78, bundled strings 0x62 with lying sizes.
      return rng.pick([
        raw([0xd4, 0x73, 0x00], encode([1, 2, 'a'])),
        raw([0xd4, 0x78, 0x00], encode(['(a+)+$', 'g'])),
        raw([0xd4, 0x78, 0x00], encode(['(', 'zz'])),
        raw([0xd6, 0x62, 0x7f, 0xff, 0xff, 0xff], encode('x')),
        raw([0xd6, 0x62, 0, 0, 0, 1], rng.bytes(4)),
      ]);
    case 9:
      return ext(rng.int(256), rng.bytes(rng.pick([0, 1, 2, 4, 8, 16, 17, 300])));
    case 10:
      return lyingExt(rng.int(256), rng.pick([0xffff_ffff, 1 << 24, 64]), rng.bytes(rng.int(8)));
    case 11:
      return badUtf8String(rng.chance(0.5) ? Uint8Array.from([0xff, 0xfe, 0xc0, 0x80, 0xed, 0xa0, 0x80]) : rng.bytes(rng.range(1, 200)));
    case 12:
      // Reserved byte 0xc1 and truncated numbers.
      return rng.pick([raw([0xc1]), raw([0xcb, 0x7f]), raw([0xcf]), raw([0xd3, 1, 2]), raw([0xca])]);
    case 13:
      // A map with duplicate and non-string keys.
      return raw([0x83], encode('t'), encode('a'), encode(1), encode('b'), encode('t'), encode('c'));
    case 14:
      // A map with a huge count of tiny entries (cheap to send, many to build).
      return raw([0xdf, 0x00, 0x01, 0x00, 0x00], fillRepeated(Uint8Array.from([0x01, 0xc0]), 65_536));
    default:
      // An array32 of a million nils.
      return raw([0xdd, 0x00, 0x0f, 0x42, 0x40], new Uint8Array(1_000_000).fill(0xc0));
  }
}

function fillBytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  const chunk = rng.bytes(256);
  for (let i = 0; i < n; i += 256) out.set(chunk.subarray(0, Math.min(256, n - i)), i);
  return out;
}

function fillRepeated(unit: Uint8Array, times: number): Uint8Array {
  const out = new Uint8Array(unit.length * times);
  for (let i = 0; i < times; i++) out.set(unit, i * unit.length);
  return out;
}

/** Any value of a wrong type or range for a field. */
export function hostileValue(rng: Rng, depth = 0): unknown {
  const r = rng.int(depth > 1 ? 12 : 16);
  switch (r) {
    case 0: case 1: case 2: return hostileNumber(rng);
    case 3: case 4: case 5: return hostileString(rng);
    case 6: return rng.pick([true, false, null, undefined]);
    case 7: return new Uint8Array(rng.bytes(rng.size(4096)));
    case 8: return rng.pick<unknown>([
      new Uint32Array([0xffff_ffff, 0x8000_0000, 7]), new Float64Array([NaN, -1]), new Int8Array([-1]), new Uint16Array(3),
      new BigUint64Array([2n ** 64n - 1n]), new Date(NaN), new Date(8.64e15), new Date(0),
    ]);
    case 9: return hostileRaw(rng);
    case 10: return rng.pick<unknown>([[], {}, [1, 2, 3], { a: 1 }, [[[]]], { t: 'hello' }]);
    case 11: return new Error(rng.chance(0.5) ? 'boom' : longString(rng));
    case 12: {
      const arr: unknown[] = [];
      for (let i = rng.int(5); i > 0; i--) arr.push(hostileValue(rng, depth + 1));
      return arr;
    }
    case 13: {
      const o: Record<string, unknown> = {};
      for (let i = rng.int(5); i > 0; i--) o[rng.chance(0.3) ? hostileString(rng) : rng.pick(['name', 't', 'v', 'id', 'a'])] = hostileValue(rng, depth + 1);
      return o;
    }
    case 14: return new Map<unknown, unknown>([[1, 'a'], [{ k: 1 }, 2]]);
    default: return new Set([1, 'x']);
  }
}

/** The msgpack of a value (for a frame made only of it). */
export function packValue(v: unknown): Uint8Array {
  if (v instanceof Raw) return v.bytes;
  try {
    return encode(v);
  } catch {
    return new Uint8Array(packr.pack(null));
  }
}
