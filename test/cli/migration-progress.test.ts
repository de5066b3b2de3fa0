// What `ferry migrate` shows while it waits: a share only of a known whole (never 100 % in round 0
// or post-copy before it is true), the ETA from the rate watched, and the final table.
import { describe, expect, it } from 'vitest';
import { MigrationProgress, statisticsTable } from '../../src/cli/migration-progress.ts';
import type { MigrationInfo } from '../../src/migration/stats.ts';

const MiB = 1024 * 1024;

function info(over: Partial<MigrationInfo>): MigrationInfo {
  return {
    vm: 'm', direction: 'outgoing', mode: 'precopy', peer: 'ws://b:1', status: 'active',
    'total-time-ms': 0, 'setup-time-ms': 2, 'transferred-bytes': 0, 'remaining-bytes': 0, 'total-bytes': 1024 * MiB,
    'pages-sent': 0, 'zero-pages': 0, 'dirty-sync-count': 0, 'dirty-pages-rate': 0, mbps: 0,
    'precopy-bytes': 0, 'downtime-bytes': 0, 'postcopy-bytes': 0, 'postcopy-requests': 0, 'throttle-percent': 0, rounds: [],
    ...over,
  };
}

describe('migration progress', () => {
  it('round 0 counts down its own pages (it used to read 100 % from the start) and gives an ETA once a rate is seen', () => {
    const p = new MigrationProgress();
    expect(p.line(info({}), 0)).toBe('m active: round 0 starting'); // (before its list is known)
    const first = p.line(info({ 'remaining-bytes': 64 * MiB, 'transferred-bytes': 0 }), 0);
    expect(first).toBe('m active: round 0 [--------------------] 0% 64 MiB left in it, 0 B sent');
    const half = p.line(info({ 'remaining-bytes': 32 * MiB, 'transferred-bytes': 32 * MiB }), 1000);
    expect(half).toBe('m active: round 0 [##########----------] 50% 32 MiB left in it, ~1.0 s left, 32 MiB sent');
  });

  it('a later round shows the dirty rate against the link and the expected downtime', () => {
    const p = new MigrationProgress();
    const s = info({ 'dirty-sync-count': 2, 'remaining-bytes': 8 * MiB, 'transferred-bytes': 200 * MiB, 'dirty-pages-rate': 2560, mbps: 800, 'expected-downtime-ms': 84 });
    expect(p.line(s, 0)).toBe('m active: round 2 [--------------------] 0% 8 MiB left in it, 200 MiB sent; guest dirties 10 MiB/s, link 95.4 MiB/s; expected downtime 84 ms');
  });

  it('post-copy shows what is still at the source out of what was, and the pages the destination asked for', () => {
    const p = new MigrationProgress();
    const s = info({ status: 'postcopy-active', mode: 'postcopy', 'touched-pages': 1000, 'remaining-bytes': 250 * 4096, 'postcopy-requests': 7 });
    expect(p.line(s, 0)).toBe('m postcopy-active: the guest runs on ws://b:1; [###############-----] 75% 1000 KiB still here, 7 pages asked for by the destination');
    const paused = p.line({ ...s, status: 'postcopy-paused', 'error-desc': 'link lost: reset' }, 10);
    expect(paused).toMatch(/^m postcopy-paused \(link lost: link lost: reset\): the guest runs on ws:\/\/b:1; /);
  });

  it('the final table holds the statistics in human units', () => {
    const t = statisticsTable(info({ status: 'completed', 'total-time-ms': 1500, 'downtime-ms': 12.5, 'transferred-bytes': 300 * MiB, 'precopy-bytes': 280 * MiB, 'downtime-bytes': 20 * MiB, 'dirty-sync-count': 3, 'pages-sent': 76800, 'zero-pages': 10 }));
    expect(t).toContain('completed');
    expect(t).toMatch(/total time\s*│\s*1\.5 s/);
    expect(t).toMatch(/downtime\s*│\s*12\.5 ms/);
    expect(t).toMatch(/sent\s*│\s*300 MiB \(pre-copy 280 MiB, downtime 20 MiB, post-copy 0 B\)/);
    expect(t).toMatch(/throughput\s*│\s*200 MiB\/s/);
  });
});
