/// <reference lib="dom" />
// The dashboard in a real browser (issue 14, point 6): Chromium opens host A's page, starts a
// guest from it, migrates it to host B from the dialog in post-copy, sees the page map show the
// pages missing on B and then none, the migration complete and the console go on from B; the
// report downloads as JSON. Then B's page moves it back by pre-copy, with its rounds charted.
// Both hosts have a cluster token: the page proves it and tags every message, in the browser.
// Screenshots land in test-artifacts/dashboard/.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHost, type FerryHost } from '../../src/index.ts';
import { artifactDir, chromiumPath, launchChromium, noBrowserWhy } from '../support/browser.ts';
import { REPO_ROOT } from '../support/helpers.ts';
import { TOKEN } from '../support/host-helpers.ts';

const openssl = spawnSync('openssl', ['version']).status === 0;

if (!chromiumPath) console.warn(`!! ${noBrowserWhy}`);

const httpOf = (h: FerryHost) => `${h.url.replace(/^ws/, 'http')}/`;

/** The count the legend shows for a page code. */
async function legendCount(page: Page, code: number): Promise<number> {
  const text = await page.textContent(`#legend [data-code="${code}"]`);
  return Number(/(\d+)$/.exec(text ?? '')?.[1] ?? NaN);
}

/** The console's text, as the terminal shows it. */
function consoleText(page: Page): Promise<string> {
  return page.evaluate(() => (window as unknown as { ferryDashboard: { view: { console: { text(): string } } } }).ferryDashboard.view.console.text());
}

/** The highest `pass N` the console shows. */
async function lastPass(page: Page): Promise<number> {
  return Math.max(-1, ...[...(await consoleText(page)).matchAll(/pass (\d+)/g)].map((m) => Number(m[1])));
}

let browser: Browser;

beforeAll(async () => {
  if (chromiumPath) browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
});

