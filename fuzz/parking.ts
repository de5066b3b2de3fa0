/**
 * Idle connections left open past their case (slow and idle strategies). The pool records who
 * closes each one: the host (as it should, eventually, for a connection that never authenticates)
 * or the fuzzer (pool full, or the end of the run).
 */
export interface Parkable {
  close(): void;
  isClosed(): boolean;
  closed: Promise<unknown>;
}

interface Parked {
  item: Parkable;
  kind: string;
  openedAt: number;
  closedByUs: boolean;
  /** Whether the host it was opened to still runs. */
  hostAlive: () => boolean;
}

export interface ParkingStats {
  parked: number;
  closedByHost: number;
  closedByFuzzer: number;
  /** Closed because the host died (a crash), not because it chose to. */
  lostWithHost: number;
  openNow: number;
  /** The longest any parked connection stayed open before the host closed it (ms). */
  maxHostCloseMs: number;
  /** The oldest still-open parked connection (ms). */
  oldestOpenMs: number;
  byKind: Record<string, { parked: number; closedByHost: number }>;
}

export class Parking {
  private readonly open = new Set<Parked>();
  private total = 0;
  private byHost = 0;
  private byUs = 0;
  private lost = 0;
  /** Closes seen, not yet put down to the host's choice or its death. */
  private unattributed = 0;
  private maxHostCloseMs = 0;
  private readonly kinds = new Map<string, { parked: number; closedByHost: number }>();

  constructor(private readonly cap = 150) {}

  add(item: Parkable, kind: string, hostAlive: () => boolean): void {
    const p: Parked = { item, kind, openedAt: Date.now(), closedByUs: false, hostAlive };
    this.total++;
    const k = this.kinds.get(kind) ?? { parked: 0, closedByHost: 0 };
    k.parked++;
    this.kinds.set(kind, k);
    if (item.isClosed()) {
      this.record(p);
      return;
    }
    this.open.add(p);
    void item.closed.then(() => {
      if (!this.open.delete(p)) return;
      const closedAt = Date.now();
      // A host that crashed drops every connection a moment before its exit is seen: look again shortly.
      this.unattributed++;
      setTimeout(() => {
        this.unattributed--;
        this.record(p, closedAt);
      }, 500).unref();
    });
    while (this.open.size > this.cap) this.evictOldest();
  }

  private record(p: Parked, closedAt = Date.now()): void {
    if (p.closedByUs) {
      this.byUs++;
      return;
    }
    if (!p.hostAlive()) {
      this.lost++;
      return;
    }
    this.byHost++;
    this.kinds.get(p.kind)!.closedByHost++;
    this.maxHostCloseMs = Math.max(this.maxHostCloseMs, closedAt - p.openedAt);
  }

  private evictOldest(): void {
    const first = this.open.values().next().value as Parked | undefined;
    if (!first) return;
    this.open.delete(first);
    first.closedByUs = true;
    this.byUs++;
    first.item.close();
  }

  /** Closed less than 500 ms ago, not yet put down to the host's choice or its death. */
  get closingCount(): number {
    return this.unattributed;
  }

  /** Parked connections still open, or closed less than 500 ms ago (not yet attributed). */
  get openCount(): number {
    return this.open.size + this.unattributed;
  }

  /** Closes everything still open (the run is over). */
  closeAll(): void {
    for (const p of [...this.open]) {
      this.open.delete(p);
      p.closedByUs = true;
      this.byUs++;
      p.item.close();
    }
  }

  stats(): ParkingStats {
    let oldest = 0;
    const now = Date.now();
    for (const p of this.open) oldest = Math.max(oldest, now - p.openedAt);
    return {
      parked: this.total, closedByHost: this.byHost, closedByFuzzer: this.byUs, lostWithHost: this.lost, openNow: this.open.size,
      maxHostCloseMs: this.maxHostCloseMs, oldestOpenMs: oldest, byKind: Object.fromEntries(this.kinds),
    };
  }
}
