import type WebSocket from 'ws';
import { FerryError } from '../errors.ts';
import { decodeMsg, type MigrationMsg } from './protocol.ts';

type Waiter = { types: string[]; resolve: (m: MigrationMsg) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };

/**
 * The control messages arriving on one migration link, awaited by type. A closed link, a
 * socket error, a `failed` message from the peer or an `interrupt` fails every wait from then on.
 */
export class Inbox {
  private readonly queue: MigrationMsg[] = [];
  private waiter: Waiter | undefined;
  private error: Error | undefined;

  constructor(ws: WebSocket, private readonly peer: string) {
    ws.on('message', (data: Buffer) => {
      let m: MigrationMsg;
      try {
        m = decodeMsg(data);
      } catch (e) {
        this.interrupt(e as Error);
        return;
      }
      if (m.t === 'failed') {
        this.interrupt(new FerryError(m.code, `destination failed: ${m.message}`));
        return;
      }
      this.queue.push(m);
      this.deliver();
    });
    ws.on('close', (code, reason) => {
      this.interrupt(new FerryError('ELINK', `link to ${peer} closed (${code}${reason.length ? `: ${reason.toString()}` : ''})`));
    });
    ws.on('error', (err) => this.interrupt(new FerryError('ELINK', `link to ${peer} failed: ${err.message}`)));
  }

  /** Throws if the link has failed. */
  check(): void {
    if (this.error) throw this.error;
  }

  interrupt(e: Error): void {
    this.error ??= e;
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      clearTimeout(w.timer);
      w.reject(this.error);
    }
  }

  next<T extends MigrationMsg['t']>(types: T[], timeoutMs: number): Promise<Extract<MigrationMsg, { t: T }>> {
    return new Promise((resolve, reject) => {
      if (this.error) {
        reject(this.error);
        return;
      }
      const timer = setTimeout(() => {
        this.interrupt(new FerryError('ETIMEDOUT', `no ${types.join('/')} from ${this.peer} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = { types, resolve: resolve as (m: MigrationMsg) => void, reject, timer };
      this.deliver();
    });
  }

  private deliver(): void {
    const w = this.waiter;
    if (!w || this.queue.length === 0) return;
    const m = this.queue.shift()!;
    this.waiter = undefined;
    clearTimeout(w.timer);
    if (w.types.includes(m.t)) w.resolve(m);
    else w.reject(new FerryError('EPROTO', `expected ${w.types.join('/')} from ${this.peer}, got ${m.t}`));
  }
}
