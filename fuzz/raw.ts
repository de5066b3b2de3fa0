/**
 * Raw TCP to a host: hand-made HTTP upgrade requests and WebSocket frames (any bits, opcodes,
 * masks and lengths), for the abuse the `ws` client would never send.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export interface RawSocket {
  sock: Socket;
  /** Everything received so far. */
  received(): Buffer;
  closed: Promise<void>;
  isClosed(): boolean;
  /** Resolves when `pred(received)` holds, the socket closes, or `timeoutMs` passes. */
  waitFor(pred: (b: Buffer) => boolean, timeoutMs: number): Promise<boolean>;
}

export function openRaw(host: string, port: number, o: { localAddress?: string; timeoutMs?: number } = {}): Promise<RawSocket> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port, ...(o.localAddress !== undefined ? { localAddress: o.localAddress } : {}) });
    const chunks: Buffer[] = [];
    let size = 0;
    let closedFlag = false;
    const waiters: (() => void)[] = [];
    const wake = () => { for (const w of waiters.splice(0)) w(); };
    sock.on('data', (d: Buffer) => {
      if (size < 1 << 20) {
        chunks.push(d);
        size += d.length;
      }
      wake();
    });
    const closed = new Promise<void>((r) => sock.once('close', () => {
      closedFlag = true;
      wake();
      r();
    }));
    sock.on('error', () => {});
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('raw connect timed out'));
    }, o.timeoutMs ?? 3000);
    sock.once('connect', () => {
      clearTimeout(timer);
      const received = () => (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
      resolve({
        sock, closed, received,
        isClosed: () => closedFlag,
        async waitFor(pred, timeoutMs) {
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            if (pred(received())) return true;
            const left = deadline - Date.now();
            if (left <= 0 || closedFlag) return false;
            await new Promise<void>((r) => {
              const t = setTimeout(r, left);
              waiters.push(() => { clearTimeout(t); r(); });
            });
          }
        },
      });
    });
    sock.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

export function wsKey(): string {
  return randomBytes(16).toString('base64');
}

/** A valid upgrade request for `path`, with `headers` added (or overriding). */
export function upgradeRequest(path: string, host: string, headers: Record<string, string> = {}, method = 'GET', version = 'HTTP/1.1'): string {
  const h: Record<string, string> = {
    Host: host, Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': wsKey(), 'Sec-WebSocket-Version': '13', ...headers,
  };
  return `${method} ${path} ${version}\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`;
}

export interface FrameSpec {
  fin?: boolean;
  rsv?: number;
  opcode: number;
  /** Mask the payload (clients must); a key of all zeros when `zeroMask`. */
  mask?: boolean;
  payload?: Uint8Array;
  /** Announce this length instead of the payload's (a lying header). */
  announced?: number | bigint;
  /** Force the 16- or 64-bit length form even when a shorter one would do. */
  lengthForm?: 7 | 16 | 64;
}

/** One WebSocket frame, as the spec lays it out (RFC 6455 §5.2), with whatever the spec says it must not have. */
export function wsFrame(f: FrameSpec): Buffer {
  const payload = f.payload ?? new Uint8Array(0);
  const len = f.announced ?? payload.length;
  const big = typeof len === 'bigint' ? len : BigInt(len);
  const form = f.lengthForm ?? (big < 126n ? 7 : big < 65536n ? 16 : 64);
  const head: number[] = [((f.fin ?? true) ? 0x80 : 0) | ((f.rsv ?? 0) & 0x7) << 4 | (f.opcode & 0xf)];
  const maskBit = (f.mask ?? true) ? 0x80 : 0;
  if (form === 7) head.push(maskBit | Number(big & 0x7fn));
  else if (form === 16) head.push(maskBit | 126, Number((big >> 8n) & 0xffn), Number(big & 0xffn));
  else {
    head.push(maskBit | 127);
    for (let i = 7; i >= 0; i--) head.push(Number((big >> BigInt(8 * i)) & 0xffn));
  }
  let body = Buffer.from(payload);
  if (f.mask ?? true) {
    const key = randomBytes(4);
    head.push(...key);
    body = Buffer.from(payload.map((b, i) => b ^ key[i & 3]!));
  }
  return Buffer.concat([Buffer.from(head), body]);
}
