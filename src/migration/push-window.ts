/**
 * How far the post-copy push may run ahead of the destination (source side, one per link).
 *
 * The push is background traffic: a fault's page, sent on the priority channel, shares the link
 * with it and waits behind whatever the push has queued on the path (socket buffers, a switch's
 * queue), and a faulting guest that has caught up with the push waits for the frame in flight
 * that holds its page. So the window on the network is small while the guest faults and grows
 * only while there is no queue, as LEDBAT (RFC 6817) does for background transfers:
 * - each pushed frame's delay, from being handed to the socket to the destination's receipt, is
 *   compared with the base delay of frames of its size; the window grows by STEP_BYTES per window
 *   of frames while the queueing delay (the least of the last CURRENT_FILTER frames' delays above
 *   the base: a queue stands, a busy CPU comes and goes) is under TARGET_QUEUE_MS, and shrinks
 *   (by up to half per window) above it;
 * - each fault halves it: the guest needs pages now, and the push yields;
 * - it never goes below one bandwidth-delay product of the link (the best recent delivery rate
 *   times the least delay), so a faulting guest slows the push on a long link no more than on a
 *   short one, nor below MIN_WINDOW_BYTES.
 * Where the link's round trip is known (its keep-alive pings, src/migration/liveness.ts), no base
 * delay is taken above that round trip plus the frame's serialization at the highest rate seen, and
 * the bandwidth-delay product uses it: a push that starts into a standing queue (the destination
 * busy resuming the guest, socket buffers filled at once) would otherwise learn that queue as its
 * base, read no queue above it, and keep it standing (LEDBAT's latecomer problem). Measured on the
 * datacenter link (issue 11): bases of 5-16 ms on a 0.5 ms link, a window held at 800 KiB, and
 * faults that waited behind 6 ms of it.
 * A second bound caps what the destination has received but not yet written into guest RAM (the
 * vCPU thread writes pushed frames between slices): its memory, not the link.
 */

/** Queueing delay the push may add on the path, ahead of a fault's page. */
export const TARGET_QUEUE_MS = 0.5;
/** One frame of MIN_FRAME_PAGES: more on a link whose bandwidth-delay product is less only queues (measured on the datacenter bed: 128 KiB, a p50 fault wait of 0.93-1.73 ms over 10 runs; 64 KiB, 0.93-1.47 ms over 11). */
export const MIN_WINDOW_BYTES = 64 * 1024;
export const MAX_WINDOW_BYTES = 2 * 1024 * 1024;
/** Received and not yet written at the destination. */
export const WRITE_WINDOW_BYTES = 8 * 1024 * 1024;
/** The additive step per window of frames delivered on time (LEDBAT's MSS). */
const STEP_BYTES = 64 * 1024;
/** Frames hold a quarter of the window, and at least this many pages. */
const MIN_FRAME_PAGES = 16;
const CURRENT_FILTER = 8;
/** A fault halves the window when the queueing delay is above this. */
const FAULT_QUEUE_MS = TARGET_QUEUE_MS / 4;
/** The base delay is the BASE_RANK-th lowest seen, so a few samples timed short do not set it. */
const BASE_RANK = 8;
/** Delivery rate samples span at least this long (and at least the least delay)... */
const RATE_INTERVAL_MS = 5;
/** ...and the best of the last RATE_SAMPLES counts, so a link that slows down is believed. */
const RATE_SAMPLES = 16;

interface InFlight {
  /** The push's byte count once this frame is sent. */
  end: number;
  bytes: number;
  pages: number;
  sentAt: number;
}

export class PushWindow {
  /** `linkRttMs`: the link's round trip as measured apart from the push, when known. */
  constructor(private readonly linkRttMs: () => number | undefined = () => undefined) {}

  /** Current network window, bytes. */
  bytes = MIN_WINDOW_BYTES;
  sent = 0;
  received = 0;
  written = 0;
  private readonly inFlight: InFlight[] = [];
  /** The lowest delays seen per frame size in pages (ms, ascending, at most BASE_RANK). */
  private readonly lowest = new Map<number, number[]>();
  /** The least base delay of any frame size (once it has BASE_RANK samples). */
  private minDelayMs = Infinity;
  /** The last CURRENT_FILTER frames' delays above their base (ms), a ring. */
  private readonly recent: number[] = [];
  private recentAt = 0;
  /** The last RATE_SAMPLES delivery rates (bytes per ms, a ring), and where the current sample started. */
  private readonly rates: number[] = [];
  private ratesAt = 0;
  /** The highest of all delivery rate samples, bytes per ms. */
  private peakRate = 0;
  private rateMark: { t: number; received: number } | undefined;

  /** A pushed frame of `bytes` holding `pages` pages was handed to the socket at `now` (ms). */
  onSent(bytes: number, pages: number, now: number): void {
    this.sent += bytes;
    this.inFlight.push({ end: this.sent, bytes, pages, sentAt: now });
    this.rateMark ??= { t: now, received: this.received };
  }

