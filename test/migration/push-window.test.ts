// The post-copy push window (src/migration/push-window.ts), driven with timed frames and
// acknowledgements: it grows while frames arrive at their base delay, shrinks when a queue builds,
// yields to faults only when there is a queue, never drops below the link's bandwidth-delay
// product, does not take a standing queue for the link's base delay once the link's round trip is
// known, and refuses acknowledgements for bytes never sent.
import { describe, expect, it } from 'vitest';
import { MAX_WINDOW_BYTES, MIN_WINDOW_BYTES, PushWindow, TARGET_QUEUE_MS, WRITE_WINDOW_BYTES } from '../../src/migration/push-window.ts';

const FRAME = 64 * 1024;
const PAGES = 16;

/**
 * A link of `ratePerMs` bytes per ms and `delayMs` fixed delay, with `queueMs` of standing queue:
 * sends as long as the window has room, acknowledges in order. Returns the window after `ms`.
 */
function run(w: PushWindow, o: { ms: number; ratePerMs: number; delayMs: number; queueMs: (t: number) => number; start?: number }): number {
  let t = o.start ?? 0;
  const end = t + o.ms;
  const out: { at: number; end: number }[] = [];
  let linkFree = t;
  while (t < end) {
    while (w.hasRoom()) {
      w.onSent(FRAME, PAGES, t);
      linkFree = Math.max(linkFree, t) + FRAME / o.ratePerMs;
      out.push({ at: linkFree + o.delayMs + o.queueMs(t), end: w.sent });
    }
    const next = out.shift()!;
    t = Math.max(t, next.at);
    w.onAck(next.end, next.end, t);
  }
  return w.bytes;
}

describe('PushWindow', () => {
  it('grows from its minimum while frames arrive at their base delay, up to its maximum', () => {
    const w = new PushWindow();
    expect(w.bytes).toBe(MIN_WINDOW_BYTES);
    run(w, { ms: 50, ratePerMs: 1e8, delayMs: 0.1, queueMs: () => 0 });
    expect(w.bytes).toBe(MAX_WINDOW_BYTES);
  });

  it('shrinks when a queue builds beyond the target, and keeps the queue near it', () => {
    const w = new PushWindow();
    run(w, { ms: 50, ratePerMs: 1e8, delayMs: 0.1, queueMs: () => 0 });
    // Queueing delay that grows with what is in flight (a bottleneck of 100 bytes/µs).
    const bottleneck = 100 * 1000;
    run(w, { ms: 500, ratePerMs: bottleneck, delayMs: 0.1, queueMs: () => 0, start: 50 });
    const inFlightMs = w.bytes / bottleneck;
    expect(w.bytes).toBeLessThan(MAX_WINDOW_BYTES / 2);
    // Within a frame or two of base + target on a link that serializes one frame in 0.66 ms.
    expect(inFlightMs).toBeLessThan(0.66 * 2 + TARGET_QUEUE_MS + 0.66 * 2);
  });

  it('a fault halves it only while there is a queue, and never below one bandwidth-delay product', () => {
    const w = new PushWindow();
    run(w, { ms: 50, ratePerMs: 1e8, delayMs: 0.1, queueMs: () => 0 });
    const before = w.bytes;
    w.onFault();
    expect(w.bytes).toBe(before); // no queue: nothing to yield
    // A long link (WAN: 12.5 bytes/µs, 20 ms) with a standing queue: faults halve it, down to its BDP.
    const wan = new PushWindow();
    run(wan, { ms: 4000, ratePerMs: 12_500, delayMs: 20, queueMs: (t) => (t > 2000 ? 5 : 0) });
    for (let i = 0; i < 20; i++) wan.onFault();
    // Its delay counts a frame's serialization (5 ms) and the frames sent with it: within 2x.
    const bdp = 12_500 * 20;
    expect(wan.bytes).toBeGreaterThanOrEqual(bdp);
    expect(wan.bytes).toBeLessThan(bdp * 2);
  });

  it('a push that starts into a standing queue does not learn it as its base once the link\'s round trip is known', () => {
    // Measured on the datacenter bed (1 Gbit/s, RTT 0.5 ms): the first frames of a post-copy push
    // took 5-16 ms (the destination busy resuming the guest), the window took that as its base,
    // saw no queue above it and held 800 KiB in flight, 6 ms ahead of every fault's page.
    const link = { ratePerMs: 125_000, delayMs: 0.25, queueMs: () => 6 };
    const blind = new PushWindow();
    run(blind, { ms: 2000, ...link });
    // Its floor, the "bandwidth-delay product" of a 6 ms link: 6 ms of the link ahead of a fault.
    expect(blind.bytes).toBeGreaterThan(6 * link.ratePerMs);
    const told = new PushWindow(() => 0.5);
    run(told, { ms: 2000, ...link });
    // Down to the link's own bandwidth-delay product (62.5 KB): the minimum, a frame or two.
    expect(told.bytes).toBeLessThanOrEqual(2 * MIN_WINDOW_BYTES);
  });

  it('caps what the destination has not written yet', () => {
    const w = new PushWindow();
    run(w, { ms: 50, ratePerMs: 1e8, delayMs: 0.1, queueMs: () => 0 });
    // Received at once, never written: the write window stops the push.
    let t = 100;
    let n = 0;
    while (w.hasRoom() && n < 10_000) {
      w.onSent(FRAME, PAGES, t);
      w.onAck(w.sent, w.written, (t += 0.1));
      n++;
    }
    expect(w.sent - w.written).toBeGreaterThanOrEqual(WRITE_WINDOW_BYTES);
    expect(w.sent - w.written).toBeLessThan(WRITE_WINDOW_BYTES + FRAME);
    expect(w.hasRoom()).toBe(false);
  });

  it('refuses acknowledgements of bytes never sent, or written before received', () => {
    const w = new PushWindow();
    w.onSent(FRAME, PAGES, 0);
    expect(() => w.onAck(FRAME + 1, 0, 1)).toThrow(RangeError);
    expect(() => w.onAck(100, 200, 1)).toThrow(RangeError);
    w.onAck(FRAME, FRAME, 1);
    expect(w.received).toBe(FRAME);
  });

  it('frames hold a quarter of the window in a power of two of pages, at least 16', () => {
    const w = new PushWindow();
    expect(w.framePages(4096)).toBe(16);
    run(w, { ms: 50, ratePerMs: 1e8, delayMs: 0.1, queueMs: () => 0 });
    expect(w.framePages(4096)).toBe(128); // 2 MiB / 4 / 4 KiB
  });
});
