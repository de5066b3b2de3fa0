/**
 * Fuzz throughput and robustness: runs the structure-aware fuzzer (fuzz/) for ≥ 100,000 frames
 * against a host with VMs and a post-copy in flight, and prints one JSON line: the report plus
 * frames/second. Progress goes to stderr.
 *
 *   npx tsx bench/fuzz.ts [--frames N] [--seed S] [--token] [--surface control|migrate|all] [--root DIR]
 */
import { parseArgs } from 'node:util';
import { runFuzz } from '../fuzz/index.ts';

const { values } = parseArgs({
  options: {
    frames: { type: 'string' }, seed: { type: 'string' }, token: { type: 'boolean' }, surface: { type: 'string' },
    root: { type: 'string' }, quiet: { type: 'boolean' },
  },
});
const frames = Number(values.frames ?? 100_000);
const seed = Number(values.seed ?? 1);
const surface = values.surface ?? 'all';
if (!Number.isSafeInteger(frames) || frames <= 0 || !Number.isSafeInteger(seed) || (surface !== 'all' && surface !== 'control' && surface !== 'migrate')) {
  process.stderr.write('usage: npx tsx bench/fuzz.ts [--frames N] [--seed S] [--token] [--surface control|migrate|all] [--root DIR]\n');
  process.exit(2);
}
const ac = new AbortController();
process.once('SIGINT', () => ac.abort());
const report = await runFuzz({
  seed, frames, token: values.token === true, surface, batchFrames: 2000, maxRestarts: 50, signal: ac.signal,
  ...(values.root !== undefined ? { root: values.root } : {}),
  ...(values.quiet ? {} : { log: (line: string) => process.stderr.write(`[fuzz] ${line}\n`) }),
});
process.stdout.write(`${JSON.stringify({ name: 'fuzz', unit: 'frames/s', value: Math.round(report.framesPerSecond), report })}\n`);
// Sockets to a host that died may linger a moment; nothing else is left to wait for.
setTimeout(() => process.exit(0), 200).unref();