  /**
   * The destination's acknowledgement: `received` bytes of the push arrived there and `written`
   * are in guest RAM. Counts never go back; a count beyond what was sent is the peer's error.
   */
  onAck(received: number, written: number, now: number): void {
    if (received > this.sent || written > received) throw new RangeError(`acknowledged ${received} received, ${written} written of ${this.sent} pushed bytes`);
    this.written = Math.max(this.written, written);
    if (received <= this.received) return;
    this.received = received;
    while (this.inFlight.length > 0 && this.inFlight[0]!.end <= received) {
      const f = this.inFlight.shift()!;
      this.adjust(f, now - f.sentAt);
    }
    const mark = this.rateMark;
    if (mark && now - mark.t >= Math.max(RATE_INTERVAL_MS, this.minDelayMs)) {
      this.rates[this.ratesAt] = (received - mark.received) / (now - mark.t);
      this.peakRate = Math.max(this.peakRate, this.rates[this.ratesAt]!);
      this.ratesAt = (this.ratesAt + 1) % RATE_SAMPLES;
      // The next sample starts now if frames are still out, else with the next frame sent.
      this.rateMark = this.inFlight.length > 0 ? { t: now, received } : undefined;
    }
  }

  /** The guest faulted: the push yields, if it has a queue on the path that the fault's page waits behind. */
  onFault(): void {
    if (this.queueMs() > FAULT_QUEUE_MS) this.bytes = Math.max(this.floor(), this.bytes / 2);
  }

  /** The current queueing delay (ms). */
  private queueMs(): number {
    return this.recent.length > 0 ? Math.min(...this.recent) : 0;
  }

  /**
   * Pages in the next frame: a quarter of the window at most, so a fault's page waits behind
   * little of it; a power of two, so frames come in a few sizes, each with its base delay.
   */
  framePages(pageSize: number): number {
    const fit = Math.max(MIN_FRAME_PAGES, Math.floor(this.bytes / 4 / pageSize));
    return 2 ** Math.floor(Math.log2(fit));
  }

  /** Whether another frame may go: the network window and the write window both have room. */
  hasRoom(): boolean {
    return this.sent - this.received < this.bytes && this.sent - this.written < WRITE_WINDOW_BYTES;
  }

  /** One bandwidth-delay product of the link as seen so far, within [MIN_WINDOW_BYTES, MAX_WINDOW_BYTES / 2]. */
  private floor(): number {
    const delayMs = Math.min(this.minDelayMs, this.linkRttMs() ?? Infinity);
    const bdp = Number.isFinite(delayMs) && this.rates.length > 0 ? this.bestRate() * delayMs : 0;
    return Math.max(MIN_WINDOW_BYTES, Math.min(MAX_WINDOW_BYTES / 2, bdp));
  }

  /** The best recent delivery rate, bytes per ms (0 before any). */
  private bestRate(): number {
    return this.rates.length > 0 ? Math.max(...this.rates) : 0;
  }

  /**
   * At least what a frame of `bytes` takes with no queue: a round trip and its serialization at the
   * highest delivery rate ever seen (Infinity until both are known); never below the true figure,
   * as no delivery outruns the link; the recent best rate would do, but it falls with the window.
   */
  private unqueuedDelayMs(bytes: number): number {
    const rtt = this.linkRttMs();
    return rtt === undefined || this.peakRate === 0 ? Infinity : rtt + bytes / this.peakRate;
  }

  /** Adds a delay sample of frames of `pages` pages and returns their base delay. */
  private base(pages: number, bytes: number, delayMs: number): number {
    let low = this.lowest.get(pages);
    if (!low) this.lowest.set(pages, (low = []));
    if (low.length < BASE_RANK || delayMs < low[low.length - 1]!) {
      let i = low.length;
      while (i > 0 && low[i - 1]! > delayMs) i--;
      low.splice(i, 0, delayMs);
      if (low.length > BASE_RANK) low.pop();
    }
    const base = Math.min(low[low.length - 1]!, this.unqueuedDelayMs(bytes));
    if (low.length === BASE_RANK) this.minDelayMs = Math.min(this.minDelayMs, base);
    return base;
  }

  private adjust(f: InFlight, delayMs: number): void {
    const base = this.base(f.pages, f.bytes, delayMs);
    this.recent[this.recentAt] = Math.max(0, delayMs - base);
    this.recentAt = (this.recentAt + 1) % CURRENT_FILTER;
    const queueMs = this.queueMs();
    const offTarget = Math.max(-1, Math.min(1, (TARGET_QUEUE_MS - queueMs) / TARGET_QUEUE_MS));
    // Per window of frames: +STEP_BYTES when on time; when late, down by up to half of it.
    const step = offTarget >= 0 ? STEP_BYTES : this.bytes / 2;
    this.bytes += (offTarget * step * f.bytes) / this.bytes;
    this.bytes = Math.max(this.floor(), Math.min(MAX_WINDOW_BYTES, this.bytes));
  }
}
