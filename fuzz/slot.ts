/**
 * The heavy slots: work that makes the host start a vCPU thread (an accepted migration setup,
 * a created VM). At most `capacity` cases hold one at a time, and they are handed out at least
 * `spacingMs` apart, so thread starts stay a small share of the CPU the host has.
 */
export class Slot {
  private held = 0;
  private lastAt = 0;
  private readonly queue: (() => void)[] = [];

  constructor(private readonly capacity = 2, private readonly spacingMs = 100) {}

  async acquire(): Promise<void> {
    if (this.held >= this.capacity || this.queue.length > 0) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.held++;
    const wait = this.lastAt + this.spacingMs - Date.now();
    this.lastAt = Math.max(Date.now(), this.lastAt + this.spacingMs);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }

  release(): void {
    const next = this.queue.shift();
    if (next) next(); // the slot passes on as it is
    else this.held--;
  }
}