describe.skipIf(!chromiumPath)('the dashboard in Chromium', () => {
  let a: FerryHost;
  let b: FerryHost;
  const shots = artifactDir('dashboard');

  beforeAll(async () => {
    [a, b] = await Promise.all([startHost({ name: 'web-a', token: TOKEN }), startHost({ name: 'web-b', token: TOKEN })]);
  });

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('asks for the token, refuses a wrong one, and connects with the right one', async () => {
    const page = await browser.newPage();
    try {
      await page.goto(httpOf(a));
      await page.waitForSelector('#login:not([hidden])');
      await page.fill('#login input[name=token]', 'not-the-cluster-token-at-all');
      await page.click('#login button[type=submit]');
      await page.waitForFunction(() => /wrong or missing cluster token/.test(document.getElementById('login-error')?.textContent ?? ''));
      await page.fill('#login input[name=token]', TOKEN);
      await page.click('#login button[type=submit]');
      await page.waitForSelector('#main:not([hidden])');
      expect(await page.textContent('#host-name')).toBe('web-a');
    } finally {
      await page.close();
    }
  });

  it('starts a guest, migrates it to B in post-copy from the dialog: the map shows pages missing on B, then none; the console goes on from B; the report downloads', async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 }, acceptDownloads: true });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    try {
      await page.goto(`${httpOf(a)}#token=${TOKEN}`);
      await page.waitForSelector('#main:not([hidden])');
      await page.fill('#create-form input[name=name]', 'g1');
      await page.selectOption('#create-form select[name=program]', 'memstress');
      await page.fill('#create-form input[name=memoryMiB]', '128');
      await page.fill('#create-form input[name=args]', 'ws_mib=48');
      await page.click('#create-form button[type=submit]');
      await page.waitForSelector('tr[data-vm=g1]');
      await page.waitForFunction(() => /pass \d+/.test(document.getElementById('console')?.textContent ?? ''));
      expect(await legendCount(page, 1)).toBeGreaterThan(48 * 256); // clean: the working set is written
      await page.screenshot({ path: join(shots, '1-running-on-a.png'), fullPage: true });

      await page.click('tr[data-vm=g1] button[data-action=migrate]');
      await page.fill('#m-to', b.url);
      await page.selectOption('#m-mode', 'postcopy');
      await page.fill('#migrate-form input[name=pushDelayMs]', '1500');
      await page.screenshot({ path: join(shots, '2-migrate-dialog.png') });
      await page.click('#m-start');

      // The view follows the guest to B, where its pages are missing until they come.
      await page.waitForFunction(() => /on web-b/.test(document.getElementById('vm-title')?.textContent ?? ''), undefined, { timeout: 20_000 });
      let missing = 0;
      for (let i = 0; i < 50 && missing === 0; i++) {
        missing = await legendCount(page, 5);
        if (missing === 0) await page.waitForTimeout(50);
      }
      expect(missing).toBeGreaterThan(1000);
      const passBefore = await lastPass(page);
      await page.screenshot({ path: join(shots, '3-postcopy-on-b.png'), fullPage: true });

      await page.waitForFunction(() => /completed/.test(document.getElementById('migration-summary')?.textContent ?? ''), undefined, { timeout: 30_000 });
      await page.waitForFunction(() => /missing \(post-copy\) 0$/.test(document.querySelector('#legend [data-code="5"]')?.textContent ?? ''), undefined, { timeout: 10_000 });
      expect(await legendCount(page, 6)).toBeGreaterThan(0); // where the guest faulted stays marked
      // Zoom: a click doubles the cells around it, and the caption says which pages are shown.
      await page.click('#page-map', { position: { x: 100, y: 50 } });
      await page.hover('#page-map', { position: { x: 120, y: 60 } });
      expect(await page.textContent('#page-map-caption')).toMatch(/^page \d+ \(0x8[0-9a-f]{7}\): .* · zoom 2x, pages \d+-\d+$/);
      // The console goes on: B's guest prints passes after those seen before it moved.
      await page.waitForFunction((n) => Math.max(-1, ...[...(document.getElementById('console')?.textContent ?? '').matchAll(/pass (\d+)/g)].map((m) => Number(m[1]))) > n + 1, passBefore, { timeout: 30_000 });
      const text = await consoleText(page);
      const passes = [...text.matchAll(/pass (\d+)/g)].map((m) => Number(m[1]));
      // In order, nothing shown twice across the move.
      expect(passes).toEqual([...passes].sort((x, y) => x - y));
      expect(new Set(passes).size).toBe(passes.length);
      await page.screenshot({ path: join(shots, '4-completed.png'), fullPage: true });

      const [download] = await Promise.all([page.waitForEvent('download'), page.click('.download-report')]);
      const report = JSON.parse(readFileSync((await download.path())!, 'utf8')) as { info: Record<string, unknown>; samples: { missing?: number }[]; histogram?: number[] };
      expect(report.info).toMatchObject({ vm: 'g1', mode: 'postcopy', status: 'completed', direction: 'outgoing' });
      expect(report.info['downtime-ms']).toEqual(expect.any(Number));
      expect(report.samples.some((s) => (s.missing ?? 0) > 0)).toBe(true);
      expect((report.histogram ?? []).reduce((x, y) => x + y, 0)).toBeGreaterThan(0);

      // The guest is B's now, and A has none.
      const [ca, cb] = await Promise.all([a.connect(), b.connect()]);
      try {
        expect((await cb.vmInfo('g1')).state).toBe('running');
        expect((await ca.listVms()).map((v) => v.name)).not.toContain('g1');
      } finally {
        await Promise.all([ca.close(), cb.close()]);
      }
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it("B's page moves it back by pre-copy: rounds charted, downtime against its limit, the report's rounds", async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    try {
      await page.goto(`${httpOf(b)}#token=${TOKEN}`);
      await page.waitForSelector('tr[data-vm=g1]');
      expect(await page.textContent('#peers')).toContain(a.url);
      await page.click('tr[data-vm=g1] button[data-action=view]');
      await page.click('tr[data-vm=g1] button[data-action=migrate]');
      await page.fill('#m-to', a.url);
      await page.selectOption('#m-mode', 'precopy');
      await page.fill('#migrate-form input[name=maxBandwidthMBs]', '200');
      await page.selectOption('#migrate-form select[name=xbzrle]', 'off');
      await page.click('#m-start');
      await page.waitForFunction(() => /completed/.test(document.getElementById('migration-summary')?.textContent ?? ''), undefined, { timeout: 30_000 });
      expect(await page.textContent('#migration-summary')).toMatch(/downtime [\d.]+ ms \(limit 300 ms\)/);
      expect(await page.isVisible('#charts .chart:first-child')).toBe(true);
      const rows = await page.$$eval('#report table.stats tr', (trs) => trs.map((tr) => tr.textContent ?? ''));
      expect(rows.some((r) => r.startsWith('dirty-sync-count'))).toBe(true);
      await page.screenshot({ path: join(shots, '5-precopy-back.png'), fullPage: true });
      const ca = await a.connect();
      try {
        expect((await ca.vmInfo('g1')).state).toBe('running');
        await ca.destroyVm('g1');
      } finally {
        await ca.close();
      }
    } finally {
      await page.close();
    }
  });
});

