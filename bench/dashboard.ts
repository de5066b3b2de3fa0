/**
 * What watching costs: a 1 GiB guest's speed with its dashboard page (live page map, 5 updates a
 * second of all 262144 pages) open in Chromium, against the same guest with no page open,
 * alternating in the same run on the same host process; then the same during a pre-copy
 * migration of it (a 256 MiB working set rewritten at full speed, capped at 200 MB/s so it runs
 * on: the map shows dirty, queued and in-flight pages and is read afresh each time); the page's
 * update rate, Chromium's CPU and its page thread's; the host's round trip for one fresh page map,
 * and the host thread's time to read one of 1 GiB. Prints one JSON line per window, then
 * the summary with the ratios.
 * Without Chromium the viewer is the page's own control client (dashboard/control.js) in this
 * process, polling as the page does (said in the output); with Chromium, both are measured.
 *
 *   npx tsx bench/dashboard.ts        (FERRY_BENCH_RUNS=N: open/closed window pairs, default 3; FERRY_BENCH_WINDOW_MS, default 4000)
 */
import { readdirSync, readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { startHostProcess } from '../src/host/spawn.ts';
import { GuestMemory } from '../src/memory/guest-memory.ts';
import { pageMap } from '../src/vm/page-map.ts';
import { chromiumPath, launchChromium } from '../test/support/browser.ts';
import { median } from './quantile.ts';

const MiB = 1024 * 1024;
const RUNS = Number(process.env.FERRY_BENCH_RUNS ?? 3);
const WINDOW_MS = Number(process.env.FERRY_BENCH_WINDOW_MS ?? 4000);

const [host, dest] = await Promise.all([startHostProcess('bench-dash'), startHostProcess('bench-dash-to')]);
const c = host.client;
let VM = 'watched';

async function instret(): Promise<number> {
  return (await c.request<{ instret: number }>('vm.info', { name: VM })).instret;
}

/** MIPS over one window, with whatever is watching left as it is; during a migration if `migrating`. */
async function window(migrating = false): Promise<number> {
  if (migrating) {
    await c.request('migrate.start', { name: VM, to: dest.url, mode: 'precopy', maxBandwidth: 200_000_000, maxRounds: 1000, xbzrle: 'off', compress: 'off' });
    await new Promise((r) => setTimeout(r, 500));
  }
  const n0 = await instret();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, WINDOW_MS));
  const mips = (await instret() - n0) / ((performance.now() - t0) * 1000);
  if (migrating) {
    const s = await c.request<{ status: string }>('migrate.status', { name: VM });
    if (s.status !== 'active') throw new Error(`the migration was to run through the window, but it is ${s.status}`);
    await c.request('migrate.cancel', { name: VM });
    for (let i = 0; i < 100 && (await c.request<{ status: string }>('migrate.status', { name: VM })).status !== 'cancelled'; i++) await new Promise((r) => setTimeout(r, 50));
  }
  return mips;
}

interface Viewer {
  frames(): Promise<number>;
  /** Chromium: seconds the page's own thread has spent in tasks and in scripts so far (CDP Performance). */
  pageThread?(): Promise<{ task: number; script: number }>;
  close(): Promise<void>;
}

/** CPU time (ms) of every Chromium process so far, from /proc (Linux). */
function chromiumCpuMs(): number {
  let ticks = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('chromium')) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]); // utime, stime
    } catch {
      // gone meanwhile
    }
  }
  return ticks * 10; // USER_HZ 100
}

