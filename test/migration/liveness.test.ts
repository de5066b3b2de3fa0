// The link's round trip as the source measures it (src/migration/liveness.ts): the lowest
// ping-to-pong time, so every sample must be an upper bound of the true round trip. Found on the
// WAN bed (RTT 20 ms) under the whole suite: the clock was read after the ping was written, and
// a preemption between the two made the source believe the link's round trip was 17.6 ms.
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LinkLiveness, RTT_PROBES } from '../../src/migration/liveness.ts';
import type { LinkSocket } from '../../src/wire/socket.ts';

/** A socket whose `ping` leaves at the clock's time, then holds the thread `stallMs` (a preemption). */
function stallingSocket(clock: { now: number }, stallMs: number): LinkSocket & EventEmitter & { sentAt: number[] } {
  const ws = Object.assign(new EventEmitter(), {
    readyState: 1, CONNECTING: 0, OPEN: 1, bufferedAmount: 0, isPaused: false, sentAt: [] as number[],
    send() {}, close() {}, terminate() {}, pause() {}, resume() {},
    ping() {
      ws.sentAt.push(clock.now);
      clock.now += stallMs;
    },
  });
  return ws as unknown as LinkSocket & EventEmitter & { sentAt: number[] };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('LinkLiveness round trip', () => {
  it('a thread stalled right after a ping leaves never measures the round trip shorter than it is', () => {
    const clock = { now: 1000 };
    vi.spyOn(performance, 'now').mockImplementation(() => clock.now);
    const RTT = 20;
    const ws = stallingSocket(clock, 2.4);
    const live = new LinkLiveness();
    live.pingThrough(ws);
    expect(ws.sentAt).toHaveLength(1);
    clock.now = ws.sentAt[0]! + RTT; // the pong is back one round trip after the ping left
    ws.emit('pong', Buffer.alloc(0));
    expect(live.rttMs()).toBeGreaterThanOrEqual(RTT);
    expect(live.rttMs()).toBeLessThanOrEqual(RTT + 2.4);
  });

  it('a socket newly pinged through gets RTT_PROBES pings in a row, each after the last one\'s pong, and the lowest wins', () => {
    // One ping a second left a short migration with one sample taken while both hosts were busy
    // setting up: 8.6 ms on the datacenter bed's 0.5 ms link.
    const clock = { now: 0 };
    vi.spyOn(performance, 'now').mockImplementation(() => clock.now);
    const ws = stallingSocket(clock, 0);
    const live = new LinkLiveness();
    live.pingThrough(ws);
    const rtts = [8.6, 3.1, 0.9, 0.6, 1.2, 0.7, 2.0, 0.8];
    for (const [i, rtt] of rtts.entries()) {
      expect(ws.sentAt).toHaveLength(i + 1);
      clock.now = ws.sentAt[i]! + rtt;
      ws.emit('pong', Buffer.alloc(0));
    }
    expect(ws.sentAt).toHaveLength(RTT_PROBES); // then one a tick, as before
    expect(live.rttMs()).toBeCloseTo(0.6, 9);
  });

  it('keeps the lowest sample', () => {
    const live = new LinkLiveness();
    live.rttSample(30);
    live.rttSample(21);
    live.rttSample(25);
    expect(live.rttMs()).toBe(21);
  });
});
