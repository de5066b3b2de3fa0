/**
 * WebSocket connections to a host under test: a fuzz connection (every message queued, raw and
 * decoded, close code kept) and a legit control client with deadlines on everything.
 */
import WebSocket from 'ws';
import { TagStream, type FrameKeys } from '../src/wire/frame-mac.ts';
import { packr } from './msgpack.ts';
import { frameKeys, nonce, proof, versionFrom } from './wire.ts';

export interface Incoming {
  data: Buffer;
  binary: boolean;
  /** The decoded message when it is a msgpack map. */
  msg: Record<string, unknown> | undefined;
}

export interface CloseInfo {
  code: number;
  reason: string;
}

export interface OpenOptions {
  localAddress?: string;
  timeoutMs?: number;
  maxPayload?: number;
  /** Called for every frame sent (the fuzzer's frame counter). */
  onSend?: () => void;
}

function toBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

export class FuzzConn {
  private readonly queue: Incoming[] = [];
  private waiters: (() => void)[] = [];
  private closeInfo: CloseInfo | undefined;
  private tags: { out: TagStream; in: TagStream } | undefined;
  private armed: FrameKeys | undefined;
  readonly closed: Promise<CloseInfo>;

  private constructor(readonly ws: WebSocket, private readonly onSend: () => void) {
    ws.on('message', (data, isBinary) => {
      let buf = toBuffer(data);
      if (this.tags) {
        const message = this.tags.in.open(buf);
        if (message === undefined) {
          // The host's message failed its tag: a host bug, shown to the oracle as a non-msgpack frame.
          this.queue.push({ data: buf, binary: isBinary, msg: undefined });
          this.wake();
          return;
        }
        buf = message;
      }
      let msg: Record<string, unknown> | undefined;
      if (isBinary && !(buf.length >= 8 && buf[0] === 0x50 && buf[1] === 0)) {
        try {
          const v: unknown = packr.unpack(buf);
          if (v !== null && typeof v === 'object' && !Array.isArray(v)) msg = v as Record<string, unknown>;
        } catch {
          msg = undefined;
        }
      }
      // Tags start right behind `ready`: switched on here, in the same event, since the host may
      // push an event in the same read (a caller awaiting `ready` would switch too late).
      if (msg?.t === 'ready' && this.armed && !this.tags) {
        this.tags = { out: new TagStream(this.armed.send), in: new TagStream(this.armed.receive) };
        this.armed = undefined;
      }
      // Pushed events (VM state, console, migration progress) say nothing about a fuzz case.
      if (msg?.t === 'event') return;
      if (this.queue.length < 10_000) this.queue.push({ data: buf, binary: isBinary, msg });
      this.wake();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        this.wake();
        resolve(this.closeInfo);
      });
    });
    ws.on('error', () => {});
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  static open(url: string, o: OpenOptions = {}): Promise<FuzzConn> {
    const ws = new WebSocket(url, {
      perMessageDeflate: false,
      maxPayload: o.maxPayload ?? 64 * 1024 * 1024,
      handshakeTimeout: o.timeoutMs ?? 3000,
      ...(o.localAddress !== undefined ? { localAddress: o.localAddress } : {}),
    });
    ws.on('error', () => {});
    const conn = new FuzzConn(ws, o.onSend ?? (() => {}));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error(`no WebSocket upgrade from ${url} within ${o.timeoutMs ?? 3000} ms`));
      }, (o.timeoutMs ?? 3000) + 500);
      ws.once('open', () => {
        clearTimeout(timer);
        resolve(conn);
      });
      ws.once('unexpected-response', (_req, res) => {
        clearTimeout(timer);
        ws.terminate();
        reject(new Error(`HTTP ${res.statusCode} from ${url}`));
      });
      ws.once('close', () => {
        clearTimeout(timer);
        reject(new Error(`${url} closed before the upgrade`));
      });
      ws.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  get closedWith(): CloseInfo | undefined {
    return this.closeInfo;
  }

  /** Sends one frame (binary unless `text`); false if the connection is not open. */
  send(data: Uint8Array | string, text = false): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.onSend();
    if (this.tags) {
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      this.ws.send(Buffer.concat([bytes, this.tags.out.tag(bytes)]), { binary: !text });
    } else {
      this.ws.send(data, { binary: !text });
    }
    return true;
  }

  /**
   * For a hello with the token over plain TCP, before it is sent: from the host's `ready` on, tag
   * what this sends and check and strip the tags of what it hears (src/wire/frame-mac.ts).
   */
  tagAfterReady(keys: FrameKeys): void {
    this.armed = keys;
  }

  /** Sends `msg` msgpack-encoded. */
  sendMsg(msg: unknown): boolean {
    return this.send(new Uint8Array(packr.pack(msg)));
  }

  /** The next incoming message matching `pred` (others stay queued); undefined on timeout or close. */
  async next(timeoutMs: number, pred: (m: Incoming) => boolean = () => true): Promise<Incoming | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.queue.findIndex(pred);
      if (i >= 0) return this.queue.splice(i, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0 || this.closeInfo) return undefined;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The next decoded message with `t` in `types` (any, if empty). */
  async nextMsg(timeoutMs: number, ...types: string[]): Promise<Record<string, unknown> | undefined> {
    const m = await this.next(timeoutMs, (x) => x.msg !== undefined && (types.length === 0 || types.includes(String(x.msg.t))));
    return m?.msg;
  }

  /** Messages that arrived so far, taken out of the queue. */
  drain(): Incoming[] {
    return this.queue.splice(0);
  }

  /** Waits until the host closes the connection (true) or `timeoutMs` passes (false). */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    if (this.closeInfo) return true;
    let t: NodeJS.Timeout | undefined;
    const r = await Promise.race([this.closed.then(() => true), new Promise<boolean>((resolve) => { t = setTimeout(() => resolve(false), timeoutMs); })]);
    clearTimeout(t);
    return r;
  }

  close(code?: number, reason?: string): void {
    try {
      this.ws.close(code, reason);
    } catch {
      this.ws.terminate();
    }
  }

  terminate(): void {
    this.ws.terminate();
  }
}

