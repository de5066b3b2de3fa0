/**
 * msgpack as the host decodes it (msgpackr, records off, more types on), plus a hand-rolled
 * encoder for what msgpackr will not write: hostile headers, wrong lengths, deep nesting,
 * arbitrary extension types, spliced verbatim (`Raw`) anywhere inside an otherwise valid message.
 */
import { Packr } from 'msgpackr';

export const packr = new Packr({ useRecords: false, moreTypes: true });

/** Bytes spliced verbatim into an encoded message. */
export class Raw {
  constructor(readonly bytes: Uint8Array) {}
}

export function raw(...parts: (Uint8Array | number[])[]): Raw {
  return new Raw(concat(parts.map((p) => (p instanceof Uint8Array ? p : Uint8Array.from(p)))));
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function be(n: number, bytes: 1 | 2 | 4): number[] {
  const out: number[] = [];
  for (let i = bytes - 1; i >= 0; i--) out.push(Math.floor(n / 2 ** (8 * i)) & 0xff);
  return out;
}

const utf8 = new TextEncoder();

function strHeader(len: number): number[] {
  if (len < 32) return [0xa0 | len];
  if (len < 0x100) return [0xd9, len];
  if (len < 0x10000) return [0xda, ...be(len, 2)];
  return [0xdb, ...be(len, 4)];
}

function arrHeader(n: number): number[] {
  if (n < 16) return [0x90 | n];
  if (n < 0x10000) return [0xdc, ...be(n, 2)];
  return [0xdd, ...be(n, 4)];
}

function mapHeader(n: number): number[] {
  if (n < 16) return [0x80 | n];
  if (n < 0x10000) return [0xde, ...be(n, 2)];
  return [0xdf, ...be(n, 4)];
}

/**
 * Encodes `v`: plain objects, arrays and strings here (so a Raw can sit anywhere inside them),
 * every other value through msgpackr (numbers, binary, typed arrays, dates, BigInts, ...).
 */
export function encode(v: unknown): Uint8Array {
  const parts: Uint8Array[] = [];
  const walk = (x: unknown): void => {
    if (x instanceof Raw) {
      parts.push(x.bytes);
    } else if (typeof x === 'string') {
      const b = utf8.encode(x);
      parts.push(Uint8Array.from(strHeader(b.length)), b);
    } else if (Array.isArray(x)) {
      parts.push(Uint8Array.from(arrHeader(x.length)));
      for (const e of x) walk(e);
    } else if (x !== null && typeof x === 'object' && Object.getPrototypeOf(x) === Object.prototype) {
      const entries = Object.entries(x as Record<string, unknown>);
      parts.push(Uint8Array.from(mapHeader(entries.length)));
      for (const [k, e] of entries) {
        walk(k);
        walk(e);
      }
    } else {
      let b: Uint8Array;
      try {
        b = new Uint8Array(packr.pack(x));
      } catch {
        b = Uint8Array.of(0xc0); // a value msgpackr will not encode (an invalid Date, ...) travels as nil
      }
      parts.push(b);
    }
  };
  walk(v);
  return concat(parts);
}

/** A str/bin/array/map header announcing `announced` items or bytes, followed by only `present` bytes of filler. */
export function lyingHeader(kind: 'str8' | 'str16' | 'str32' | 'bin8' | 'bin16' | 'bin32' | 'array16' | 'array32' | 'map16' | 'map32' | 'ext32', announced: number, present: Uint8Array): Raw {
  const head: Record<typeof kind, number[]> = {
    str8: [0xd9, announced & 0xff],
    str16: [0xda, ...be(announced, 2)],
    str32: [0xdb, ...be(announced, 4)],
    bin8: [0xc4, announced & 0xff],
    bin16: [0xc5, ...be(announced, 2)],
    bin32: [0xc6, ...be(announced, 4)],
    array16: [0xdc, ...be(announced, 2)],
    array32: [0xdd, ...be(announced, 4)],
    map16: [0xde, ...be(announced, 2)],
    map32: [0xdf, ...be(announced, 4)],
    ext32: [0xc9, ...be(announced, 4), 0x42],
  };
  return raw(head[kind], present);
}

/** `depth` nested single-element arrays (or maps {"a": ...}) around a nil. */
export function deepNesting(depth: number, kind: 'array' | 'map' | 'mixed'): Raw {
  const out = new Uint8Array(depth * 3 + 1);
  let o = 0;
  for (let i = 0; i < depth; i++) {
    const asMap = kind === 'map' || (kind === 'mixed' && i % 2 === 1);
    if (asMap) {
      out[o++] = 0x81;
      out[o++] = 0xa1;
      out[o++] = 0x61;
    } else {
      out[o++] = 0x91;
    }
  }
  out[o++] = 0xc0;
  return new Raw(out.subarray(0, o));
}

/** An extension value of `type` with `data` (fixext when the size allows, else ext8/16/32). */
export function ext(type: number, data: Uint8Array): Raw {
  const n = data.length;
  const t = type & 0xff;
  const fixed: Record<number, number> = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 };
  if (fixed[n] !== undefined) return raw([fixed[n]!, t], data);
  if (n < 0x100) return raw([0xc7, n, t], data);
  if (n < 0x10000) return raw([0xc8, ...be(n, 2), t], data);
  return raw([0xc9, ...be(n, 4), t], data);
}

/** An ext header announcing more bytes than follow. */
export function lyingExt(type: number, announced: number, present: Uint8Array): Raw {
  return raw([0xc9, ...be(announced, 4), type & 0xff], present);
}

/** A str whose bytes are not valid UTF-8. */
export function badUtf8String(bytes: Uint8Array): Raw {
  return raw(strHeader(bytes.length), bytes);
}
