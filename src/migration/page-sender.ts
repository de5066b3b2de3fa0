/**
 * The bulk stream's page sender, one per link: frames built from guest RAM into reused buffers,
 * at most WINDOW_BYTES handed to the socket and not yet written, and --max-bandwidth kept by a
 * token bucket charged with what each frame really weighs (post-copy pushes frames of 64-256 KiB:
 * charging the largest frame size would deliver a fraction of the cap).
 */
import type { LinkSocket } from '../wire/socket.ts';
import { FerryError } from '../errors.ts';
import { encodePages, MAX_FRAME_BYTES, PAGES_PER_FRAME } from '../memory/page-frame.ts';
import type { MigrationStats } from './stats.ts';

const WINDOW_BYTES = 8 * 1024 * 1024;

export type SendPhase = 'precopy' | 'downtime' | 'postcopy';

export class PageSender {
  private inflight = 0;
  private readonly spare: Buffer[] = [];
  private wakeUp: (() => void) | undefined;
  private readonly bucket = { t: performance.now(), bytes: 0 };
  private dead = false;

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

  /**
   * Sends pages in frames of up to PAGES_PER_FRAME; resolves once the last is handed to the
   * socket (what follows on the stream, a round end or the state section, queues behind it).
   */
  async sendAll(pages: ArrayLike<number>, phase: SendPhase): Promise<number> {
    let bytes = 0;
    for (let i = 0; i < pages.length; i += PAGES_PER_FRAME) bytes += await this.send(pages, phase, i, Math.min(pages.length, i + PAGES_PER_FRAME));
    return bytes;
  }

  /** Encodes pages[from, to) into a reused buffer and sends it within the window and the bandwidth; returns its bytes. */
  async send(pages: ArrayLike<number>, phase: SendPhase, from = 0, to = pages.length): Promise<number> {
    this.check();
    await this.waitWindow(MAX_FRAME_BYTES);
    const buf = this.spare.pop() ?? Buffer.allocUnsafe(MAX_FRAME_BYTES);
    const { frame, zero } = encodePages(this.ram, pages, from, to, buf);
    await this.pace(frame.length);
    this.inflight += frame.length;
    this.ws.send(frame, (err) => {
      if (this.dead) return; // a dropped link: its frames are resent from the destination's bitmap
      this.inflight -= frame.length;
      this.spare.push(buf);
      if (err) this.onError(new FerryError('ELINK', `link failed: ${err.message}`));
      else this.stats.sent(frame.length, to - from, zero, phase); // counted once it has left
      this.wake();
    });
    return frame.length;
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
