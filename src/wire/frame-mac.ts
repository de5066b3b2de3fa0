/**
 * Every message after the hello authenticated, where TLS is off and a token is set: each side
 * appends a 16-byte tag to each message it sends and checks the tag of each it receives, so
 * nobody on the path can inject, alter, replay, reorder or drop a message unnoticed (they can
 * still read them, and cut the connection: only TLS hides guest memory).
 *
 * The tag is ChaCha20-Poly1305 over an empty plaintext with the message as associated data
 * (a Poly1305 MAC whose one-time key ChaCha20 derives from the key and nonce; about 10 GB/s
 * here, six times HMAC-SHA256). Each direction has its own key, from HKDF-SHA256 over the
 * token with both sides' fresh challenges as salt and the endpoint as info, so keys are new on
 * every connection and a message sent on one connection, endpoint or direction fails on any
 * other. The nonce is the message's sequence number in its direction: it is never sent (the
 * stream is ordered), never repeats under one key, and makes any message out of place fail.
 */
import { createCipheriv, createDecipheriv, hkdfSync } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { LinkSocket } from './socket.ts';

export const TAG_BYTES = 16;
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
/**
 * Whether a message heard on a link has its ArrayBuffer to itself, so it can be transferred to
 * another thread instead of copied: ws gives a large message a buffer of its own (a small one
 * may be a slice of a shared read buffer), and a tagged one ends TAG_BYTES before it (the tag).
 */
export function ownsItsBuffer(message: Uint8Array): boolean {
  if (!(message.buffer instanceof ArrayBuffer) || message.byteOffset !== 0) return false;
  const rest = message.buffer.byteLength - message.byteLength;
  return rest === 0 || (rest === TAG_BYTES && message.byteLength >= 64 * 1024);
}

/** The close code sent when a message fails its tag. */
export const CLOSE_FRAME_AUTH = 4003;

export interface FrameKeys {
  send: Buffer;
  receive: Buffer;
}

/**
 * The two keys of one connection, as `side` sees them. `endpoint` is the path (/control,
 * /migrate); `challenge` is the host's, `nonce` the client's, as exchanged in the hello.
 */
export function frameKeys(token: string, side: 'client' | 'host', endpoint: string, challenge: Uint8Array, nonce: Uint8Array): FrameKeys {
  const salt = Buffer.concat([challenge, nonce]);
  const key = (direction: string) => Buffer.from(hkdfSync('sha256', token, salt, `ferry frames ${endpoint} ${direction}`, KEY_BYTES));
  const toHost = key('client->host');
  const toClient = key('host->client');
  return side === 'client' ? { send: toHost, receive: toClient } : { send: toClient, receive: toHost };
}

/**
 * The keys for a connection's messages, or undefined when they need none: without a token
 * there is no secret to key them with, and over TLS (a non-empty channel binding) TLS already
 * authenticates every record.
 */
export function frameKeysFor(
  token: string | undefined, side: 'client' | 'host', endpoint: string, challenge: Uint8Array | undefined, nonce: Uint8Array, binding: Uint8Array,
): FrameKeys | undefined {
  if (token === undefined || challenge === undefined || binding.length > 0) return undefined;
  return frameKeys(token, side, endpoint, challenge, nonce);
}

/** One direction's tags: a key and the sequence number of the next message. */
export class TagStream {
  private seq = 0n;
  constructor(private readonly key: Buffer) {}

  tag(message: Uint8Array): Buffer {
    const nonce = Buffer.alloc(NONCE_BYTES);
    nonce.writeBigUInt64BE(this.seq++, NONCE_BYTES - 8);
    const c = createCipheriv('chacha20-poly1305', this.key, nonce, { authTagLength: TAG_BYTES });
    c.setAAD(message, { plaintextLength: 0 });
    c.final();
    return c.getAuthTag();
  }

  /** The message without its tag, or undefined if the tag is wrong (the sequence number still moves on: the link is closed anyway). */
  open(frame: Buffer): Buffer | undefined {
    if (frame.length < TAG_BYTES) return undefined;
    const message = frame.subarray(0, frame.length - TAG_BYTES);
    const nonce = Buffer.alloc(NONCE_BYTES);
    nonce.writeBigUInt64BE(this.seq++, NONCE_BYTES - 8);
    const d = createDecipheriv('chacha20-poly1305', this.key, nonce, { authTagLength: TAG_BYTES });
    d.setAAD(message, { plaintextLength: 0 });
    d.setAuthTag(frame.subarray(frame.length - TAG_BYTES));
    try {
      d.final();
      return message;
    } catch {
      return undefined;
    }
  }
}

/**
 * A LinkSocket whose messages carry tags: what it sends is tagged, what it hears is checked and
 * handed on without its tag; the first message that fails closes the link (CLOSE_FRAME_AUTH)
 * and nothing after it is heard. Close, error, ping and pong pass through (WebSocket control
 * frames: a forged one can only end the link, which anyone on the path can do anyway).
 */
export class MacSocket extends EventEmitter implements LinkSocket {
  readonly CONNECTING: number;
  readonly OPEN: number;
  private readonly out: TagStream;
  private readonly in: TagStream;
  private failed = false;

  constructor(private readonly ws: LinkSocket, keys: FrameKeys) {
    super();
    this.CONNECTING = ws.CONNECTING;
    this.OPEN = ws.OPEN;
    this.out = new TagStream(keys.send);
    this.in = new TagStream(keys.receive);
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on('close', (code: number, reason: Buffer) => this.emit('close', code, reason));
    // An 'error' nobody listens for would throw out of the socket's event: only pass it on to listeners.
    ws.on('error', (err: Error) => { if (this.listenerCount('error') > 0) this.emit('error', err); });
    ws.on('ping', (data: Buffer) => this.emit('ping', data));
    ws.on('pong', (data: Buffer) => this.emit('pong', data));
  }

  get readyState(): number { return this.ws.readyState; }
  get bufferedAmount(): number { return this.ws.bufferedAmount; }
  get isPaused(): boolean { return this.ws.isPaused; }

  send(data: Uint8Array, cb?: (err?: Error) => void): void {
    this.ws.send(Buffer.concat([data, this.out.tag(data)]), cb);
  }

  ping(): void { this.ws.ping(); }
  close(code?: number, reason?: string): void { this.ws.close(code, reason); }
  terminate(): void { this.ws.terminate(); }
  pause(): void { this.ws.pause(); }
  resume(): void { this.ws.resume(); }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.failed) return;
    const message = this.in.open(data);
    if (message === undefined) {
      this.failed = true;
      this.emit('frame-auth-failed');
      if (this.ws.readyState === this.ws.OPEN) this.ws.close(CLOSE_FRAME_AUTH, 'message authentication failed');
      return;
    }
    this.emit('message', message, isBinary);
  }
}
