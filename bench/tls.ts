/**
 * What securing the link costs a migration: the same migrations between two host processes on
 * loopback over plain ws://, ws:// with a cluster token (every message tagged, frame-mac.ts),
 * and wss:// with mutual TLS (certificates from scripts/make-certs.sh, so openssl is needed),
 * measured in the same run. Prints one JSON object per case, then a table with the token's and
 * TLS's figures as ratios of the plain ones (the goal for TLS throughput: at least 0.8).
 *
 *   npx tsx bench/tls.ts            (FERRY_BENCH_RUNS=N: migrations per case and transport, default 3; the median is kept)
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitForMigration } from '../src/cli/migrate-command.ts';
import { startHostProcess, type HostProcess } from '../src/host/spawn.ts';
import type { MigrationInfo } from '../src/migration/stats.ts';
import { median } from './quantile.ts';

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
  // Plain page frames: the ratios are of what the transports carry, not of what encoding saves.
  await a.client.request('migrate.start', { name, to: b.url, ...c.params, xbzrle: 'off', compress: 'off' });
  const s = await done;
  await b.client.request('vm.destroy', { name }).catch(() => undefined);
  await a.client.request('vm.destroy', { name }).catch(() => undefined);
  return s;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-bench-tls-'));
  execFileSync(fileURLToPath(new URL('../scripts/make-certs.sh', import.meta.url)), [dir, 'a=127.0.0.1', 'b=127.0.0.1'], { stdio: 'ignore' });
  const tlsArgs = (n: string) => ['--tls-cert', join(dir, `${n}.pem`), '--tls-key', join(dir, `${n}-key.pem`), '--tls-ca', join(dir, 'ca.pem')];
  const trust = { tls: { ca: readFileSync(join(dir, 'ca.pem')), cert: readFileSync(join(dir, 'a.pem')), key: readFileSync(join(dir, 'a-key.pem')) } };
  const token = 'bench-cluster-token-0123456789abcdef';
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  const transports = {
    plain: await Promise.all([startHostProcess('a'), startHostProcess('b')]),
    token: await Promise.all([startHostProcess('a', ['--token-file', tokenFile], { token }), startHostProcess('b', ['--token-file', tokenFile], { token })]),
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
      const ratio = (t: 'token' | 'tls', k: 'totalMs' | 'downtimeMs' | 'mbs') => Math.round((fig[t]![k] / Math.max(0.001, fig.plain![k])) * 100) / 100;
      const rec = {
        name: c.name, runs: RUNS, plain: fig.plain, token: fig.token, tls: fig.tls,
        throughputTokenVsPlain: ratio('token', 'mbs'), throughputTlsVsPlain: ratio('tls', 'mbs'),
        totalTlsVsPlain: ratio('tls', 'totalMs'), downtimeTokenVsPlain: ratio('token', 'downtimeMs'), downtimeTlsVsPlain: ratio('tls', 'downtimeMs'),
      };
      process.stdout.write(`${JSON.stringify(rec)}\n`);
      const r = (v: number) => Math.round(v * 10) / 10;
      const cell = (k: 'totalMs' | 'downtimeMs') => `${r(fig.plain![k])} / ${r(fig.token![k])} / ${r(fig.tls![k])}`;
      rows.push(`| ${c.name} | ${cell('totalMs')} | ${cell('downtimeMs')} | ${Math.round(fig.plain!.mbs)} / ${Math.round(fig.token!.mbs)} / ${Math.round(fig.tls!.mbs)} | ${rec.throughputTokenVsPlain} | ${rec.throughputTlsVsPlain} |`);
    }
  } finally {
    for (const [a, b] of Object.values(transports)) await Promise.all([a!.stop(), b!.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write('\n| case | total ms (plain / token / TLS) | downtime ms (plain / token / TLS) | MB/s (plain / token / TLS) | token ÷ plain throughput | TLS ÷ plain throughput |\n|---|---|---|---|---|---|\n');
  process.stdout.write(`${rows.join('\n')}\n`);
}

await main();
