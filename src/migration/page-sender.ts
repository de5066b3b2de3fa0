/**
 * The bulk stream's page sender, one per link: frames built from guest RAM into reused buffers,
 * at most WINDOW_BYTES handed to the socket and not yet written, and --max-bandwidth kept by a
 * token bucket charged with what each frame really weighs (post-copy pushes frames of 64-256 KiB:
 * charging the largest frame size would deliver a fraction of the cap).
 */
import type { LinkSocket } from '../wire/socket.ts';
import { FerryError } from '../errors.ts';
import { PAGE_SIZE } from '../memory/layout.ts';
import { encodePages, MAX_FRAME_BYTES, PAGES_PER_FRAME } from '../memory/page-frame.ts';
import type { XbzrleCache } from '../memory/xbzrle-cache.ts';
import { ENCODE_THREADS, encodeOnPool, type EncodeResult } from './encode-pool.ts';
import type { MigrationStats } from './stats.ts';

const WINDOW_BYTES = 8 * 1024 * 1024;
/** Frames being encoded on the pool ahead of the one being sent. */
const ENCODE_AHEAD = ENCODE_THREADS * 2;

export type SendPhase = 'precopy' | 'downtime' | 'postcopy';

/** How pre-copy and stop-and-copy frames are encoded (post-copy's always go plain). */
export interface PageEncoding {
  xbzrle: XbzrleCache | undefined;
  compress: boolean;
}

/** What a send moved: bytes on the wire, and what they would have weighed as plain page frames. */
export interface SendTotals {
  wire: number;
  raw: number;
}

export class PageSender {
  private inflight = 0;
  private readonly spare: Buffer[] = [];
  private wakeUp: (() => void) | undefined;
  private readonly bucket = { t: performance.now(), bytes: 0 };
  private dead = false;
  private encoding: PageEncoding | undefined;
  /** The current (or last) sendAll, for the dashboard's page map: what is queued, in flight, gone. */
  pass: { pages: ArrayLike<number>; handed: number; written: number } | undefined;

  /**
   * `check` throws when the migration must stop sending (the link failed, a cancel); it runs
   * before each frame and after each wait.
   */
  constructor(
    private readonly ws: LinkSocket,
    private readonly ram: Uint8Array,
    private readonly maxBandwidth: number,
    private readonly stats: MigrationStats,
    private readonly check: () => void,
    private readonly onError: (e: FerryError) => void,
  ) {}

  /** From now on, pre-copy and stop-and-copy frames are encoded on the pool so (undefined: plain). */
  setEncoding(e: PageEncoding | undefined): void {
    this.encoding = e !== undefined && (e.xbzrle !== undefined || e.compress) ? e : undefined;
  }

  /**
   * Sends pages in frames of up to PAGES_PER_FRAME; resolves once the last is handed to the
   * socket (what follows on the stream, a round end or the state section, queues behind it).
   */
  async sendAll(pages: ArrayLike<number>, phase: SendPhase): Promise<SendTotals> {
    const ram = this.ram.buffer;
    this.stats.toSend(pages.length);
    this.pass = { pages, handed: 0, written: 0 };
    if (this.encoding && phase !== 'postcopy' && ram instanceof SharedArrayBuffer) return this.sendAllEncoded(ram, this.encoding, pages, phase);
    let bytes = 0;
    for (let i = 0; i < pages.length; i += PAGES_PER_FRAME) bytes += await this.send(pages, phase, i, Math.min(pages.length, i + PAGES_PER_FRAME));
    return { wire: bytes, raw: bytes };
  }

