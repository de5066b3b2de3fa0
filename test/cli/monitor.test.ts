// The monitor's tab completion and the migration summary line it shares with `ferry migrate
// status` (the REPL itself is exercised through piped sessions in host-cli.test.ts).
import { describe, expect, it } from 'vitest';
import { completeMonitorLine } from '../../src/cli/monitor.ts';
import { migrationSummary } from '../../src/cli/migrate-command.ts';
import { monitorMigrateParams } from '../../src/cli/monitor.ts';
import type { MigrationInfo } from '../../src/migration/stats.ts';

describe('monitor tab completion', () => {
  const vms = ['c1', 'c2', 'm1'];
  it.each([
    ['in', ['info', 'input'], 'in'],
    ['mig', ['migrate', 'migrate_start_postcopy', 'migrate_pause', 'migrate_recover', 'migrate_resolve', 'migrate_cancel'], 'mig'],
    ['migrate_re', ['migrate_recover', 'migrate_resolve'], 'migrate_re'],
    ['migrate_recover c', ['c1', 'c2'], 'c'],
    ['info r', ['registers'], 'r'],
    ['info vm c', ['c1', 'c2'], 'c'],
    ['info vms ', [], ''],
    ['stop m', ['m1'], 'm'],
    ['console o', ['off'], 'o'],
    ['create x mem', ['memstress'], 'mem'],
    ['digest ', ['c1', 'c2', 'm1'], ''],
    ['cont c1 extra', [], 'extra'],
  ] as [string, string[], string][])('"%s" completes to %j', (line, want, word) => {
    expect(completeMonitorLine(line, vms)).toEqual([want, word]);
  });
});

describe('migration summary', () => {
  const info: MigrationInfo = {
    vm: 'm1', direction: 'outgoing', mode: 'postcopy', peer: 'ws://127.0.0.1:7412', status: 'postcopy-active',
    'total-time-ms': 1500, 'setup-time-ms': 3, 'downtime-ms': 12, 'transferred-bytes': 2 * 1024 * 1024, 'remaining-bytes': 0,
    'total-bytes': 32 * 1024 * 1024, 'pages-sent': 512, 'zero-pages': 0, 'dirty-sync-count': 0, 'dirty-pages-rate': 0, mbps: 0,
    'precopy-bytes': 0, 'downtime-bytes': 0, 'postcopy-bytes': 2 * 1024 * 1024, 'postcopy-requests': 40, 'throttle-percent': 0, rounds: [],
  };

  it('leaves out the recovery counters until there are some', () => {
    expect(migrationSummary(info)).toBe('m1: migration postcopy-active (to ws://127.0.0.1:7412): total 1500 ms, downtime 12 ms, 0 rounds, 2 MiB sent, 512 pages (0 zero)');
  });

  it('a paused post-copy says why first; recoveries, paused time and resent pages come last', () => {
    const paused: MigrationInfo = {
      ...info, status: 'postcopy-paused', 'error-desc': 'link lost; recovery attempt 2 failed: connect ETIMEDOUT',
      'postcopy-recoveries': 1, 'postcopy-paused-ms': 830.5, 'postcopy-resent-pages': 7,
    };
    expect(migrationSummary(paused)).toBe('m1: migration postcopy-paused (to ws://127.0.0.1:7412): link lost; recovery attempt 2 failed: connect ETIMEDOUT; '
      + 'total 1500 ms, downtime 12 ms, 0 rounds, 2 MiB sent, 512 pages (0 zero), 1 recovery, paused 830.5 ms, 7 pages resent');
    const done: MigrationInfo = { ...paused, status: 'completed', 'postcopy-recoveries': 2, 'postcopy-resent-pages': 0 };
    delete done['error-desc'];
    expect(migrationSummary(done)).toBe('m1: migration completed (to ws://127.0.0.1:7412): '
      + 'total 1500 ms, downtime 12 ms, 0 rounds, 2 MiB sent, 512 pages (0 zero), 2 recoveries, paused 830.5 ms, 0 pages resent');
  });
});

describe('the monitor\'s migrate words', () => {
  it('become the migrate.start request, page encoding included', () => {
    expect(monitorMigrateParams(['vm1', 'ws://b:7412', 'hybrid', 'max-bandwidth=125M', 'xbzrle=on', 'compress=off', 'xbzrle-cache=64M', 'as=vm2'])).toEqual({
      name: 'vm1', to: 'ws://b:7412', mode: 'hybrid', maxBandwidth: 125 * 1024 * 1024, xbzrle: 'on', compress: 'off', xbzrleCacheBytes: 64 * 1024 * 1024, as: 'vm2',
    });
  });

  it('a word it does not know is a usage error naming the words it does', () => {
    expect(() => monitorMigrateParams(['vm1', 'ws://b:7412', 'xbzrle=maybe'])).toThrow(/usage: migrate NAME .*xbzrle=auto\|on\|off/);
  });
});
