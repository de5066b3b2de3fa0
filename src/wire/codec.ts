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
  new MsgpackWalk(buf, limits).run();
}

/** One walk over an encoded value: a position, and a stack of the open arrays and maps. */
class MsgpackWalk {
  private readonly dv: DataView;
  private pos = 0;
  /** Items still to read in each open array/map (a map counts keys and values), and whether it is a map. */
  private readonly open: number[] = [];
  private readonly isMap: boolean[] = [];
  private items = 1;

  constructor(private readonly buf: Uint8Array, private readonly limits: MsgpackLimits) {
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  run(): void {
    const { buf } = this;
    for (;;) {
      while (this.items === 0) {
        if (this.open.length === 0) {
          if (this.pos !== buf.length) refuse(`${buf.length - this.pos} trailing bytes`);
          return;
        }
        this.items = this.open.pop()!;
        this.isMap.pop();
      }
      this.items--;
      const depth = this.open.length;
      const mapKey = depth > 0 && this.isMap[depth - 1]! && this.items % 2 === 1;
      this.need(1);
      const b = buf[this.pos++]!;
      if (mapKey && !((b >= 0xa0 && b <= 0xbf) || b === 0xd9 || b === 0xda || b === 0xdb)) refuse('a map key that is not a string');
      if (b <= 0x7f || b >= 0xe0) continue; // fixint
      if (b <= 0x8f) { this.container(b & 0x0f, true); continue; }
      if (b <= 0x9f) { this.container(b & 0x0f, false); continue; }
      if (b <= 0xbf) { this.str(b & 0x1f, mapKey); continue; }
      switch (b) {
        case 0xc0: case 0xc2: case 0xc3: continue; // nil, false, true
        case 0xc4: this.body(this.u8(), this.limits.maxBinary, 'a binary'); continue;
        case 0xc5: this.body(this.u16(), this.limits.maxBinary, 'a binary'); continue;
        case 0xc6: this.body(this.u32(), this.limits.maxBinary, 'a binary'); continue;
        case 0xc7: this.ext(this.u8()); continue;
        case 0xc8: this.ext(this.u16()); continue;
        case 0xc9: this.ext(this.u32()); continue;
        case 0xca: case 0xce: case 0xd2: this.skip(4); continue; // float 32, (u)int 32
        case 0xcb: case 0xcf: case 0xd3: this.skip(8); continue; // float 64, (u)int 64
        case 0xcc: case 0xd0: this.skip(1); continue;
        case 0xcd: case 0xd1: this.skip(2); continue;
        case 0xd4: this.ext(1); continue;
        case 0xd5: this.ext(2); continue;
        case 0xd6: this.ext(4); continue;
        case 0xd7: this.ext(8); continue;
        case 0xd8: this.ext(16); continue;
        case 0xd9: this.str(this.u8(), mapKey); continue;
        case 0xda: this.str(this.u16(), mapKey); continue;
        case 0xdb: this.str(this.u32(), mapKey); continue;
        case 0xdc: this.container(this.u16(), false); continue;
        case 0xdd: this.container(this.u32(), false); continue;
        case 0xde: this.container(this.u16(), true); continue;
        case 0xdf: this.container(this.u32(), true); continue;
        default: refuse(`byte 0x${b.toString(16)} is not msgpack`);
      }
    }
  }

  private need(n: number): void {
    if (this.pos + n > this.buf.length) refuse('truncated');
  }

  private skip(n: number): void {
    this.need(n);
    this.pos += n;
  }

  private u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  private u16(): number {
    this.need(2);
    this.pos += 2;
    return this.dv.getUint16(this.pos - 2);
  }

  private u32(): number {
    this.need(4);
    this.pos += 4;
    return this.dv.getUint32(this.pos - 4);
  }

  private body(n: number, max: number, what: string): void {
    if (n > max) refuse(`${what} of ${n} bytes exceeds ${max}`);
    this.skip(n);
  }

  private str(n: number, mapKey: boolean): void {
    this.body(n, mapKey ? MAX_KEY_BYTES : this.limits.maxString, mapKey ? 'a map key' : 'a string');
  }

  private container(n: number, map: boolean): void {
    if (n > this.limits.maxItems) refuse(`${map ? 'map' : 'array'} of ${n} items exceeds ${this.limits.maxItems}`);
    const slots = map ? 2 * n : n;
    if (slots > this.buf.length - this.pos) refuse(`${map ? 'map' : 'array'} announces ${n} items, more than the frame holds`);
    if (this.open.length + 1 > this.limits.maxDepth) refuse(`nesting deeper than ${this.limits.maxDepth}`);
    this.open.push(this.items);
    this.isMap.push(map);
    this.items = slots;
  }

  private ext(len: number): void {
    this.need(1);
    const type = this.dv.getInt8(this.pos++);
    if (type === EXT_UNDEFINED && len === 1) {
      this.skip(1);
      return;
    }
    if (type !== EXT_TYPED_ARRAY) refuse(`extension type ${type} is not allowed`);
    if (len < 1) refuse('an empty typed array extension');
    this.need(1);
    const code = this.buf[this.pos]!;
    if (code !== TYPED_UINT8 && !(code === TYPED_UINT32 && (len - 1) % 4 === 0)) refuse(`typed array code ${code} is not allowed`);
    this.body(len, this.limits.maxBinary + 1, 'a typed array');
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
