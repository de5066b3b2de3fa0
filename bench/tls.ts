/**
 * What TLS costs a migration: the same migrations between two host processes on loopback, plain
 * ws:// and wss:// with mutual TLS (certificates from scripts/make-certs.sh, so openssl is
 * needed), measured in the same run. Prints one JSON object per case, then a table with each
 * TLS figure as a ratio of the plain one (the goal for throughput: at least 0.8).
 *
 *   npx tsx bench/tls.ts            (FERRY_BENCH_RUNS=N: migrations per case and transport, default 3; the median is kept)
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitForMigration } from '../src/cli/migrate-command.ts';
import { startHostProcess, type HostProcess } from '../src/host/spawn.ts';
import type { MigrationInfo } from '../src/migration/stats.ts';

const MiB = 1024 * 1024;
const RUNS = Number(process.env.FERRY_BENCH_RUNS ?? 3);
const CASES = [
  { name: 'idle-1GiB precopy', program: 'counter', memory: 1024 * MiB, args: ['period_ms=1000'], warmMs: 300, params: {} },
  { name: 'memstress-64MiB-in-1GiB precopy', program: 'memstress', memory: 1024 * MiB, args: ['ws_mib=64'], warmMs: 800, params: {} },
  { name: 'memstress-256MiB-in-1GiB cold', program: 'memstress', memory: 1024 * MiB, args: ['ws_mib=256'], warmMs: 2000, params: { mode: 'cold' } },
  { name: 'memstress-256MiB-in-1GiB postcopy', program: 'memstress', memory: 1024 * MiB, args: ['ws_mib=256'], warmMs: 2000, params: { mode: 'postcopy' } },
];

async function once(a: HostProcess, b: HostProcess, c: (typeof CASES)[number], i: number): Promise<MigrationInfo> {
  const name = `${c.name.split(' ')[0]}-${i}`;
  await a.client.request('vm.create', { name, program: c.program, memory: c.memory, args: c.args, start: true });
  await new Promise((r) => setTimeout(r, c.warmMs));
  if ((c.params as { mode?: string }).mode === 'cold') await a.client.request('vm.pause', { name });
  const done = waitForMigration(a.client, name);
  await a.client.request('migrate.start', { name, to: b.url, ...c.params });
  const s = await done;
  await b.client.request('vm.destroy', { name }).catch(() => undefined);
  await a.client.request('vm.destroy', { name }).catch(() => undefined);
  return s;
}

function median(v: number[]): number {
  const s = [...v].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-bench-tls-'));
  execFileSync(fileURLToPath(new URL('../scripts/make-certs.sh', import.meta.url)), [dir, 'a=127.0.0.1', 'b=127.0.0.1'], { stdio: 'ignore' });
  const tlsArgs = (n: string) => ['--tls-cert', join(dir, `${n}.pem`), '--tls-key', join(dir, `${n}-key.pem`), '--tls-ca', join(dir, 'ca.pem')];
  const trust = { tls: { ca: readFileSync(join(dir, 'ca.pem')), cert: readFileSync(join(dir, 'a.pem')), key: readFileSync(join(dir, 'a-key.pem')) } };
  const transports = {
    plain: await Promise.all([startHostProcess('a'), startHostProcess('b')]),
    tls: await Promise.all([startHostProcess('a', tlsArgs('a'), trust), startHostProcess('b', tlsArgs('b'), trust)]),
  };
  const rows: string[] = [];
  try {
    for (const c of CASES) {
      const fig: Record<string, { totalMs: number; downtimeMs: number; mbs: number }> = {};
      for (const [t, [a, b]] of Object.entries(transports)) {
        const runs: MigrationInfo[] = [];
        for (let i = 0; i < RUNS; i++) runs.push(await once(a!, b!, c, i));
        const failed = runs.find((r) => r.status !== 'completed');
        if (failed) throw new Error(`${c.name} over ${t}: ${failed.status} ${failed['error-desc'] ?? ''}`);
        fig[t] = {
          totalMs: median(runs.map((r) => r['total-time-ms'])),
          downtimeMs: median(runs.map((r) => r['downtime-ms'] ?? 0)),
          mbs: median(runs.map((r) => r['transferred-bytes'] / Math.max(0.001, r['total-time-ms'] - r['setup-time-ms']) / 1000)),
        };
      }
      const ratio = (k: 'totalMs' | 'downtimeMs' | 'mbs') => Math.round((fig.tls![k] / Math.max(0.001, fig.plain![k])) * 100) / 100;
      const rec = { name: c.name, runs: RUNS, plain: fig.plain, tls: fig.tls, throughputTlsVsPlain: ratio('mbs'), totalTlsVsPlain: ratio('totalMs'), downtimeTlsVsPlain: ratio('downtimeMs') };
      process.stdout.write(`${JSON.stringify(rec)}\n`);
      const r = (v: number) => Math.round(v * 10) / 10;
      rows.push(`| ${c.name} | ${r(fig.plain!.totalMs)} | ${r(fig.tls!.totalMs)} | ${r(fig.plain!.downtimeMs)} | ${r(fig.tls!.downtimeMs)} | ${Math.round(fig.plain!.mbs)} | ${Math.round(fig.tls!.mbs)} | ${rec.throughputTlsVsPlain} |`);
    }
  } finally {
    for (const [a, b] of Object.values(transports)) await Promise.all([a!.stop(), b!.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write('\n| case | plain total ms | TLS total ms | plain downtime ms | TLS downtime ms | plain MB/s | TLS MB/s | TLS ÷ plain throughput |\n|---|---|---|---|---|---|---|---|\n');
  process.stdout.write(`${rows.join('\n')}\n`);
}

await main();
