// The monitor's tab completion (the REPL itself is exercised through piped sessions in host-cli.test.ts).
import { describe, expect, it } from 'vitest';
import { completeMonitorLine } from '../src/cli/monitor.ts';

describe('monitor tab completion', () => {
  const vms = ['c1', 'c2', 'm1'];
  it.each([
    ['in', ['info', 'input'], 'in'],
    ['mig', ['migrate', 'migrate_start_postcopy', 'migrate_cancel'], 'mig'],
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
