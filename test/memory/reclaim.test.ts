// Collections after a VM is gone: coalesced, spaced a second apart, and held back while a
// migration runs on this host (a full collection mid switch-over made a 2 ms downtime 20 ms),
// but never for more than MAX_DEFER_MS.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { COALESCE_MS, MAX_DEFER_MS, MIN_INTERVAL_MS, Reclaimer } from '../../src/memory/reclaim.ts';

describe('the reclaimer', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('collects once for a burst of destroys, soon, and then at most once a second', () => {
    const collect = vi.fn();
    const r = new Reclaimer(collect);
    r.soon();
    r.soon();
    vi.advanceTimersByTime(COALESCE_MS - 1);
    expect(collect).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(collect).toHaveBeenCalledTimes(1);
    r.soon();
    vi.advanceTimersByTime(MIN_INTERVAL_MS - 1);
    expect(collect).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(1);
    expect(collect).toHaveBeenCalledTimes(2);
  });

  it('waits while a migration holds it back, and collects once the last hold is released', () => {
    const collect = vi.fn();
    const r = new Reclaimer(collect);
    const first = r.hold();
    const second = r.hold();
    r.soon();
    vi.advanceTimersByTime(5_000);
    first();
    first(); // idempotent: the second hold still counts
    vi.advanceTimersByTime(5_000);
    expect(collect).not.toHaveBeenCalled();
    second();
    vi.advanceTimersByTime(COALESCE_MS);
    expect(collect).toHaveBeenCalledTimes(1);
  });

  it('a hold taken after the collection was asked for still holds it back', () => {
    const collect = vi.fn();
    const r = new Reclaimer(collect);
    r.soon();
    const release = r.hold();
    vi.advanceTimersByTime(COALESCE_MS * 10);
    expect(collect).not.toHaveBeenCalled();
    release();
    vi.advanceTimersByTime(COALESCE_MS);
    expect(collect).toHaveBeenCalledTimes(1);
  });

  it(`never waits more than ${MAX_DEFER_MS} ms for a hold`, () => {
    const collect = vi.fn();
    const r = new Reclaimer(collect);
    r.hold();
    r.soon();
    vi.advanceTimersByTime(MAX_DEFER_MS - 1);
    expect(collect).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(collect).toHaveBeenCalledTimes(1);
  });
});
