import { EventEmitter } from 'node:events';
import type { TlsTrust } from './tls.ts';
import { FerryError } from '../errors.ts';
import { CONTROL_MAX_PAYLOAD, CONTROL_PROTOCOL_VERSION, decodeFromHost, encode, hostMsgSchema, type HostMsg } from './control-protocol.ts';
import { closeError, openLink } from './link.ts';
import type { LinkSocket } from './socket.ts';

export interface ConnectOptions {
  token?: string;
  /** For wss:// hosts: the CA to trust (default: the system's), and a client certificate if any. */
  tls?: TlsTrust;
  client?: string;
  timeoutMs?: number;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

/**
 * A control-protocol client (CLI, monitor, tests). `request` returns the result or throws a
 * FerryError with the host's code; pushed events are emitted as 'event' (event, vm, data).
 */
export class ControlClient extends EventEmitter {
  hostName = '';
  /** The host process's incarnation (new at each start of it). */
  incarnation = '';
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closedWith: FerryError | undefined;

  private constructor(private readonly ws: LinkSocket, private readonly url: string) {
    super();
  }

  static async connect(url: string, o: ConnectOptions = {}): Promise<ControlClient> {
    const endpoint = new URL(url);
    if (endpoint.protocol !== 'ws:' && endpoint.protocol !== 'wss:') {
      throw new FerryError('EINVAL', `host URL must start with ws:// or wss:// (got ${url})`);
    }
    if (endpoint.pathname === '/' || endpoint.pathname === '') endpoint.pathname = '/control';
    const { ws, host, incarnation } = await openLink({
      url: endpoint.href, display: url, version: CONTROL_PROTOCOL_VERSION, maxPayload: CONTROL_MAX_PAYLOAD,
      hello: { client: o.client ?? 'ferry-cli' },
      ...(o.token !== undefined ? { token: o.token } : {}),
      ...(o.tls !== undefined ? { tls: o.tls } : {}),
      ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
    });
    const client = new ControlClient(ws, url);
    client.hostName = host;
    client.incarnation = incarnation;
    ws.on('message', (d: Buffer) => client.onMessage(d));
    ws.on('error', () => {});
    ws.on('close', (code, reason) => client.onClosed(closeError(url, code, reason.toString())));
    return client;
  }

  private onClosed(e: FerryError): void {
    if (this.closedWith) return;
    this.closedWith = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.emit('close', e);
  }

  /** A message from the host, checked; a host that breaks the protocol loses this connection. */
  private onMessage(data: Buffer): void {
    let msg: HostMsg;
    try {
      const r = hostMsgSchema.safeParse(decodeFromHost(data));
      if (!r.success) throw new FerryError('EPROTO', 'malformed message from the host');
      msg = r.data;
    } catch (e) {
      this.onClosed(new FerryError('EPROTO', `host ${this.url}: ${(e as Error).message}`));
      this.ws.terminate();
      return;
    }
    if (msg.t === 'res') {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new FerryError(msg.error.code, msg.error.message));
    } else if (msg.t === 'event') {
      this.emit('event', msg.event, msg.vm, msg.data);
    } else {
      this.emit('protocol-error', msg.error);
    }
  }

  /**
   * One request. With `timeoutMs` it fails with ETIMEDOUT if no reply comes in time (a host that
   * talks to another host never waits on it for ever); without, it waits for the reply or the close.
   */
  request<T = unknown>(method: string, params: Record<string, unknown> = {}, timeoutMs?: number): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = timeoutMs === undefined ? undefined : setTimeout(() => {
        if (!this.pending.delete(id)) return;
        reject(new FerryError('ETIMEDOUT', `${this.url} did not answer ${method} within ${timeoutMs} ms`));
      }, timeoutMs);
      const settle = <V>(f: (v: V) => void) => (v: V) => {
        clearTimeout(timer);
        f(v);
      };
      this.pending.set(id, { resolve: settle(resolve as (v: unknown) => void), reject: settle(reject) });
      this.ws.send(encode({ t: 'req', id, method, params }));
    });
  }

  close(): Promise<void> {
    if (this.closedWith) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close(1000, 'bye');
    });
  }
}
