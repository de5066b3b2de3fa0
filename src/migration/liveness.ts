/**
 * Link liveness, the same on both sides: when a link's sockets last said anything (a message, a
 * ping or a pong), and a check every tick of how long they have been silent. The source pings
 * its sockets every LINK_PING_MS, so a link that says nothing for a few seconds is a link that is
 * gone, whether or not the network ever said so (a partition sends no FIN or RST). The same
 * pings measure the link's round trip: the lowest ping-to-pong time seen (a ping that waited
 * behind page frames only measures high, and the lowest ignores it). A socket newly pinged
 * through gets RTT_PROBES pings in a row, each as the last one's pong comes back: one ping a
 * second leaves a short migration with one or two samples, taken while both hosts were busy
 * setting up (8.6 ms on a 0.5 ms link, measured), and the post-copy push window trusts this
 * figure (src/migration/push-window.ts).
 */
import type { LinkSocket } from '../wire/socket.ts';

/** Pings sent back to back when a socket is first pinged through. */
export const RTT_PROBES = 8;

export class LinkLiveness {
  private heardAt = performance.now();
  private timer: NodeJS.Timeout | undefined;
  private pinged: LinkSocket | undefined;
  /** When each ping still unanswered on the pinged socket left (pongs come back in order). */
  private unanswered: number[] = [];
  private lowestRtt: number | undefined;
  /** Back-to-back probes still to send on the pinged socket. */
  private probesLeft = 0;

  /** Counts what `ws` says as a sign of life. */
  watch(ws: LinkSocket): void {
    const heard = () => {
      this.heardAt = performance.now();
    };
    ws.on('message', heard);
    ws.on('ping', heard);
    ws.on('pong', heard);
    heard();
  }

  /**
   * Pings `ws` on every tick (the side that pings: the source). Pings go on a socket without a
   * backlog of page frames, or they would queue behind seconds of them on a slow link.
   */
  pingThrough(ws: LinkSocket): void {
    this.pinged = ws;
    this.unanswered = [];
    this.probesLeft = RTT_PROBES - 1;
    ws.on('pong', () => {
      if (this.pinged !== ws) return;
      const sentAt = this.unanswered.shift();
      if (sentAt !== undefined) this.rttSample(performance.now() - sentAt);
      if (this.probesLeft > 0 && this.unanswered.length === 0) {
        this.probesLeft--;
        this.ping();
      }
    });
    this.ping(); // a first sample within a round trip, not a tick
  }

  /** Counts `ms` as a round-trip time seen on the link (an upper bound of it: the lowest wins). */
  rttSample(ms: number): void {
    if (this.lowestRtt === undefined || ms < this.lowestRtt) this.lowestRtt = ms;
  }

  /** The link's round-trip time, the lowest seen; undefined before any. */
  rttMs(): number | undefined {
    return this.lowestRtt;
  }

  private ping(): void {
    const ws = this.pinged;
    // 64 pings unanswered: the link has long been declared silent; more would only pile up.
    if (!ws || ws.readyState !== ws.OPEN || this.unanswered.length >= 64) return;
    // The clock is read before the ping leaves: read after, a preemption between the two (ms on
    // a loaded machine) would shorten the round trip, and the lowest sample wins.
    this.unanswered.push(performance.now());
    ws.ping();
  }

  /** Milliseconds since any watched socket said anything. */
  silentMs(): number {
    return performance.now() - this.heardAt;
  }

  /** Calls `tick(silentMs)` every `everyMs` until `stop()`. */
  start(everyMs: number, tick: (silentMs: number) => void): void {
    this.stop();
    this.timer = setInterval(() => {
      this.ping();
      tick(this.silentMs());
    }, everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
