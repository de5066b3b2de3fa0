/**
 * `npm run fuzz -- --frames N --seed S [--token] [--surface control|migrate|all] [--json] ...`
 * Fuzzes a Ferry host (with VMs and a post-copy in flight) and prints the report; exit status 0
 * only when nothing crashed or hung, the fixture's VMs and post-copy are fine, and descriptors
 * and RSS came back within their thresholds.
 */
import { parseArgs } from 'node:util';
import { runFuzz, type FuzzOptions } from './engine.ts';
import { summary } from './report.ts';
import { STRATEGIES } from './strategies/index.ts';

const USAGE = `usage: npm run fuzz -- [--frames N] [--seed S] [--case K] [--token] [--surface control|migrate|all] [--json]
  [--concurrency N] [--batch N] [--fd-threshold N] [--rss-threshold MIB] [--warmup-frames N] [--settle-ms MS]
  [--strategies a,b] [--exclude a,b] [--no-triage] [--max-triage N] [--max-restarts N] [--quarantine]
  [--root DIR] [--log-level LEVEL] [--quiet] [--list]`;

function int(name: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer (got ${v})`);
  return n;
}

function list(v: string | undefined): string[] | undefined {
  return v === undefined ? undefined : v.split(',').map((x) => x.trim()).filter((x) => x !== '');
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        frames: { type: 'string' }, seed: { type: 'string' }, case: { type: 'string' }, token: { type: 'boolean' },
        surface: { type: 'string' }, json: { type: 'boolean' }, concurrency: { type: 'string' }, batch: { type: 'string' },
        'fd-threshold': { type: 'string' }, 'rss-threshold': { type: 'string' }, 'settle-ms': { type: 'string' }, 'warmup-frames': { type: 'string' },
        strategies: { type: 'string' }, exclude: { type: 'string' }, 'no-triage': { type: 'boolean' }, 'max-triage': { type: 'string' },
        'max-restarts': { type: 'string' }, quarantine: { type: 'boolean' }, root: { type: 'string' }, 'log-level': { type: 'string' },
        quiet: { type: 'boolean' }, list: { type: 'boolean' }, help: { type: 'boolean' },
      },
      strict: true,
    }));
  } catch (e) {
    process.stderr.write(`ferry fuzz: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (values.list) {
    for (const s of STRATEGIES) process.stdout.write(`${s.name.padEnd(24)} ${s.surfaces.join(',').padEnd(16)} weight ${s.weight}\n`);
    return 0;
  }
  let options: FuzzOptions;
  try {
    const surface = values.surface ?? 'all';
    if (surface !== 'control' && surface !== 'migrate' && surface !== 'all') throw new Error(`--surface must be control, migrate or all (got ${surface})`);
    const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : int('seed', values.seed, 0);
    options = {
      seed, frames: int('frames', values.frames, 20_000), token: values.token === true, surface,
      ...(values.case !== undefined ? { onlyCase: int('case', values.case, 0) } : {}),
      concurrency: Math.max(1, int('concurrency', values.concurrency, 6)), batchFrames: Math.max(1, int('batch', values.batch, 400)),
      fdThreshold: int('fd-threshold', values['fd-threshold'], 4), rssThresholdMiB: int('rss-threshold', values['rss-threshold'], 64),
      settleMs: int('settle-ms', values['settle-ms'], 15_000),
      ...(values['warmup-frames'] !== undefined ? { warmupFrames: int('warmup-frames', values['warmup-frames'], 0) } : {}),
      ...(list(values.strategies) ? { strategies: list(values.strategies)! } : {}),
      ...(list(values.exclude) ? { exclude: list(values.exclude)! } : {}),
      triage: values['no-triage'] !== true, maxTriage: int('max-triage', values['max-triage'], 8),
      maxRestarts: int('max-restarts', values['max-restarts'], 20), quarantine: values.quarantine === true,
      ...(values.root !== undefined ? { root: values.root } : {}),
      ...(values['log-level'] !== undefined ? { logLevel: values['log-level'] } : {}),
      ...(values.quiet ? {} : { log: (line: string) => process.stderr.write(`[fuzz] ${line}\n`) }),
    };
  } catch (e) {
    process.stderr.write(`ferry fuzz: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const ac = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts === 1) {
      process.stderr.write('[fuzz] interrupted: stopping and cleaning up (again to quit at once)\n');
      ac.abort();
    } else {
      process.exit(130); // the spawn module's exit hook kills the hosts
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  options.signal = ac.signal;
  options.log?.(`seed ${options.seed}, ${options.frames} frames, ${options.token ? 'with' : 'without'} a token, surface ${options.surface}`);
  const report = await runFuzz(options);
  process.stdout.write(values.json ? `${JSON.stringify(report)}\n` : `${summary(report)}\n`);
  return report.ok ? 0 : 1;
}

main().then((code) => {
  process.exitCode = code;
  // Sockets to a dead host may linger for a moment; nothing else is left to wait for.
  setTimeout(() => process.exit(code), 500).unref();
}, (e: unknown) => {
  process.stderr.write(`ferry fuzz: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(1);
});
