/**
 * What watching costs: a 1 GiB guest's speed with its dashboard page (live page map, 5 updates a
 * second of all 262144 pages) open in Chromium, against the same guest with no page open,
 * alternating in the same run on the same host process; the page's update rate; and the host's
 * time to read one page map. Prints one JSON line per window, then the summary with the ratio.
 * Without Chromium the viewer is the page's own control client (dashboard/control.js) in this
 * process, polling as the page does (said in the output); with Chromium, both are measured.
 *
 *   npx tsx bench/dashboard.ts        (FERRY_BENCH_RUNS=N: open/closed window pairs, default 3; FERRY_BENCH_WINDOW_MS, default 4000)
 */
import WebSocket from 'ws';
import { startHostProcess } from '../src/host/spawn.ts';
import { chromiumPath, launchChromium } from '../test/support/browser.ts';
import { median } from './quantile.ts';

const MiB = 1024 * 1024;
const RUNS = Number(process.env.FERRY_BENCH_RUNS ?? 3);
const WINDOW_MS = Number(process.env.FERRY_BENCH_WINDOW_MS ?? 4000);
const VM = 'watched';

const host = await startHostProcess('bench-dash');
const c = host.client;

async function instret(): Promise<number> {
  return (await c.request<{ instret: number }>('vm.info', { name: VM })).instret;
}

/** MIPS over one window, with whatever is watching left as it is. */
async function window(): Promise<number> {
  const n0 = await instret();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, WINDOW_MS));
  return (await instret() - n0) / ((performance.now() - t0) * 1000);
}

interface Viewer { frames(): Promise<number>; close(): Promise<void> }

async function openViewer(kind: 'chromium' | 'node'): Promise<Viewer> {
  if (kind === 'chromium') {
    const browser = await launchChromium();
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(`${host.url.replace(/^ws/, 'http')}/`);
    await page.waitForSelector(`tr[data-vm=${VM}]`);
    await page.click(`tr[data-vm=${VM}] button[data-action=view]`);
    await page.waitForFunction(() => Number(document.getElementById('page-map')?.dataset.frames ?? 0) > 0);
    return {
      frames: async () => Number(await page.getAttribute('#page-map', 'data-frames')),
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
      await conn.request('vm.pagemap', { name: VM });
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
  const closed: number[] = [];
  const opened: Record<string, number[]> = { chromium: [], node: [] };
  const rates: Record<string, number[]> = { chromium: [], node: [] };
  for (let i = 0; i < RUNS; i++) {
    for (const kind of viewers) {
      const mipsClosed = await window();
      closed.push(mipsClosed);
      console.log(JSON.stringify({ window: i, page: 'closed', mips: +mipsClosed.toFixed(1) }));
      const viewer = await openViewer(kind);
      const f0 = await viewer.frames();
      const t0 = performance.now();
      const mipsOpen = await window();
      const rate = (await viewer.frames() - f0) / ((performance.now() - t0) / 1000);
      await viewer.close();
      opened[kind]!.push(mipsOpen);
      rates[kind]!.push(rate);
      console.log(JSON.stringify({ window: i, page: 'open', viewer: kind, mips: +mipsOpen.toFixed(1), mapUpdatesPerSec: +rate.toFixed(2) }));
    }
  }
  const reads: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    await c.request('vm.pagemap', { name: VM });
    reads.push(performance.now() - t);
  }
  const summary = {
    bench: 'dashboard', guest: 'sieve in 1 GiB (262144 pages)', windowMs: WINDOW_MS, runs: RUNS,
    ...(chromiumPath ? {} : { chromium: 'not found: the page itself was not measured' }),
    mipsClosed: +median(closed).toFixed(1),
    viewers: Object.fromEntries(viewers.map((k) => [k, {
      mipsOpen: +median(opened[k]!).toFixed(1), openOverClosed: +(median(opened[k]!) / median(closed)).toFixed(3), mapUpdatesPerSec: +median(rates[k]!).toFixed(2),
    }])),
    pageMapRoundTripMs: +median(reads).toFixed(2),
  };
  console.log(JSON.stringify(summary));
} finally {
  await c.request('vm.destroy', { name: VM }).catch(() => undefined);
  await host.stop();
}
