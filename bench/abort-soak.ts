/**
 * Leak-free aborts: thousands of incoming migrations aborted at setup, after page frames, at a
 * garbage state section and after a post-copy advice, against one host process; prints one
 * JSON line with its resident memory and open descriptors (cold, after the first tenth, at the
 * end, peak) and the growth of each.
 *
 *   npx tsx bench/abort-soak.ts [--aborts N] [--ram-mib M] [--root DIR]
 */
import { parseArgs } from 'node:util';
import { runAbortSoak } from '../fuzz/soak.ts';

const { values } = parseArgs({ options: { aborts: { type: 'string' }, 'ram-mib': { type: 'string' }, root: { type: 'string' } } });
const aborts = Number(values.aborts ?? 3000);
const ramMiB = Number(values['ram-mib'] ?? 16);
if (!Number.isSafeInteger(aborts) || aborts < 10 || !Number.isSafeInteger(ramMiB) || ramMiB < 4) {
  process.stderr.write('usage: npx tsx bench/abort-soak.ts [--aborts N (>= 10)] [--ram-mib M (>= 4)] [--root DIR]\n');
  process.exit(2);
}
const report = await runAbortSoak({
  aborts, ramMiB, ...(values.root !== undefined ? { root: values.root } : {}), log: (l) => process.stderr.write(`[soak] ${l}\n`),
});
process.stdout.write(`${JSON.stringify({ name: 'abort-soak', unit: 'aborts/s', value: report.abortsPerSecond, report })}\n`);
