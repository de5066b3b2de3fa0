// The web dashboard's host side (issue 14): the page and its modules served at / with a strict
// Content-Security-Policy; which web pages may open /control (a page on any other site must not
// drive a host, the loopback one included); the page map; and the page's control client
// (dashboard/control.js), run here against real hosts with and without a token.
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { PAGE_CODES, startHost, type FerryHost } from '../../src/index.ts';
import { MiB, sleep } from '../support/helpers.ts';
import { TOKEN } from '../support/host-helpers.ts';

let open: FerryHost;
let a: FerryHost;
let b: FerryHost;

beforeAll(async () => {
  [open, a, b] = await Promise.all([startHost({ name: 'd-open' }), startHost({ name: 'd-a', token: TOKEN }), startHost({ name: 'd-b', token: TOKEN })]);
});

afterAll(async () => {
  await Promise.all([open?.stop(), a?.stop(), b?.stop()]);
});

const port = (h: FerryHost) => new URL(h.url).port;

/** A raw HTTP request with exactly these headers (fetch will not send a Host or Origin of our choosing). */
function rawGet(h: FerryHost, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: Number(port(h)), path, method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Opens /control as a browser would (an Origin header, and the Host it was sent to); resolves
 * with the HTTP status of a refusal, or 101 once the host's hello arrives.
 */
function browserUpgrade(h: FerryHost, origin: string, hostHeader = `127.0.0.1:${port(h)}`, path = '/control'): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port(h)}${path}`, { origin, headers: { host: hostHeader } });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.on('message', () => {
      ws.terminate();
      resolve({ status: 101, body: '' });
    });
    ws.on('error', () => undefined);
    // Neither an answer nor a refusal (the connection failed): say so, rather than wait for the test's timeout.
    ws.on('close', () => resolve({ status: 0, body: 'closed without an answer' }));
  });
}

describe('the dashboard page', () => {
  it('is served at / with a Content-Security-Policy that allows its import map by hash and nothing inline besides', async () => {
    const r = await rawGet(open, '/');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    const importMap = /<script type="importmap">([\s\S]*?)<\/script>/.exec(r.body)![1]!;
    const csp = String(r.headers['content-security-policy']);
    expect(csp).toContain(`script-src 'self' 'sha256-${createHash('sha256').update(importMap).digest('base64')}'`);
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-eval');
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    // No other inline script: each <script> is the import map or has a src.
    expect([...r.body.matchAll(/<script([^>]*)>/g)].every(([, attrs]) => /type="importmap"|src=/.test(attrs!))).toBe(true);
  });

  it('every module the page loads is served: its own, and each library the import map names, with every import they make', async () => {
    const page = (await rawGet(open, '/')).body;
    const map = JSON.parse(/<script type="importmap">([\s\S]*?)<\/script>/.exec(page)![1]!) as { imports: Record<string, string> };
    const seen = new Set<string>();
    const todo = ['/app/app.js', ...Object.values(map.imports)];
    const unresolved: string[] = [];
    while (todo.length > 0) {
      const path = todo.pop()!;
      if (seen.has(path)) continue;
      seen.add(path);
      const r = await rawGet(open, path);
      expect(r.status, path).toBe(200);
      expect(r.headers['content-type'], path).toBe('text/javascript; charset=utf-8');
      for (const [, spec] of r.body.matchAll(/(?:^|[;\n}])\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]/g)) {
        if (spec!.startsWith('.')) todo.push(new URL(spec!, `http://x${path}`).pathname);
        else if (map.imports[spec!] !== undefined) todo.push(map.imports[spec!]!);
        else unresolved.push(`${path}: ${spec}`);
      }
    }
    expect(unresolved).toEqual([]);
    expect(seen.size).toBeGreaterThan(15);
    for (const css of [...page.matchAll(/<link rel="stylesheet" href="([^"]+)"/g)].map((m) => m[1]!)) expect((await rawGet(open, css)).status, css).toBe(200);
  });

  it('serves nothing else: no path outside its directories, no other method, not the page without its headers', async () => {
    for (const path of ['/vendor/msgpackr/../package.json', '/vendor/msgpackr/%2e%2e%2fpackage.json', '/app/..%2f..%2fpackage.json', '/vendor/nosuch/index.js',
      '/vendor/msgpackr/package.json', '/app/index.html', '/app/', '/vendor/msgpackr/sub/dir.js', '/app/nosuch.js']) {
      expect((await rawGet(open, path)).status, path).toBe(404);
    }
    expect((await rawGet(open, '/', {}, 'POST')).status).toBe(405);
  });
});

