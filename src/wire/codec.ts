/**
 * msgpack for peer input, bounded before it is decoded. msgpackr allocates what a header
 * announces and builds whatever an extension names (a BigInt from megabytes of digits, an
 * Error, a RegExp, a Set), recursing once per nesting level; a peer must not be able to make it
 * do any of that. `checkMsgpack` walks the encoded structure first, without allocating: exactly
 * one value, nesting within `maxDepth`, strings, binaries and item counts within their limits
 * and within the bytes actually present, map keys that are strings, and no extension but
 * `undefined` and the typed arrays the protocols use (Uint8Array, Uint32Array).
 */
import { Packr } from 'msgpackr';
import { FerryError } from '../errors.ts';

export interface MsgpackLimits {
  /** Arrays and maps inside arrays and maps: 1 = a flat map. */
  maxDepth: number;
  /** Bytes of one string (map keys included). */
  maxString: number;
  /** Bytes of one binary or typed array. */
  maxBinary: number;
  /** Elements of one array, or entries of one map. */
  maxItems: number;
}

/** msgpackr's typed-array extension and the element types allowed in it (its type codes). */
const EXT_TYPED_ARRAY = 0x74;
const TYPED_UINT8 = 1;
const TYPED_UINT32 = 6;
/** msgpackr encodes `undefined` as fixext 1 of type 0. */
const EXT_UNDEFINED = 0;
const MAX_KEY_BYTES = 64;

function refuse(why: string): never {
  throw new FerryError('EPROTO', `malformed message: ${why}`);
}

/**
 * Throws FerryError EPROTO unless `buf` holds exactly one msgpack value within `limits`.
 * Linear in the number of items, never in the size of strings or binaries.
 */
export function checkMsgpack(buf: Uint8Array, limits: MsgpackLimits): void {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const end = buf.length;
  let pos = 0;
  /** Items still to read in each open array/map (a map counts keys and values). */
  const open: number[] = [];
  /** For each open map, whether its next item is a key. */
  const isMap: boolean[] = [];
  let items = 1;
  const need = (n: number) => {
    if (pos + n > end) refuse('truncated');
  };
  const body = (n: number, max: number, what: string) => {
    if (n > max) refuse(`${what} of ${n} bytes exceeds ${max}`);
    need(n);
    pos += n;
  };
  for (;;) {
    while (items === 0) {
      if (open.length === 0) {
        if (pos !== end) refuse(`${end - pos} trailing bytes`);
        return;
      }
      items = open.pop()!;
      isMap.pop();
    }
    items--;
    const depth = open.length;
    const mapKey = depth > 0 && isMap[depth - 1]! && items % 2 === 1;
    need(1);
    const b = buf[pos++]!;
    if (mapKey && !((b >= 0xa0 && b <= 0xbf) || b === 0xd9 || b === 0xda || b === 0xdb)) refuse('a map key that is not a string');
    const container = (n: number, map: boolean) => {
      if (n > limits.maxItems) refuse(`${map ? 'map' : 'array'} of ${n} items exceeds ${limits.maxItems}`);
      const slots = map ? 2 * n : n;
      if (slots > end - pos) refuse(`${map ? 'map' : 'array'} announces ${n} items, more than the frame holds`);
      if (depth + 1 > limits.maxDepth) refuse(`nesting deeper than ${limits.maxDepth}`);
      open.push(items);
      isMap.push(map);
      items = slots;
    };
    const ext = (len: number) => {
      need(1);
      const type = dv.getInt8(pos++);
      if (type === EXT_UNDEFINED && len === 1) {
        need(1);
        pos += 1;
        return;
      }
      if (type !== EXT_TYPED_ARRAY) refuse(`extension type ${type} is not allowed`);
      if (len < 1) refuse('an empty typed array extension');
      need(1);
      const code = buf[pos]!;
      if (code !== TYPED_UINT8 && !(code === TYPED_UINT32 && (len - 1) % 4 === 0)) refuse(`typed array code ${code} is not allowed`);
      body(len, limits.maxBinary + 1, 'a typed array');
    };
    const str = (n: number) => body(n, mapKey ? MAX_KEY_BYTES : limits.maxString, mapKey ? 'a map key' : 'a string');
    if (b <= 0x7f || b >= 0xe0) continue; // fixint
    if (b <= 0x8f) { container(b & 0x0f, true); continue; }
    if (b <= 0x9f) { container(b & 0x0f, false); continue; }
    if (b <= 0xbf) { str(b & 0x1f); continue; }
    switch (b) {
      case 0xc0: case 0xc2: case 0xc3: continue; // nil, false, true
      case 0xc4: need(1); body(buf[pos++]!, limits.maxBinary, 'a binary'); continue;
      case 0xc5: need(2); pos += 2; body(dv.getUint16(pos - 2), limits.maxBinary, 'a binary'); continue;
      case 0xc6: need(4); pos += 4; body(dv.getUint32(pos - 4), limits.maxBinary, 'a binary'); continue;
      case 0xc7: need(1); ext(buf[pos++]!); continue;
      case 0xc8: need(2); pos += 2; ext(dv.getUint16(pos - 2)); continue;
      case 0xc9: need(4); pos += 4; ext(dv.getUint32(pos - 4)); continue;
      case 0xca: need(4); pos += 4; continue; // float 32
      case 0xcb: need(8); pos += 8; continue; // float 64
      case 0xcc: case 0xd0: need(1); pos += 1; continue;
      case 0xcd: case 0xd1: need(2); pos += 2; continue;
      case 0xce: case 0xd2: need(4); pos += 4; continue;
      case 0xcf: case 0xd3: need(8); pos += 8; continue;
      case 0xd4: ext(1); continue;
      case 0xd5: ext(2); continue;
      case 0xd6: ext(4); continue;
      case 0xd7: ext(8); continue;
      case 0xd8: ext(16); continue;
      case 0xd9: need(1); str(buf[pos++]!); continue;
      case 0xda: need(2); pos += 2; str(dv.getUint16(pos - 2)); continue;
      case 0xdb: need(4); pos += 4; str(dv.getUint32(pos - 4)); continue;
      case 0xdc: need(2); pos += 2; container(dv.getUint16(pos - 2), false); continue;
      case 0xdd: need(4); pos += 4; container(dv.getUint32(pos - 4), false); continue;
      case 0xde: need(2); pos += 2; container(dv.getUint16(pos - 2), true); continue;
      case 0xdf: need(4); pos += 4; container(dv.getUint32(pos - 4), true); continue;
      default: refuse(`byte 0x${b.toString(16)} is not msgpack`);
    }
  }
}

/** The encoder both protocols use: plain maps (no records), typed arrays kept as such. */
const packr = new Packr({ useRecords: false, moreTypes: true });

export function packMsg(value: unknown): Buffer {
  return packr.pack(value);
}

/** Checks `frame` against `limits`, then decodes it. Throws FerryError EPROTO. */
export function unpackChecked(frame: Uint8Array, limits: MsgpackLimits): unknown {
  checkMsgpack(frame, limits);
  try {
    return packr.unpack(frame);
  } catch (e) {
    return refuse((e as Error).message);
  }
}
