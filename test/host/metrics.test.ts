// GET /metrics (issue 14, point 5): the Prometheus text format, VMs by state with their speed,
// migrations counted as they end with QEMU's figures; never more open than the control API: a
// host with a token asks for its scrape key (ferry host metrics-key), and says why it refuses.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricsKey } from '../../src/host/metrics.ts';
import { startHost, type FerryHost } from '../../src/index.ts';
import { MiB, REPO_ROOT, runProcess } from '../support/helpers.ts';
import { TOKEN } from '../support/host-helpers.ts';

let open: FerryHost;
let a: FerryHost;
let b: FerryHost;

beforeAll(async () => {
  [open, a, b] = await Promise.all([startHost({ name: 'm-open' }), startHost({ name: 'm-a', token: TOKEN }), startHost({ name: 'm-b', token: TOKEN })]);
});

afterAll(async () => {
  await Promise.all([open?.stop(), a?.stop(), b?.stop()]);
});

const http = (h: FerryHost) => h.url.replace(/^ws/, 'http');

async function scrape(h: FerryHost, key?: string): Promise<{ status: number; type: string | null; body: string }> {
  const r = await fetch(`${http(h)}/metrics`, key === undefined ? {} : { headers: { authorization: `Bearer ${key}` } });
  return { status: r.status, type: r.headers.get('content-type'), body: await r.text() };
}

/** The value of one sample line, `name{labels} value`. */
function sample(body: string, series: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('the sample Grafana dashboard (docs/grafana-dashboard.json)', () => {
  it('queries only metrics a host serves', async () => {
    const dash = JSON.parse(readFileSync(join(REPO_ROOT, 'docs', 'grafana-dashboard.json'), 'utf8')) as { panels: { targets: { expr: string }[] }[] };
    const served = new Set([...(await scrape(open)).body.matchAll(/^# TYPE (\S+) (\w+)$/gm)].flatMap(([, name, type]) =>
      type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name!]));
    const used = dash.panels.flatMap((p) => p.targets.flatMap((t) => [...t.expr.matchAll(/\b(ferry_[a-z_]+)/g)].map((m) => m[1]!)));
    expect(used.length).toBeGreaterThan(8);
    expect(used.filter((n) => !served.has(n))).toEqual([]);
  });
});

describe('GET /metrics', () => {
  it('a host without a token (loopback only) serves its machine: VMs by state, each VM\'s state, speed and memory', async () => {
    const c = await open.connect();
    await c.createVm({ name: 'v1', program: 'counter', memory: 4 * MiB, start: true });
    await c.createVm({ name: 'v2', program: 'counter', memory: 8 * MiB });
    const r = await scrape(open);
    expect(r.status).toBe(200);
    expect(r.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(sample(r.body, 'ferry_vms{state="running"}')).toBe(1);
    expect(sample(r.body, 'ferry_vms{state="created"}')).toBe(1);
    expect(sample(r.body, 'ferry_vm_state{vm="v1",state="running"}')).toBe(1);
    expect(sample(r.body, 'ferry_vm_memory_bytes{vm="v2"}')).toBe(8 * MiB);
    expect(sample(r.body, 'ferry_vm_mips{vm="v1"}')).toBeGreaterThanOrEqual(0);
    expect(r.body).toMatch(/^ferry_host_info\{host="m-open",version="\d+\.\d+\.\d+"\} 1$/m);
    expect(r.body).toMatch(/^# TYPE ferry_migration_downtime_seconds histogram$/m);
    await c.destroyVm('v1');
    expect(sample((await scrape(open)).body, 'ferry_vms{state="running"}')).toBe(0);
    await c.close();
  });

  it('a host with a token refuses a scrape without its key, or with another (401, saying why), and serves one with it', async () => {
    for (const [key, why] of [[undefined, /wants its scrape key: Authorization: Bearer KEY/], ['0'.repeat(64), /not this host's scrape key/], [TOKEN, /wants its scrape key/]] as const) {
      const r = await scrape(a, key);
      expect(r.status).toBe(401);
      expect(r.body).toMatch(why);
      expect(r.body).not.toContain('ferry_');
    }
    expect((await scrape(a, metricsKey(TOKEN))).status).toBe(200);
  });

  it('ferry host metrics-key prints that key from the token, and says which flag it needs without one', async () => {
    const withToken = await runProcess(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'host', 'metrics-key'], 30_000, undefined, { env: { ...process.env, FERRY_TOKEN: TOKEN } });
    expect(withToken.code, withToken.stderr).toBe(0);
    expect(withToken.stdout).toBe(`${metricsKey(TOKEN)}\n`);
    expect((await scrape(a, withToken.stdout.trim())).status).toBe(200);
    const without = await runProcess(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'host', 'metrics-key'], 30_000, undefined, { env: { ...process.env, FERRY_TOKEN: '' } });
    expect(without.code).toBe(2);
    expect(without.stderr).toMatch(/^ferry: no cluster token: pass --token-file F or set FERRY_TOKEN/);
  });

  it('counts a migration when it ends, on both hosts, with its downtime, total time and passes', async () => {
    const ca = await a.connect();
    await ca.createVm({ name: 'mv', program: 'memstress', memory: 16 * MiB, args: ['ws_mib=4'], start: true });
    const m = await ca.migrate('mv', { to: b.url, maxRounds: 2, downtimeLimitMs: 1, switchoverAtMaxRounds: true });
    const final = await m.done;
    expect(final.status).toBe('completed');
    const src = (await scrape(a, metricsKey(TOKEN))).body;
    expect(sample(src, 'ferry_migrations_total{direction="outgoing",mode="precopy",status="completed"}')).toBe(1);
    expect(sample(src, 'ferry_migration_transferred_bytes_total{direction="outgoing"}')).toBe(final['transferred-bytes']);
    expect(sample(src, 'ferry_migration_downtime_seconds_count{mode="precopy"}')).toBe(1);
    expect(sample(src, 'ferry_migration_downtime_seconds_sum{mode="precopy"}')).toBeCloseTo(final['downtime-ms']! / 1000, 6);
    expect(sample(src, 'ferry_migration_dirty_sync_count_sum{mode="precopy"}')).toBe(2);
    const dst = (await scrape(b, metricsKey(TOKEN))).body;
    expect(sample(dst, 'ferry_migrations_total{direction="incoming",mode="precopy",status="completed"}')).toBe(1);
    expect(sample(dst, 'ferry_vm_state{vm="mv",state="running"}')).toBe(1);
    await ca.close();
  });
});
