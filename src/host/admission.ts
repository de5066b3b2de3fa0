/**
 * Admission before authentication. Every TCP connection is pending from its accept until its
 * WebSocket hello is accepted: at most `maxPending` of them in all and `maxPendingPerAddress`
 * from one address (beyond that a new one is closed at once), and each is destroyed if it is
 * still pending after `helloTimeoutMs`. So silent or slow connections cost a bounded number of
 * descriptors for a bounded time, and a flood from one address cannot lock others out.
 * Refusals are logged with the remote address, at most a few a second (with a count of the rest).
 */
import type { Socket } from 'node:net';
import type { Logger } from '../log.ts';
import type { HostLimits } from './limits.ts';

interface Pending {
  address: string;
  /** Peer address and port, taken at accept (a closed socket forgets them). */
  endpoint: string;
  timer: NodeJS.Timeout;
}

function endpointOf(socket: Socket): string {
  return `${socket.remoteAddress ?? '?'}|${socket.remotePort ?? 0}`;
}

/** Log lines per reason and window; the rest are counted and reported with the next window's first line. */
const LOG_BURST = 5;
const LOG_WINDOW_MS = 10_000;

export class Admission {
  private readonly pending = new Map<Socket, Pending>();
  /**
   * Pending TCP sockets by their peer's address and port: with TLS the hello arrives on the TLS
   * socket wrapped around the one admitted, and this finds that one.
   */
  private readonly byEndpoint = new Map<string, Socket>();
  private readonly perAddress = new Map<string, number>();
  private readonly logWindows = new Map<string, { start: number; logged: number; suppressed: number }>();

  constructor(private readonly limits: HostLimits, private readonly log: Logger) {}

  /** A new TCP connection: admitted (and timed), or destroyed here with a (rate-limited) log line. */
  admit(socket: Socket): void {
    const address = socket.remoteAddress ?? '?';
    const fromHere = this.perAddress.get(address) ?? 0;
    const why = this.pending.size >= this.limits.maxPending ? `${this.limits.maxPending} connections in all are waiting to authenticate`
      : fromHere >= this.limits.maxPendingPerAddress ? `${this.limits.maxPendingPerAddress} connections from this address are waiting to authenticate`
        : undefined;
    if (why !== undefined) {
      this.refused('connection refused', address, why);
      socket.destroy();
      return;
    }
    this.perAddress.set(address, fromHere + 1);
    const timer = setTimeout(() => {
      this.refused('connection closed', address, `no accepted hello within ${this.limits.helloTimeoutMs} ms`);
      socket.destroy();
    }, this.limits.helloTimeoutMs);
    timer.unref();
    const endpoint = endpointOf(socket);
    this.pending.set(socket, { address, endpoint, timer });
    this.byEndpoint.set(endpoint, socket);
    socket.once('close', () => this.release(socket));
  }

  /** The connection's hello was accepted (on the admitted socket, or the TLS socket around it): it no longer counts against the limits, nor times out. */
  authenticated(socket: Socket): void {
    this.release(this.pending.has(socket) ? socket : this.byEndpoint.get(endpointOf(socket)) ?? socket);
  }

  /** Connections waiting to authenticate, in all. */
  get waiting(): number {
    return this.pending.size;
  }

  /** A refusal worth a log line, unless this reason has been logged LOG_BURST times in this window. */
  refused(what: string, address: string, why: string): void {
    const now = performance.now();
    let w = this.logWindows.get(what);
    if (!w || now - w.start > LOG_WINDOW_MS) {
      const suppressed = w?.suppressed ?? 0;
      w = { start: now, logged: 0, suppressed: 0 };
      this.logWindows.set(what, w);
      if (suppressed > 0) this.log.warn({ suppressed, windowMs: LOG_WINDOW_MS }, `${what}: ${suppressed} more like it were not logged`);
    }
    if (w.logged < LOG_BURST) {
      w.logged++;
      this.log.warn({ peer: address, why }, what);
    } else {
      w.suppressed++;
    }
  }

  private release(socket: Socket): void {
    const p = this.pending.get(socket);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(socket);
    if (this.byEndpoint.get(p.endpoint) === socket) this.byEndpoint.delete(p.endpoint);
    const n = (this.perAddress.get(p.address) ?? 1) - 1;
    if (n > 0) this.perAddress.set(p.address, n);
    else this.perAddress.delete(p.address);
  }
}
