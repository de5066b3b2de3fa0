/**
 * Raw WebSocket abuse over a plain TCP socket: broken HTTP upgrade requests, huge headers, and
 * frames no client may send (reserved bits and opcodes, unmasked, 64-bit lengths announcing
 * 2^62, fragmented control frames, close frames with bad codes or >123-byte reasons).
 */
import { packr } from '../msgpack.ts';
import type { RawSocket } from '../raw.ts';
import { upgradeRequest, wsFrame, type FrameSpec } from '../raw.ts';
import type { Rng } from '../rng.ts';
import { longString } from '../values.ts';
import { macFor, nonce, versionFrom, type Path } from '../wire.ts';
import type { CaseContext, Strategy } from './types.ts';

function hostHeader(ctx: CaseContext): string {
  return `${ctx.target.host}:${ctx.target.port}`;
}

/** A broken (or odd) upgrade request. */
function badRequest(ctx: CaseContext, path: Path): { variant: string; data: string | Uint8Array } {
  const rng = ctx.rng;
  const host = hostHeader(ctx);
  const variants: [string, () => string | Uint8Array][] = [
    ['no-key', () => upgradeRequest(path, host, { 'Sec-WebSocket-Key': '' })],
    ['bad-key', () => upgradeRequest(path, host, { 'Sec-WebSocket-Key': rng.pick(['x', 'AAAA', '!'.repeat(24), longString(rng).replace(/[\r\n]/g, '')]) })],
    ['bad-version', () => upgradeRequest(path, host, { 'Sec-WebSocket-Version': rng.pick(['8', '14', '0', 'abc', '13, 8', '-1']) })],
    ['no-upgrade', () => upgradeRequest(path, host, { Upgrade: rng.pick(['h2c', '', 'websocket2']), Connection: rng.pick(['close', 'keep-alive']) })],
    ['method', () => upgradeRequest(path, host, {}, rng.pick(['POST', 'PUT', 'HEAD', 'get', 'CONNECT', 'X'.repeat(100)]))],
    ['http-version', () => upgradeRequest(path, host, {}, 'GET', rng.pick(['HTTP/1.0', 'HTTP/2.0', 'HTTP/9.9', 'HTTX/1.1', '']))],
    ['path', () => upgradeRequest(rng.pick(['/', '/x', '*', `${path}?${'q'.repeat(8000)}`, `http://${host}${path}`, `/${'%00'.repeat(10)}`, '//control', '/control/../migrate', `${path}#frag`]), host)],
    ['huge-header', () => upgradeRequest(path, host, { 'X-Fuzz': 'h'.repeat(rng.pick([8000, 16_000, 17_000, 65_000, 200_000])) })],
    ['many-headers', () => upgradeRequest(path, host, Object.fromEntries(Array.from({ length: rng.pick([100, 2000, 5000]) }, (_, i) => [`X-H${i}`, 'v'])))],
    ['duplicate-headers', () => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n\r\n`],
    ['bare-lf', () => upgradeRequest(path, host).replace(/\r\n/g, '\n')],
    ['no-colon', () => `GET ${path} HTTP/1.1\r\nHost ${host}\r\nUpgrade websocket\r\n\r\n`],
    ['obs-fold', () => upgradeRequest(path, host, { 'X-Folded': 'a\r\n  b' })],
    ['body', () => upgradeRequest(path, host, { 'Content-Length': String(rng.pick([10, 1e9, -1])) }) + 'x'.repeat(rng.int(20))],
    ['chunked', () => upgradeRequest(path, host, { 'Transfer-Encoding': 'chunked' }) + 'ffffffffffff\r\nxyz\r\n'],
    ['extensions', () => upgradeRequest(path, host, { 'Sec-WebSocket-Extensions': rng.pick(['permessage-deflate; client_max_window_bits=99', 'x; y=' + 'z'.repeat(500), ';;;']), 'Sec-WebSocket-Protocol': rng.pick(['a,b,,', 'p'.repeat(1000), ' ']) })],
    ['pipelined', () => upgradeRequest(path, host) + upgradeRequest(path, host)],
    ['garbage', () => rng.bytes(rng.size(4096))],
    ['tls-hello', () => Uint8Array.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, ...rng.bytes(64)])],
    ['h2-preface', () => 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
    ['utf8-path', () => `GET ${path}/€😀\u0000 HTTP/1.1\r\nHost: ${host}\r\n\r\n`],
  ];
  const [variant, make] = rng.pick(variants);
  return { variant, data: make() };
}

export const rawHttp: Strategy = {
  name: 'raw-http', surfaces: ['control', 'migrate'], weight: 4,
  async run(ctx) {
    const path = ctx.path();
    const { variant, data } = badRequest(ctx, path);
    ctx.note(variant);
    const sock = await ctx.raw();
    ctx.write(sock, data);
    await sock.waitFor((b) => b.includes('\r\n\r\n'), 1500);
  },
};

/** Splits server frames (unmasked) out of a byte stream: opcode and payload of each complete one. */
export function serverFrames(buf: Buffer): { opcode: number; payload: Buffer }[] {
  const out: { opcode: number; payload: Buffer }[] = [];
  let o = 0;
  while (o + 2 <= buf.length) {
    const opcode = buf[o]! & 0x0f;
    let len = buf[o + 1]! & 0x7f;
    let h = 2;
    if (len === 126) {
      if (o + 4 > buf.length) break;
      len = buf.readUInt16BE(o + 2);
      h = 4;
    } else if (len === 127) {
      if (o + 10 > buf.length) break;
      len = Number(buf.readBigUInt64BE(o + 2));
      h = 10;
    }
    if (o + h + len > buf.length) break;
    out.push({ opcode, payload: buf.subarray(o + h, o + h + len) });
    o += h + len;
  }
  return out;
}

/** Upgrades a raw socket; true once the host answered 101 (the rest of the buffer holds its frames). */
async function upgrade(ctx: CaseContext, sock: RawSocket, path: Path): Promise<number> {
  ctx.write(sock, upgradeRequest(path, hostHeader(ctx)));
  const ok = await sock.waitFor((b) => b.includes('\r\n\r\n'), 2000);
  const text = sock.received().toString('latin1');
  if (!ok || !text.startsWith('HTTP/1.1 101')) return -1;
  return text.indexOf('\r\n\r\n') + 4;
}

function abusiveFrame(rng: Rng): { variant: string; spec: FrameSpec | Buffer[] } {
  const payload = () => rng.bytes(rng.size(256));
  const variants: [string, () => FrameSpec | Buffer[]][] = [
    ['rsv-bits', () => ({ opcode: 2, rsv: rng.range(1, 7), payload: payload() })],
    ['reserved-opcode', () => ({ opcode: rng.pick([3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]), payload: payload() })],
    ['unmasked', () => ({ opcode: rng.pick([1, 2, 9]), mask: false, payload: payload() })],
    ['len-2^62', () => ({ opcode: 2, announced: 2n ** 62n, lengthForm: 64, payload: rng.bytes(16) })],
    ['len-2^63', () => ({ opcode: 2, announced: 2n ** 63n + 5n, lengthForm: 64, payload: rng.bytes(16) })],
    ['len-2^53', () => ({ opcode: 2, announced: 2n ** 53n, lengthForm: 64, payload: rng.bytes(16) })],
    ['len-over-max', () => ({ opcode: 2, announced: rng.pick([33 * 1024 * 1024, 3 * 1024 * 1024, 0xffff_ffff]), lengthForm: 64, payload: rng.bytes(16) })],
    ['non-minimal-length', () => ({ opcode: 2, lengthForm: rng.pick([16, 64] as const), payload: rng.bytes(5) })],
    ['fragmented-ping', () => ({ opcode: 9, fin: false, payload: rng.bytes(4) })],
    ['long-ping', () => ({ opcode: rng.pick([9, 10]), payload: rng.bytes(rng.pick([126, 200, 65_536])) })],
    ['close-bad-code', () => ({ opcode: 8, payload: codePayload(rng.pick([0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65_535]), 'bye') })],
    ['close-long-reason', () => ({ opcode: 8, payload: codePayload(1000, longString(rng)) })],
    ['close-one-byte', () => ({ opcode: 8, payload: Uint8Array.of(3) })],
    ['close-bad-utf8', () => ({ opcode: 8, payload: Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from([0xff, 0xfe, 0xc0])]) })],
    ['continuation-first', () => ({ opcode: 0, payload: payload() })],
    ['interleaved-data', () => [wsFrame({ opcode: 2, fin: false, payload: payload() }), wsFrame({ opcode: 1, payload: Buffer.from('x') })]],
    ['many-fragments', () => {
      const n = rng.pick([50, 200, 1000]);
      const frames = [wsFrame({ opcode: 2, fin: false, payload: Uint8Array.of(0x81) })];
      for (let i = 0; i < n; i++) frames.push(wsFrame({ opcode: 0, fin: false, payload: Uint8Array.of(0x91) }));
      if (rng.chance(0.5)) frames.push(wsFrame({ opcode: 0, fin: true, payload: Uint8Array.of(0xc0) }));
      return frames;
    }],
    ['text-bad-utf8', () => ({ opcode: 1, payload: Uint8Array.from([0xc3, 0x28, 0xa0, 0xa1, 0xf0, 0x28, 0x8c, 0xbc]) })],
    ['pong-unsolicited', () => ({ opcode: 10, payload: rng.bytes(8) })],
    ['zero-length', () => ({ opcode: rng.pick([1, 2]), payload: new Uint8Array(0) })],
  ];
  const [variant, make] = rng.pick(variants);
  return { variant, spec: make() };
}

function codePayload(code: number, reason: string): Uint8Array {
  const r = Buffer.from(reason, 'utf8');
  const b = Buffer.alloc(2 + r.length);
  b.writeUInt16BE(code & 0xffff, 0);
  r.copy(b, 2);
  return b;
}

export const rawWsFrames: Strategy = {
  name: 'raw-ws-frames', surfaces: ['control', 'migrate'], weight: 4,
  async run(ctx) {
    const rng = ctx.rng;
    const path = ctx.path();
    const sock = await ctx.raw();
    const bodyAt = await upgrade(ctx, sock, path);
    if (bodyAt < 0) {
      ctx.note('!upgrade-refused');
      return;
    }
    // Half the cases get through the hello first (the authenticated surface).
    if (rng.chance(0.5)) {
      await sock.waitFor((b) => serverFrames(b.subarray(bodyAt)).length > 0, 2000);
      const first = serverFrames(sock.received().subarray(bodyAt))[0];
      let hello: Record<string, unknown> | undefined;
      try {
        hello = first ? (packr.unpack(first.payload) as Record<string, unknown>) : undefined;
      } catch {
        hello = undefined;
      }
      const mine = {
        t: 'hello', v: versionFrom(hello, path), nonce: nonce(),
        ...(path === '/control' ? { client: 'ferry-fuzz-raw' } : { role: 'bulk', id: ctx.freshName('id') }),
        ...macFor('valid', path, ctx.target.token, hello?.challenge, rng),
      };
      ctx.write(sock, wsFrame({ opcode: 2, payload: packr.pack(mine) }));
      await sock.waitFor((b) => serverFrames(b.subarray(bodyAt)).length > 1, 2000);
      ctx.note('after-hello');
    }
    for (let i = rng.range(1, 4); i > 0 && !sock.isClosed(); i--) {
      const { variant, spec } = abusiveFrame(rng);
      ctx.note(variant);
      // Several frames go in one write (each counts as a frame).
      if (Array.isArray(spec)) ctx.write(sock, Buffer.concat(spec), spec.length);
      else ctx.write(sock, wsFrame(spec));
    }
    await sock.waitFor(() => sock.isClosed(), 1000);
  },
};
