/**
 * Migrations across the two-machine test bed (test/support/netns.ts: two network namespaces joined
 * through scripts/link-shaper.py), per link profile, plain ws:// (with a cluster token: a host off
 * loopback needs one, and every message is then tagged) and wss:// with mutual TLS, measured in
 * the same run: total time, downtime, bytes, throughput ÷ the profile's rate, and TLS ÷ plain
 * throughput. Prints one JSON object per migration, then a markdown table. Needs root, `ip`,
 * python3 and openssl.
 *
 *   npx tsx bench/links.ts [--profiles lan,datacenter,wan] [--cases idle,ms64,ms256,ms768] [--modes precopy,postcopy,hybrid,cold] [--runs N]
 *
 * A migration that does not end within --timeout seconds (default 240) is cancelled and reported
 * so; a pre-copy the link cannot converge is reported as its failure (ENOCONVERGE), as it is.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { waitForMigration } from '../src/cli/migrate-command.ts';
import type { MigrationInfo } from '../src/migration/stats.ts';
import { ControlClient } from '../src/wire/control-client.ts';
import { createTestbed, LINK_PROFILES, netnsUnavailable, startHostIn, stopHostIn, type LinkProfileName, type Testbed } from '../test/support/netns.ts';
import { median } from './quantile.ts';

const MiB = 1024 * 1024;
const PORT = 7400;
const CASES = {
  idle: { program: 'counter', args: ['period_ms=1000'], warmMs: 300 },
  ms64: { program: 'memstress', args: ['ws_mib=64'], warmMs: 800 },
  ms256: { program: 'memstress', args: ['ws_mib=256'], warmMs: 2000 },
  ms768: { program: 'memstress', args: ['ws_mib=768'], warmMs: 5000 },
} as const;
type CaseName = keyof typeof CASES;
const MODES = ['precopy', 'postcopy', 'hybrid', 'cold'] as const;
type Mode = (typeof MODES)[number];

const { values } = parseArgs({
  options: { profiles: { type: 'string' }, cases: { type: 'string' }, modes: { type: 'string' }, runs: { type: 'string' }, timeout: { type: 'string' } },
});
const list = <T extends string>(v: string | undefined, all: readonly T[]): T[] => {
  const picked = (v ?? all.join(',')).split(',') as T[];
  for (const p of picked) if (!all.includes(p)) throw new Error(`unknown "${p}": one of ${all.join(', ')}`);
  return picked;
};
const profiles = list(values.profiles, Object.keys(LINK_PROFILES) as LinkProfileName[]);
const cases = list(values.cases, Object.keys(CASES) as CaseName[]);
const modes = list(values.modes, MODES);
const runs = Number(values.runs ?? 1);
const timeoutMs = Number(values.timeout ?? 240) * 1000;

interface Env {
  bed: Testbed;
  a: ControlClient;
  b: ControlClient;
  to: string;
}

async function startPair(profile: LinkProfileName, tls: boolean, dir: string, token: string): Promise<Env> {
  const bed = await createTestbed({ profile });
  const { a, b } = bed;
  const scheme = tls ? 'wss' : 'ws';
  const auth = (n: string) => (tls ? ['--tls-cert', join(dir, `${n}.pem`), '--tls-key', join(dir, `${n}-key.pem`), '--tls-ca', join(dir, 'ca.pem')] : ['--token-file', join(dir, 'token')]);
  try {
    if (tls) execFileSync(fileURLToPath(new URL('../scripts/make-certs.sh', import.meta.url)), [dir, `a=${a.linkAddr},${a.controlAddr}`, `b=${b.linkAddr},${b.controlAddr}`, 'operator=127.0.0.1'], { stdio: 'ignore' });
    await Promise.all([
      startHostIn(a, ['--listen', `0.0.0.0:${PORT}`, ...auth('a'), '--advertise', `${scheme}://${a.linkAddr}:${PORT}`], 30_000, { FERRY_LOG_LEVEL: 'warn' }),
      startHostIn(b, ['--listen', `0.0.0.0:${PORT}`, ...auth('b'), '--advertise', `${scheme}://${b.linkAddr}:${PORT}`], 30_000, { FERRY_LOG_LEVEL: 'warn' }),
    ]);
    const connect = (addr: string) => ControlClient.connect(`${scheme}://${addr}:${PORT}`, {
      client: 'bench-links',
      ...(tls ? { tls: { ca: readFileSync(join(dir, 'ca.pem')), cert: readFileSync(join(dir, 'operator.pem')), key: readFileSync(join(dir, 'operator-key.pem')) } } : { token }),
    });
    return { bed, a: await connect(a.controlAddr), b: await connect(b.controlAddr), to: `${scheme}://${b.linkAddr}:${PORT}` };
  } catch (e) {
    await Promise.all([stopHostIn(a), stopHostIn(b)]);
    await bed.teardown();
    throw e;
  }
}

async function stopPair(env: Env): Promise<void> {
  await env.a.close().catch(() => undefined);
  await env.b.close().catch(() => undefined);
  await Promise.all([stopHostIn(env.bed.a), stopHostIn(env.bed.b)]);
  await env.bed.teardown();
}

async function once(env: Env, c: CaseName, mode: Mode, i: number): Promise<MigrationInfo | { status: 'timeout' }> {
  const name = `${c}-${mode}-${i}`;
  const spec = CASES[c];
  await env.a.request('vm.create', { name, program: spec.program, memory: 1024 * MiB, args: spec.args, start: true });
  await new Promise((r) => setTimeout(r, spec.warmMs));
  if (mode === 'cold') await env.a.request('vm.pause', { name });
  const done = waitForMigration(env.a, name);
  // Plain page frames: this measures the links (page encoding's effect on a slow link: bench/migration.ts, the at-125MBps rows).
  await env.a.request('migrate.start', {
    name, to: env.to, ...(mode === 'precopy' ? {} : { mode }), ...(mode === 'hybrid' ? { postcopyAfterRounds: 2 } : {}), xbzrle: 'off', compress: 'off',
  });
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([done, new Promise<{ status: 'timeout' }>((r) => { timer = setTimeout(() => r({ status: 'timeout' }), timeoutMs); })]);
  clearTimeout(timer);
  if (result.status === 'timeout') {
    await env.a.request('migrate.cancel', { name }).catch(() => undefined);
    await done.catch(() => undefined);
  }
  await env.b.request('vm.destroy', { name }).catch(() => undefined);
  await env.a.request('vm.destroy', { name }).catch(() => undefined);
  return result;
}

interface Figure { status: string; totalMs: number; downtimeMs: number; bytes: number; mbs: number }

function figure(results: (MigrationInfo | { status: 'timeout' })[]): Figure {
  const ok = results.filter((r): r is MigrationInfo => r.status === 'completed');
  if (ok.length === 0) {
    const r = results[0]!;
    return { status: r.status === 'timeout' ? 'timeout' : `${r.status} ${(r as MigrationInfo)['error-code'] ?? ''}`.trim(), totalMs: NaN, downtimeMs: NaN, bytes: NaN, mbs: NaN };
  }
  return {
    status: ok.length === results.length ? 'completed' : `${ok.length}/${results.length} completed`,
    totalMs: median(ok.map((r) => r['total-time-ms'])),
    downtimeMs: median(ok.map((r) => r['downtime-ms'] ?? 0)),
    bytes: median(ok.map((r) => r['transferred-bytes'])),
    mbs: median(ok.map((r) => r['transferred-bytes'] / Math.max(0.001, r['total-time-ms'] - r['setup-time-ms']) / 1000)),
  };
}

async function main(): Promise<void> {
  const why = netnsUnavailable({ shaper: true });
  if (why) {
    process.stderr.write(`bench/links.ts: cannot build the test bed: ${why}\n`);
    process.exit(1);
  }
  const dir = mkdtempSync(join(tmpdir(), 'ferry-bench-links-'));
  const token = 'bench-links-token-0123456789abcdef';
  writeFileSync(join(dir, 'token'), `${token}\n`, { mode: 0o600 });
  const rows: string[] = [];
  const r1 = (v: number) => (Number.isFinite(v) ? `${Math.round(v * 10) / 10}` : '–');
  try {
    for (const profile of profiles) {
      const rate = LINK_PROFILES[profile].rate;
      const fig: Record<string, Record<'plain' | 'tls', Figure>> = {};
      for (const transport of ['plain', 'tls'] as const) {
        const env = await startPair(profile, transport === 'tls', dir, token);
        try {
          for (const c of cases) {
            for (const mode of modes) {
              const results = [];
              for (let i = 0; i < runs; i++) results.push(await once(env, c, mode, i));
              const f = figure(results);
              (fig[`${c} ${mode}`] ??= {} as Record<'plain' | 'tls', Figure>)[transport] = f;
              process.stdout.write(`${JSON.stringify({ profile, transport, case: c, mode, runs, ...f, throughputVsRate: Math.round((f.mbs * 1e6 / rate) * 100) / 100 })}\n`);
            }
          }
        } finally {
          await stopPair(env);
        }
      }
      for (const [k, t] of Object.entries(fig)) {
        const ratio = Number.isFinite(t.tls.mbs / t.plain.mbs) ? `${Math.round((t.tls.mbs / t.plain.mbs) * 100) / 100}` : '–';
        const vsRate = (f: Figure) => (Number.isFinite(f.mbs) ? `${Math.round((f.mbs * 1e6 / rate) * 100) / 100}` : '–');
        rows.push(`| ${profile} | ${k} | ${t.plain.status} / ${t.tls.status} | ${r1(t.plain.totalMs)} / ${r1(t.tls.totalMs)} | ${r1(t.plain.downtimeMs)} / ${r1(t.tls.downtimeMs)} | `
          + `${r1(t.plain.bytes / MiB)} / ${r1(t.tls.bytes / MiB)} | ${vsRate(t.plain)} / ${vsRate(t.tls)} | ${ratio} |`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write('\n| profile | case (1 GiB VM) | status plain / TLS | total ms | downtime ms | MiB sent | throughput ÷ link rate | TLS ÷ plain throughput |\n|---|---|---|---|---|---|---|---|\n');
  process.stdout.write(`${rows.join('\n')}\n`);
}

await main();
