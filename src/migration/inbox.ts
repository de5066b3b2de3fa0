import type { LinkSocket } from '../wire/socket.ts';
import { FerryError } from '../errors.ts';
import { closeDetail, peerText } from '../wire/peer-text.ts';
import { decodeMsg, type MigrationMsg, type StreamContext } from './protocol.ts';

type Waiter = { types: string[]; resolve: (m: MigrationMsg) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };

/**
 * A destination sends one message per step and waits for the next: more than this many queued
 * and unread is a peer that floods, not one that follows the protocol.
 */
const MAX_QUEUED = 16;

/**
 * The control messages arriving on one migration link (source side), each checked at decode
 * against the VM's RAM, awaited by type. A closed link, a socket error, a malformed or
 * unexpected message, a `failed` message from the peer or an `interrupt` fails every wait from
 * then on.
 */
export class Inbox {
  private readonly queue: MigrationMsg[] = [];
  private waiter: Waiter | undefined;
  private error: Error | undefined;
  /** The peer said `failed`: the link's error is its failure. */
  failedByPeer = false;

  constructor(ws: LinkSocket, private readonly peer: string, ctx: StreamContext) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (this.error) return;
      let m: MigrationMsg;
      try {
        if (!isBinary) throw new FerryError('EPROTO', 'text frames are not part of the migration protocol');
        m = decodeMsg(data, ctx);
      } catch (e) {
        this.interrupt(e as Error);
        return;
      }
      if (m.t === 'failed') {
        this.failedByPeer ||= this.error === undefined;
        this.interrupt(new FerryError(m.code, `destination failed: ${peerText(m.message, 500)}`));
        return;
      }
      if (this.queue.length >= MAX_QUEUED) {
        this.interrupt(new FerryError('EPROTO', `${peer} sent ${MAX_QUEUED} messages nobody asked for`));
        return;
      }
      this.queue.push(m);
      this.deliver();
    });
    ws.on('close', (code, reason) => {
      this.interrupt(new FerryError('ELINK', `link to ${peer} closed${closeDetail(code, reason)}`));
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
    if (!w.types.includes(m.t)) {
      this.interrupt(new FerryError('EPROTO', `expected ${w.types.join('/')} from ${this.peer}, got ${m.t}`));
      return;
    }
    this.waiter = undefined;
    clearTimeout(w.timer);
    w.resolve(m);
  }
}