export class RequestError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** A well-behaved control client (from 127.0.0.1), every step with a deadline. */
export class LegitClient {
  private nextId = 1;

  private constructor(readonly conn: FuzzConn) {}

  static async connect(url: string, token: string | undefined, timeoutMs: number): Promise<LegitClient> {
    const t0 = Date.now();
    const left = () => Math.max(1, timeoutMs - (Date.now() - t0));
    const conn = await FuzzConn.open(`${url}/control`, { localAddress: '127.0.0.1', timeoutMs: left() });
    try {
      const hello = await conn.nextMsg(left(), 'hello');
      if (!hello) throw new Error(`no hello from ${url} within ${timeoutMs} ms${conn.closedWith ? ` (closed ${conn.closedWith.code} ${conn.closedWith.reason})` : ''}`);
      const challenge = hello.challenge;
      const ours = nonce();
      if (token !== undefined && challenge instanceof Uint8Array) conn.tagAfterReady(frameKeys(token, 'client', '/control', challenge, ours));
      conn.sendMsg({
        t: 'hello', v: versionFrom(hello, '/control'), client: 'ferry-fuzz-oracle', nonce: ours,
        ...(token !== undefined && challenge instanceof Uint8Array ? { mac: proof(token, 'client', '/control', challenge) } : {}),
      });
      const ready = await conn.nextMsg(left(), 'ready');
      if (!ready) throw new Error(`no ready from ${url} within ${timeoutMs} ms${conn.closedWith ? ` (closed ${conn.closedWith.code} ${conn.closedWith.reason})` : ''}`);
      return new LegitClient(conn);
    } catch (e) {
      conn.terminate();
      throw e;
    }
  }

  async request<T = unknown>(method: string, params: Record<string, unknown>, timeoutMs: number): Promise<T> {
    const id = this.nextId++;
    if (!this.conn.sendMsg({ t: 'req', id, method, params })) throw new Error('control connection closed');
    const res = await this.conn.nextMsg(timeoutMs, 'res');
    for (let m = res; ; ) {
      if (!m) throw new Error(`no answer to ${method} within ${timeoutMs} ms${this.conn.closedWith ? ` (closed ${this.conn.closedWith.code})` : ''}`);
      if (m.id === id) {
        if (m.ok === true) return m.result as T;
        const err = (m.error ?? {}) as { code?: unknown; message?: unknown };
        throw new RequestError(String(err.code), String(err.message));
      }
      m = await this.conn.nextMsg(timeoutMs, 'res');
    }
  }

  close(): void {
    this.conn.drain();
    this.conn.terminate();
  }
}
