/**
 * Link liveness, the same on both sides: when a link's sockets last said anything (a message, a
 * ping or a pong), and a check every tick of how long they have been silent. The source pings
 * its sockets every LINK_PING_MS, so a link that says nothing for a few seconds is a link that is
 * gone, whether or not the network ever said so (a partition sends no FIN or RST).
 */
import type { LinkSocket } from '../wire/socket.ts';

export class LinkLiveness {
  private heardAt = performance.now();
  private timer: NodeJS.Timeout | undefined;
  private pinged: LinkSocket | undefined;

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
  }

  /** Milliseconds since any watched socket said anything. */
  silentMs(): number {
    return performance.now() - this.heardAt;
  }

  /** Calls `tick(silentMs)` every `everyMs` until `stop()`. */
  start(everyMs: number, tick: (silentMs: number) => void): void {
    this.stop();
    this.timer = setInterval(() => {
      const ws = this.pinged;
      if (ws && ws.readyState === ws.OPEN) ws.ping();
      tick(this.silentMs());
    }, everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
