// The page map's codes (src/vm/page-map.ts) from the page states, the active dirty log and an
// outgoing pass; and the page sender's account of a pass (queued, handed to the link and not yet
// written, written), held back here by a socket that writes when the test says.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { FerryError } from '../../src/errors.ts';
import { GuestMemory } from '../../src/memory/guest-memory.ts';
import { PAGE_EVER_WRITTEN, PAGE_REQUESTED } from '../../src/memory/layout.ts';
import { PageSender } from '../../src/migration/page-sender.ts';
import { MigrationStats } from '../../src/migration/stats.ts';
import { PAGE_CODES, pageCounts, pageMap, pageRuns } from '../../src/vm/page-map.ts';
import type { LinkSocket } from '../../src/wire/socket.ts';

const MiB = 1024 * 1024;

describe('pageMap', () => {
  it('codes never-written, clean, dirty, missing, waiting and faulted pages', () => {
    const mem = GuestMemory.allocate(MiB);
    for (const p of [1, 2, 3, 9]) mem.hostWrite(p * 4096, new Uint8Array([1]));
    // hostWrite marks the active log too: so far pages 1-3 and 9 are dirty.
    expect(pageCounts(pageMap(mem, { dirtyLog: true }))[PAGE_CODES.dirty]).toBe(4);
    mem.dirtyLog.harvestBothStopped();
    mem.hostWrite(2 * 4096, new Uint8Array([2]));
    Atomics.store(mem.pageState, 5, PAGE_EVER_WRITTEN); // missing (post-copy)
    Atomics.store(mem.pageState, 6, PAGE_EVER_WRITTEN | PAGE_REQUESTED); // the vCPU waits on it
    const faulted = new Uint8Array(mem.pages);
    faulted[3] = 1;
    const m = pageMap(mem, { dirtyLog: true, faulted });
    expect([...m.subarray(0, 10)]).toEqual([
      PAGE_CODES.never, PAGE_CODES.clean, PAGE_CODES.dirty, PAGE_CODES.faulted, PAGE_CODES.never,
      PAGE_CODES.missing, PAGE_CODES.waiting, PAGE_CODES.never, PAGE_CODES.never, PAGE_CODES.clean,
    ]);
    // Without a migration the dirty log is not shown.
    expect(pageMap(mem)[2]).toBe(PAGE_CODES.clean);
    expect(pageCounts(m).reduce((a, b) => a + b, 0)).toBe(mem.pages);
  });
});

/** A socket whose sends complete only when `flush` is called, in order. */
class HeldSocket extends EventEmitter implements LinkSocket {
  readonly CONNECTING = 0;
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  isPaused = false;
  private readonly held: ((err?: Error) => void)[] = [];
  send(_data: Uint8Array, cb?: (err?: Error) => void): void {
    this.held.push(cb ?? (() => {}));
  }
  flush(n: number): void {
    for (const cb of this.held.splice(0, n)) cb();
  }
  ping(): void {}
  close(): void {}
  terminate(): void {}
  pause(): void {}
  resume(): void {}
}

describe("the page sender's pass", () => {
  it('says which pages are queued, in flight (handed to the link, not written) and gone, and the page map shows them', async () => {
    const mem = GuestMemory.allocate(4 * MiB);
    for (let p = 0; p < 1024; p++) mem.hostWrite(p * 4096, new Uint8Array([p & 0xff, 1]));
    mem.dirtyLog.harvestBothStopped();
    const ws = new HeldSocket();
    const stats = new MigrationStats('v', 'outgoing', 'precopy', 'ws://x', mem.size);
    const sender = new PageSender(ws, mem.ram, 0, stats, () => {}, (e: FerryError) => { throw e; });
    const pages = Uint32Array.from({ length: 1024 }, (_, i) => i);
    const sending = sender.sendAll(pages, 'precopy');
    // The window (8 MiB) takes every frame of 4 MiB at once; none is written yet.
    await new Promise((r) => setTimeout(r, 10));
    let m = pageMap(mem, { pass: sender.pass });
    expect(pageCounts(m)[PAGE_CODES.inFlight]).toBe(1024);
    ws.flush(1);
    m = pageMap(mem, { pass: sender.pass });
    const counts = pageCounts(m);
    expect(counts[PAGE_CODES.inFlight]).toBeGreaterThan(0);
    expect(counts[PAGE_CODES.clean]).toBe(1024 - counts[PAGE_CODES.inFlight]!);
    expect(m[0]).toBe(PAGE_CODES.clean);
    expect(m[1023]).toBe(PAGE_CODES.inFlight);
    ws.flush(1_000);
    await sending;
    expect(pageCounts(pageMap(mem, { pass: sender.pass }))[PAGE_CODES.inFlight]).toBe(0);
  });

  it('shows the pages not yet handed to the link as queued', () => {
    const mem = GuestMemory.allocate(MiB);
    for (let p = 0; p < 10; p++) mem.hostWrite(p * 4096, new Uint8Array([1]));
    mem.dirtyLog.harvestBothStopped();
    const m = pageMap(mem, { pass: { pages: [0, 1, 2, 3, 4, 5], handed: 4, written: 2 } });
    expect([...m.subarray(0, 7)]).toEqual([PAGE_CODES.clean, PAGE_CODES.clean, PAGE_CODES.inFlight, PAGE_CODES.inFlight, PAGE_CODES.queued, PAGE_CODES.queued, PAGE_CODES.clean]);
  });
});

describe('the map as runs (for the wire)', () => {
  it('round-trips through the page\'s expansion (dashboard/page-map.js), and is refused when it would not be smaller', async () => {
    const { expandPageRuns } = await import('../../dashboard/page-map.js');
    const map = new Uint8Array(262144);
    map.fill(PAGE_CODES.clean, 1000, 70000);
    map.fill(PAGE_CODES.missing, 70000, 200000);
    for (let p = 100000; p < 100100; p += 2) map[p] = PAGE_CODES.faulted;
    const runs = pageRuns(map)!;
    expect(runs.length).toBe(104);
    expect(expandPageRuns(runs, map.length)).toEqual(map);
    // Alternating codes: more runs than a quarter of the pages, so the map goes as it is.
    const noisy = Uint8Array.from({ length: 4096 }, (_, i) => i & 1);
    expect(pageRuns(noisy)).toBeUndefined();
  });
});