describe('which web pages may open /control', () => {
  it('a page on another site is refused (it could drive a token-less loopback host), and the refusal says why', async () => {
    const r = await browserUpgrade(open, 'http://evil.example');
    expect(r.status).toBe(403);
    expect(r.body).toMatch(/neither this host's dashboard nor one of a host it has migrated with/);
    expect((await browserUpgrade(open, 'null')).status).toBe(403);
  });

  it("the host's own page is accepted; a name rebound to 127.0.0.1 is not taken for it on a host without a token", async () => {
    expect((await browserUpgrade(open, `http://127.0.0.1:${port(open)}`)).status).toBe(101);
    expect((await browserUpgrade(open, `http://localhost:${port(open)}`, `localhost:${port(open)}`)).status).toBe(101);
    const rebound = await browserUpgrade(open, `http://evil.example:${port(open)}`, `evil.example:${port(open)}`);
    expect(rebound.status).toBe(403);
    expect(rebound.body).toMatch(/not a loopback address/);
    // The same page over https is another origin.
    expect((await browserUpgrade(open, `https://127.0.0.1:${port(open)}`)).status).toBe(403);
  });

  it('GET /metrics of a host without a token is not answered to a name rebound to 127.0.0.1', async () => {
    const rebound = await rawGet(open, '/metrics', { host: `evil.example:${port(open)}` });
    expect(rebound.status).toBe(403);
    expect(rebound.body).toMatch(/not a loopback address/);
    expect((await rawGet(open, '/metrics', { host: `localhost:${port(open)}` })).status).toBe(200);
    expect((await rawGet(open, '/metrics', { host: `127.0.0.1:${port(open)}` })).status).toBe(200);
  });

  it('no page may open /migrate', async () => {
    expect((await browserUpgrade(open, `http://127.0.0.1:${port(open)}`, undefined, '/migrate')).status).toBe(403);
  });

  it("a host accepts the pages of the hosts it has migrated with (a console follows its VM there), and those hosts show as peers", async () => {
    const pageOfA = `http://127.0.0.1:${port(a)}`;
    expect((await browserUpgrade(b, pageOfA)).status).toBe(403);
    const ca = await a.connect();
    const cb = await b.connect();
    try {
      await ca.createVm({ name: 'peer-vm', program: 'counter', memory: 4 * MiB, start: true });
      const m = await ca.migrate('peer-vm', { to: b.url });
      expect((await m.done).status).toBe('completed');
      expect((await browserUpgrade(b, pageOfA)).status).toBe(101);
      const infoA = await ca.hostInfo();
      expect(infoA.peers).toEqual([expect.objectContaining({ url: b.url, to: 1, from: 0 })]);
      await cb.destroyVm('peer-vm');
    } finally {
      await Promise.all([ca.close(), cb.close()]);
    }
  });
});

describe('the page map (vm.pagemap)', () => {
  it('codes every page: a fresh VM is never-written but for what the guest wrote; the counts add up', async () => {
    const c = await open.connect();
    try {
      await c.createVm({ name: 'map1', program: 'memstress', memory: 16 * MiB, args: ['ws_mib=4', 'passes=1'], start: true });
      await c.waitHalted('map1');
      const m = await c.pageMap('map1');
      expect(m.pages).toBe(4096);
      expect(m.map.length).toBe(4096);
      expect(m.counts.reduce((x, y) => x + y, 0)).toBe(4096);
      // 4 MiB of working set (1024 pages) plus the program's own pages are written; nothing is dirty, missing or moving outside a migration.
      expect(m.counts[PAGE_CODES.clean]).toBeGreaterThan(1024);
      expect(m.counts[PAGE_CODES.clean]).toBeLessThan(1100);
      for (const code of [PAGE_CODES.dirty, PAGE_CODES.queued, PAGE_CODES.inFlight, PAGE_CODES.missing, PAGE_CODES.faulted, PAGE_CODES.waiting]) expect(m.counts[code]).toBe(0);
      await c.destroyVm('map1');
    } finally {
      await c.close();
    }
  });

  it('a VM no migration touches is read once while nothing changes it, and read again once the guest writes a new page', async () => {
    const c = await open.connect();
    try {
      await c.createVm({ name: 'map3', program: 'memstress', memory: 16 * MiB, args: ['ws_mib=4', 'passes=1'] });
      const before = await c.pageMap('map3');
      expect(await c.pageMap('map3')).toMatchObject({ counts: before.counts });
      await c.startVm('map3');
      await c.waitHalted('map3');
      const after = await c.pageMap('map3');
      expect(after.counts[PAGE_CODES.clean]).toBeGreaterThan(before.counts[PAGE_CODES.clean]! + 1000);
      expect(after.map).toEqual((await c.pageMap('map3')).map);
      await c.destroyVm('map3');
    } finally {
      await c.close();
    }
  });

  it('shows a migration: the source its dirty and queued pages; the destination in post-copy its missing and faulted ones', async () => {
    const ca = await a.connect();
    const cb = await b.connect();
    try {
      await ca.createVm({ name: 'map2', program: 'memstress', memory: 64 * MiB, args: ['ws_mib=32'], start: true });
      await sleep(300);
      // Hybrid at 40 MB/s: the first round of 32 MiB takes most of a second, so the source is caught mid-pass.
      const m = await ca.migrate('map2', { to: b.url, mode: 'hybrid', maxBandwidth: 40_000_000, postcopyAfterRounds: 2, pushDelayMs: 400, xbzrle: 'off', compress: 'off' });
      const source = new Set<number>();
      const destination = new Set<number>();
      let ended = false;
      void m.done.finally(() => { ended = true; });
      while (!ended) {
        const [s, d] = await Promise.all([ca.pageMap('map2').catch(() => undefined), cb.pageMap('map2').catch(() => undefined)]);
        if (s) for (const [code, n] of s.counts.entries()) if (n > 0) source.add(code);
        if (d) for (const [code, n] of d.counts.entries()) if (n > 0 && d.state !== 'incoming') destination.add(code);
        await sleep(20);
      }
      const final = await m.done;
      expect(final.status).toBe('completed');
      // (In flight: frames handed to a loopback socket are written at once; test/vm/page-map.test.ts holds them back.)
      expect([...source]).toEqual(expect.arrayContaining([PAGE_CODES.dirty, PAGE_CODES.queued]));
      expect([...destination]).toEqual(expect.arrayContaining([PAGE_CODES.missing, PAGE_CODES.faulted]));
      // Once it is over every page is here, and where the guest faulted stays marked.
      let after = await cb.pageMap('map2');
      for (let i = 0; i < 100 && after.counts[PAGE_CODES.missing] !== 0; i++) after = await sleep(50).then(() => cb.pageMap('map2'));
      expect(after.counts[PAGE_CODES.missing]).toBe(0);
      expect(after.counts[PAGE_CODES.faulted]).toBeGreaterThan(0);
      expect(after.traps).toBeGreaterThan(0);
      expect(after.blockedHistogram.reduce((x, y) => x + y, 0)).toBeGreaterThan(0);
      await cb.destroyVm('map2');
    } finally {
      await Promise.all([ca.close(), cb.close()]);
    }
  });
});

describe("the page's control client (dashboard/control.js)", () => {
  // The browser module, run here: ws stands in for the browser's WebSocket.
  const load = async () => {
    (globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;
    return import('../../dashboard/control.js');
  };

  it('speaks the protocol version the host speaks', async () => {
    const { CONTROL_PROTOCOL_VERSION } = await load();
    const { CONTROL_PROTOCOL_VERSION: hostVersion } = await import('../../src/wire/control-protocol.ts');
    expect(CONTROL_PROTOCOL_VERSION).toBe(hostVersion);
  });

  it('with the token: proves it, checks the host proves it, and its tagged requests and the host\'s tagged answers and events pass', async () => {
    const { HostConnection } = await load();
    const conn = await HostConnection.open(a.url, { token: TOKEN });
    try {
      expect(conn.host).toBe('d-a');
      expect(conn.tags).toBeDefined();
      const events: string[] = [];
      conn.addEventListener('event', (e) => events.push((e as CustomEvent<{ event: string }>).detail.event));
      await conn.request('vm.create', { name: 'cc1', program: 'counter', memory: 4 * MiB, start: true });
      const list = await conn.request<{ name: string }[]>('vm.list');
      expect(list.map((v) => v.name)).toContain('cc1');
      const map = await conn.request<{ map: Uint8Array }>('vm.pagemap', { name: 'cc1' });
      expect(map.map).toBeInstanceOf(Uint8Array);
      await conn.request('vm.destroy', { name: 'cc1' });
      expect(events).toContain('vm.state');
    } finally {
      conn.close();
    }
  });

  it('is refused with a wrong or missing token, and refuses a host that asks for none when it holds one', async () => {
    const { HostConnection } = await load();
    await expect(HostConnection.open(a.url, { token: 'another-token-0123456789' })).rejects.toMatchObject({ code: 'EAUTH' });
    await expect(HostConnection.open(a.url)).rejects.toMatchObject({ code: 'ENEEDTOKEN' });
    await expect(HostConnection.open(open.url, { token: TOKEN })).rejects.toMatchObject({ code: 'EAUTH' });
    const plain = await HostConnection.open(open.url);
    expect(plain.tags).toBeUndefined();
    plain.close();
  });
});
