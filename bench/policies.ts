/**
 * The built-in policies side by side, in the same run on the same two host processes: the
 * convergence decision (default vs predictive) on a hybrid migration of a guest that rewrites its
 * working set faster than pre-copy converges to a 20 ms limit, and the post-copy push order (default page order vs
 * near-pc) on a post-copy migration. Prints one JSON line per row, then a table with each
 * alternative's figures as ratios of the default's.
 *
 *   npx tsx bench/policies.ts        (FERRY_BENCH_RUNS=N: migrations per row, default 3; the median is kept)
 */
import { waitForMigration } from '../src/cli/migrate-command.ts';
import { startHostProcess } from '../src/host/spawn.ts';
import type { MigrationInfo } from '../src/migration/stats.ts';
import { median } from './quantile.ts';

const MiB = 1024 * 1024;
const RUNS = Number(process.env.FERRY_BENCH_RUNS ?? 3);

interface Row { name: string; ws: number; params: Record<string, unknown>; kind: 'convergence' | 'push'; policy: string }
const ROWS: Row[] = [
  { name: 'hybrid memstress-64MiB-in-1GiB limit-20ms', ws: 64, kind: 'convergence', policy: 'default', params: { mode: 'hybrid', downtimeLimitMs: 20, convergencePolicy: 'default' } },
  { name: 'hybrid memstress-64MiB-in-1GiB limit-20ms', ws: 64, kind: 'convergence', policy: 'predictive', params: { mode: 'hybrid', downtimeLimitMs: 20, convergencePolicy: 'predictive' } },
  { name: 'postcopy memstress-256MiB-in-1GiB', ws: 256, kind: 'push', policy: 'default', params: { mode: 'postcopy', pushOrder: 'default' } },
  { name: 'postcopy memstress-256MiB-in-1GiB', ws: 256, kind: 'push', policy: 'near-pc', params: { mode: 'postcopy', pushOrder: 'near-pc' } },
];

const [a, b] = await Promise.all([startHostProcess('pa'), startHostProcess('pb')]);
const figures: Record<string, { totalMs: number; downtimeMs: number; mib: number; rounds: number; faults: number; blockedMs: number }> = {};
try {
  for (const row of ROWS) {
    const runs: MigrationInfo[] = [];
    const faults: number[] = [];
    const blocked: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const name = `${row.kind}-${row.policy}-${i}`;
      await a.client.request('vm.create', { name, program: 'memstress', memory: 1024 * MiB, args: [`ws_mib=${row.ws}`], start: true });
      await new Promise((r) => setTimeout(r, 1500));
      const done = waitForMigration(a.client, name);
      await a.client.request('migrate.start', { name, to: b.url, xbzrle: 'off', compress: 'off', ...row.params });
      const s = await done;
      if (s.status !== 'completed') throw new Error(`${row.name} ${row.policy}: ${s.status} ${s['error-desc'] ?? ''}`);
      runs.push(s);
      const dest = await b.client.request<MigrationInfo>('migrate.status', { name });
      faults.push(dest['postcopy-requests']);
      blocked.push(dest['postcopy-blocktime-ms'] ?? 0);
      await b.client.request('vm.destroy', { name }).catch(() => undefined);
    }
    const f = {
      totalMs: median(runs.map((r) => r['total-time-ms'])),
      downtimeMs: median(runs.map((r) => r['downtime-ms'] ?? 0)),
      mib: Math.round(median(runs.map((r) => r['transferred-bytes'])) / MiB),
      rounds: median(runs.map((r) => r['dirty-sync-count'])),
      faults: median(faults),
      blockedMs: median(blocked),
    };
    figures[`${row.kind}:${row.policy}`] = f;
    process.stdout.write(`${JSON.stringify({ name: row.name, kind: row.kind, policy: row.policy, runs: RUNS, ...f })}\n`);
  }
} finally {
  await Promise.all([a.stop(), b.stop()]);
}
const ratio = (x: number, y: number) => (y > 0 ? Math.round((x / y) * 100) / 100 : '–');
process.stdout.write('\n| row | policy | total ms | downtime ms | MiB sent | rounds | faults | vCPU blocked ms | total ÷ default | faults ÷ default |\n|---|---|---|---|---|---|---|---|---|---|\n');
for (const row of ROWS) {
  const f = figures[`${row.kind}:${row.policy}`]!;
  const d = figures[`${row.kind}:default`]!;
  process.stdout.write(`| ${row.name} | ${row.policy} | ${f.totalMs} | ${f.downtimeMs} | ${f.mib} | ${f.rounds} | ${f.faults} | ${f.blockedMs} | ${ratio(f.totalMs, d.totalMs)} | ${ratio(f.faults, d.faults)} |\n`);
}