async function openViewer(kind: 'chromium' | 'node'): Promise<Viewer> {
  if (kind === 'chromium') {
    const browser = await launchChromium();
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(`${host.url.replace(/^ws/, 'http')}/`);
    await page.waitForSelector(`tr[data-vm=${VM}]`);
    await page.click(`tr[data-vm=${VM}] button[data-action=view]`);
    await page.waitForFunction(() => Number(document.getElementById('page-map')?.dataset.frames ?? 0) > 0);
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    return {
      frames: async () => Number(await page.getAttribute('#page-map', 'data-frames')),
      pageThread: async () => {
        const m = new Map((await cdp.send('Performance.getMetrics')).metrics.map((x) => [x.name, x.value]));
        return { task: m.get('TaskDuration') ?? 0, script: m.get('ScriptDuration') ?? 0 };
      },
      close: () => browser.close(),
    };
  }
  (globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;
  const { HostConnection } = await import('../dashboard/control.js');
  const conn = await HostConnection.open(host.url);
  let frames = 0;
  let open = true;
  void (async () => {
    while (open) {
      const t = performance.now();
      // (the last request ends with the connection: not an error)
      if (!(await conn.request('vm.pagemap', { name: VM, runs: true }).then(() => true, () => false))) break;
      frames++;
      await new Promise((r) => setTimeout(r, Math.max(0, 200 - (performance.now() - t))));
    }
  })();
  return { frames: async () => frames, close: async () => { open = false; conn.close(); } };
}

try {
  // sieve: compute-bound, its speed is the vCPU's (memstress would measure its sleeps too).
  await c.request('vm.create', { name: VM, program: 'sieve', memory: 1024 * MiB, args: ['n=4000000', 'reps=100000'], start: true });
  await new Promise((r) => setTimeout(r, 1000));
  // The page in Chromium (renderer and all: on a small machine its CPU is the vCPU's too), and the
  // page's control client alone (what the host spends serving the map).
  const viewers: ('chromium' | 'node')[] = chromiumPath ? ['chromium', 'node'] : ['node'];
  const rows: Record<string, { closed: number[]; open: Record<string, number[]>; rates: Record<string, number[]>; chromiumCores: number[]; pageThread: { task: number; script: number }[] }> = {};
  for (const [row, migrating] of [['idle host', false], ['during pre-copy', true]] as const) {
    if (migrating) {
      await c.request('vm.destroy', { name: VM });
      VM = 'watched-migrating';
      await c.request('vm.create', { name: VM, program: 'memstress', memory: 1024 * MiB, args: ['ws_mib=256'], start: true });
      await new Promise((r) => setTimeout(r, 1500));
    }
    const r = { closed: [] as number[], open: { chromium: [] as number[], node: [] as number[] }, rates: { chromium: [] as number[], node: [] as number[] }, chromiumCores: [] as number[], pageThread: [] as { task: number; script: number }[] };
    rows[row] = r;
    for (let i = 0; i < RUNS; i++) {
      for (const kind of viewers) {
        const mipsClosed = await window(migrating);
        r.closed.push(mipsClosed);
        console.log(JSON.stringify({ row, window: i, page: 'closed', mips: +mipsClosed.toFixed(1) }));
        const viewer = await openViewer(kind);
        const f0 = await viewer.frames();
        const t0 = performance.now();
        const cpu0 = chromiumCpuMs();
        const thread0 = await viewer.pageThread?.();
        const mipsOpen = await window(migrating);
        const elapsed = performance.now() - t0;
        const rate = (await viewer.frames() - f0) / (elapsed / 1000);
        const cores = kind === 'chromium' ? (chromiumCpuMs() - cpu0) / elapsed : undefined;
        if (cores !== undefined) r.chromiumCores.push(cores);
        const thread1 = await viewer.pageThread?.();
        // The page's own thread, as a share of one core: all its tasks, and the scripts among them.
        const pageThread = thread0 && thread1
          ? { task: (thread1.task - thread0.task) * 1000 / elapsed, script: (thread1.script - thread0.script) * 1000 / elapsed }
          : undefined;
        if (pageThread) r.pageThread.push(pageThread);
        await viewer.close();
        r.open[kind]!.push(mipsOpen);
        r.rates[kind]!.push(rate);
        console.log(JSON.stringify({ row, window: i, page: 'open', viewer: kind, mips: +mipsOpen.toFixed(1), mapUpdatesPerSec: +rate.toFixed(2), ...(cores !== undefined ? { chromiumCores: +cores.toFixed(3) } : {}),
          ...(pageThread ? { pageThreadCores: +pageThread.task.toFixed(3), pageScriptCores: +pageThread.script.toFixed(4) } : {}) }));
      }
    }
  }
  // One map read afresh (a migration runs: nothing is kept), as runs, round trip from this process.
  const reads: number[] = [];
  await c.request('migrate.start', { name: VM, to: dest.url, mode: 'precopy', maxBandwidth: 200_000_000, maxRounds: 1000, xbzrle: 'off', compress: 'off' });
  await new Promise((r) => setTimeout(r, 500)); // past its setup: sending
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    await c.request('vm.pagemap', { name: VM, runs: true });
    reads.push(performance.now() - t);
  }
  await c.request('migrate.cancel', { name: VM });
  // The host thread's part alone: pageMap over a 1 GiB VM's page states (100000 of its pages written), here in-process.
  const mem = GuestMemory.allocate(1024 * MiB);
  for (let p = 0; p < 100_000; p++) mem.hostWrite(p * 4096, new Uint8Array([1]));
  const computes: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t = performance.now();
    pageMap(mem, { dirtyLog: true });
    computes.push(performance.now() - t);
  }
  const summary = {
    bench: 'dashboard', guest: 'sieve in 1 GiB (262144 pages); during pre-copy memstress 256 MiB in 1 GiB', windowMs: WINDOW_MS, runs: RUNS,
    ...(chromiumPath ? {} : { chromium: 'not found: the page itself was not measured' }),
    rows: Object.fromEntries(Object.entries(rows).map(([row, r]) => [row, {
      mipsClosed: +median(r.closed).toFixed(1),
      ...(r.chromiumCores.length ? { chromiumCores: +median(r.chromiumCores).toFixed(3) } : {}),
      ...(r.pageThread.length ? { pageThreadCores: +median(r.pageThread.map((t) => t.task)).toFixed(3), pageScriptCores: +median(r.pageThread.map((t) => t.script)).toFixed(4) } : {}),
      viewers: Object.fromEntries(viewers.map((k) => [k, {
        mipsOpen: +median(r.open[k]!).toFixed(1), openOverClosed: +(median(r.open[k]!) / median(r.closed)).toFixed(3), mapUpdatesPerSec: +median(r.rates[k]!).toFixed(2),
      }])),
    }])),
    freshPageMapRoundTripMs: +median(reads).toFixed(2),
    pageMap1GiBMs: +median(computes).toFixed(2),
  };
  console.log(JSON.stringify(summary));
} finally {
  await c.request('vm.destroy', { name: VM }).catch(() => undefined);
  await Promise.all([host.stop(), dest.stop()]);
}