  /**
   * The pool encodes up to ENCODE_AHEAD frames ahead while this thread sends, in order. A page is
   * in one frame of a send, and a send ends before the next begins, so a page's deltas reach the
   * destination in the order the cache took its versions.
   */
  private async sendAllEncoded(ram: SharedArrayBuffer, enc: PageEncoding, pages: ArrayLike<number>, phase: SendPhase): Promise<SendTotals> {
    const totals = { wire: 0, raw: 0 };
    const ahead: { to: number; result: Promise<EncodeResult> }[] = [];
    try {
      for (let i = 0; i < pages.length || ahead.length > 0;) {
        if (i < pages.length && ahead.length < ENCODE_AHEAD) {
          this.check();
          const to = Math.min(pages.length, i + PAGES_PER_FRAME);
          const list = pages instanceof Uint32Array ? pages.slice(i, to) : Uint32Array.from({ length: to - i }, (_, k) => pages[i + k]!);
          ahead.push({ to, result: encodeOnPool({ ram, ramBytes: this.ram.length, pages: list, compress: enc.compress, ...(enc.xbzrle ? { cache: enc.xbzrle.buffers } : {}) }) });
          i = to;
          continue;
        }
        const next = ahead.shift()!;
        const sent = await this.sendEncoded(await next.result, phase, enc.xbzrle !== undefined, next.to);
        totals.wire += sent.wire;
        totals.raw += sent.raw;
      }
    } finally {
      for (const p of ahead) p.result.catch(() => {}); // abandoned with the send: their results go nowhere
    }
    return totals;
  }

  private async sendEncoded(r: EncodeResult, phase: SendPhase, xbzrle: boolean, to: number): Promise<SendTotals> {
    const raw = 8 + r.pages * 4 + (r.pages - r.zero) * PAGE_SIZE;
    const frame = r.frame;
    await this.waitWindow(frame.length);
    await this.pace(frame.length);
    this.inflight += frame.length;
    const pass = this.handed(to);
    this.ws.send(frame, (err) => {
      if (this.dead) return;
      this.inflight -= frame.length;
      if (pass !== undefined) pass.written = to;
      if (err) this.onError(new FerryError('ELINK', `link failed: ${err.message}`));
      else {
        this.stats.sent(frame.length, r.pages, r.zero, phase);
        this.stats.encoded(raw, frame.length, r.deltas, r.misses, xbzrle);
      }
      this.wake();
    });
    return { wire: frame.length, raw };
  }

  /** Encodes pages[from, to) into a reused buffer and sends it within the window and the bandwidth; returns its bytes. */
  async send(pages: ArrayLike<number>, phase: SendPhase, from = 0, to = pages.length): Promise<number> {
    this.check();
    await this.waitWindow(MAX_FRAME_BYTES);
    const buf = this.spare.pop() ?? Buffer.allocUnsafe(MAX_FRAME_BYTES);
    const { frame, zero } = encodePages(this.ram, pages, from, to, buf);
    await this.pace(frame.length);
    this.inflight += frame.length;
    const pass = pages === this.pass?.pages ? this.handed(to) : undefined;
    this.ws.send(frame, (err) => {
      if (this.dead) return; // a dropped link: its frames are resent from the destination's bitmap
      this.inflight -= frame.length;
      if (pass !== undefined) pass.written = to;
      this.spare.push(buf);
      if (err) this.onError(new FerryError('ELINK', `link failed: ${err.message}`));
      else this.stats.sent(frame.length, to - from, zero, phase); // counted once it has left
      this.wake();
    });
    return frame.length;
  }

  /** The current pass has handed pages up to `to` to the link; returns it, to be told when they are written. */
  private handed(to: number): PageSender['pass'] {
    if (this.pass !== undefined) this.pass.handed = to;
    return this.pass;
  }

  /** The link is given up: nothing it still reports counts, and a waiter rechecks `check`. */
  abandon(): void {
    this.dead = true;
    this.wake();
  }

  /** Wakes a waiter (the caller's state changed: it rechecks). */
  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  private async waitWindow(next: number): Promise<void> {
    while (this.inflight > 0 && this.inflight + next > WINDOW_BYTES) {
      this.check();
      await new Promise<void>((resolve) => { this.wakeUp = resolve; });
    }
    this.check();
  }

  /** A token bucket refilled at --max-bandwidth bytes per second, charged with `bytes`. */
  private async pace(bytes: number): Promise<void> {
    if (this.maxBandwidth <= 0) return;
    const now = performance.now();
    this.bucket.bytes = Math.max(0, this.bucket.bytes - ((now - this.bucket.t) * this.maxBandwidth) / 1000) + bytes;
    this.bucket.t = now;
    const waitMs = (this.bucket.bytes / this.maxBandwidth) * 1000 - 1;
    if (waitMs > 1) await new Promise((r) => setTimeout(r, waitMs));
    this.check();
  }
}