describe.skipIf(!chromiumPath || !openssl)('the dashboard in Chromium over https (mutual TLS, and the token)', () => {
  let dir = '';
  let h: FerryHost;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-web-tls-'));
    execFileSync(join(REPO_ROOT, 'scripts', 'make-certs.sh'), [dir, 'h=127.0.0.1', 'browser=127.0.0.1'], { stdio: 'ignore' });
    const tls = { cert: readFileSync(join(dir, 'h.pem')), key: readFileSync(join(dir, 'h-key.pem')), ca: readFileSync(join(dir, 'ca.pem')), allow: [] };
    h = await startHost({ name: 'web-tls', token: TOKEN, tls });
  });

  afterAll(async () => {
    await h?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('with a certificate the CA signed and the token: drives the host, and the console takes keystrokes (echo)', async () => {
    const origin = h.url.replace(/^wss/, 'https');
    // The test's browser does not know the cluster's CA: it skips the host check (ignoreHTTPSErrors); the host still checks the browser's.
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true, clientCertificates: [{ origin, certPath: join(dir, 'browser.pem'), keyPath: join(dir, 'browser-key.pem') }] });
    try {
      const page = await ctx.newPage();
      await page.goto(`${origin}/#token=${TOKEN}`);
      await page.waitForSelector('#main:not([hidden])');
      await page.fill('#create-form input[name=name]', 'e1');
      await page.selectOption('#create-form select[name=program]', 'echo');
      await page.fill('#create-form input[name=memoryMiB]', '4');
      await page.click('#create-form button[type=submit]');
      await page.waitForFunction(() => /echo: ready/.test(document.getElementById('console')?.textContent ?? ''));
      await page.click('#console .xterm');
      await page.keyboard.type('typed in the page');
      await page.waitForFunction(() => /typed in the page/.test(document.getElementById('console')?.textContent ?? ''), undefined, { timeout: 10_000 });
      await page.screenshot({ path: join(artifactDir('dashboard'), '6-https-echo.png') });
    } finally {
      await ctx.close();
    }
  });

  it('without a certificate the page loads but the host is not driven, and the page says what it wants', async () => {
    const origin = h.url.replace(/^wss/, 'https');
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
    try {
      const page = await ctx.newPage();
      await page.goto(`${origin}/#token=${TOKEN}`);
      await page.waitForFunction(() => /client certificate/.test(document.getElementById('status')?.textContent ?? ''));
      expect(await page.isHidden('#main')).toBe(true);
    } finally {
      await ctx.close();
    }
  });
});
