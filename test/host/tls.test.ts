// Two hosts over TLS with mutual authentication (issue 11, first part): certificates made by the
// documented script (scripts/make-certs.sh, the system's openssl), wss:// for control and
// migration, each host proving itself with a certificate its peer's CA signed, an allow list on
// the destination, and a tap on the wire that finds guest memory in clear text over ws:// and
// none over wss://.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request as httpsRequest } from 'node:https';
import WebSocket, { WebSocketServer } from 'ws';
import type { FerryError } from '../../src/errors.ts';
import { Host } from '../../src/host/host.ts';
import { DEFAULT_LIMITS, type HostLimits } from '../../src/host/limits.ts';
import type { MigrationInfo } from '../../src/migration/stats.ts';
import { ControlClient } from '../../src/wire/control-client.ts';
import type { HostTls, TlsTrust } from '../../src/wire/tls.ts';
import pino from 'pino';
import { eventually, MiB, REPO_ROOT } from '../support/helpers.ts';
import { startLinkProxy, type LinkProxy } from '../support/link-proxy.ts';
import { createParams, finalDigest, migrate, oracleDigest, silentLogger, waitInstret, type GuestSpec } from '../support/migration-helpers.ts';

const openssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (!openssl) console.warn('tls.test.ts: SKIPPED, openssl is not installed (scripts/make-certs.sh needs it)');

const GUEST: GuestSpec = { program: 'memstress', memory: 16 * MiB, args: ['ws_mib=2'], insnLimit: 200_000_000 };
let dir = '';
let other = '';
const hosts: Host[] = [];
const clients: ControlClient[] = [];
const proxies: LinkProxy[] = [];

function files(d: string, name: string): { cert: Buffer; key: Buffer; ca: Buffer } {
  return { cert: readFileSync(join(d, `${name}.pem`)), key: readFileSync(join(d, `${name}-key.pem`)), ca: readFileSync(join(d, 'ca.pem')) };
}

async function host(name: string, tls?: HostTls, limits?: HostLimits): Promise<{ host: Host; url: string }> {
  const h = new Host({ host: '127.0.0.1', port: 0, name, maxMemory: 256 * MiB, log: silentLogger(), ...(tls ? { tls } : {}), ...(limits ? { limits } : {}) });
  hosts.push(h);
  return { host: h, url: await h.start() };
}

async function client(url: string, tls?: TlsTrust): Promise<ControlClient> {
  const c = await ControlClient.connect(url, { client: 'tls-test', ...(tls ? { tls } : {}) });
  clients.push(c);
  return c;
}

/** Where `needle` (a run of guest memory) occurs in `hay`, or -1. */
function find(hay: Buffer, needle: Buffer): number {
  return hay.indexOf(needle);
}

beforeAll(() => {
  if (!openssl) return;
  dir = mkdtempSync(join(tmpdir(), 'ferry-tls-'));
  other = mkdtempSync(join(tmpdir(), 'ferry-tls-other-'));
  const script = join(REPO_ROOT, 'scripts', 'make-certs.sh');
  execFileSync(script, [dir, 'a=127.0.0.1', 'b=127.0.0.1', 'c=127.0.0.1'], { stdio: 'ignore' });
  execFileSync(script, [other, 'mallory=127.0.0.1'], { stdio: 'ignore' });
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  await Promise.all(proxies.splice(0).map((p) => p.close()));
  await Promise.all(hosts.splice(0).map((h) => h.stop().catch(() => undefined)));
});

afterAll(() => {
  for (const d of [dir, other]) if (d) rmSync(d, { recursive: true, force: true });
});

/** A running guest on `a`, migrated to `b` through a tap; returns what the tap saw and a page of guest RAM. */
async function migrateThroughTap(a: { host: Host; url: string }, b: { url: string }, ca: ControlClient, cb: ControlClient, name: string) {
  const oracle = oracleDigest(GUEST);
  await ca.request('vm.create', createParams(name, GUEST));
  await waitInstret(ca, name, 20_000_000);
  // The guest's first page (its code): 256 bytes of it must not cross the wire readable.
  const ram = a.host.registry.get(name).vm.memory.ram;
  const needle = Buffer.from(ram.subarray(0, 256));
  expect(needle.some((x) => x !== 0)).toBe(true);
  const tap = await startLinkProxy(b.url, { capture: true });
  proxies.push(tap);
  const s: MigrationInfo = await migrate(ca, name, { to: tap.url }, 60_000);
  expect(s.status, s['error-desc']).toBe('completed');
  expect(await finalDigest(cb, name)).toBe(await oracle);
  return { wire: tap.captured(), needle };
}

describe.skipIf(!openssl)('TLS between hosts', () => {
  it('plain ws://: a tap on the wire reads guest memory (what TLS is for)', async () => {
    const a = await host('a');
    const b = await host('b');
    const { wire, needle } = await migrateThroughTap(a, b, await client(a.url), await client(b.url), 'plain');
    expect(wire.length).toBeGreaterThan(2 * MiB);
    expect(find(wire, needle)).toBeGreaterThanOrEqual(0);
  }, 90_000);

  it('wss:// with mutual TLS: the migration reaches the unmigrated digest, and the tap reads no guest memory', async () => {
    const a = await host('a', { ...files(dir, 'a'), allow: [] });
    const b = await host('b', { ...files(dir, 'b'), allow: ['a'] });
    expect(a.url).toMatch(/^wss:\/\//);
    const trust = files(dir, 'c'); // an operator's certificate from the same CA
    const { wire, needle } = await migrateThroughTap(a, b, await client(a.url, trust), await client(b.url, trust), 'secret');
    expect(wire.length).toBeGreaterThan(2 * MiB);
    expect(find(wire, needle)).toBe(-1);
  }, 90_000);

  it('GET /metrics over https: a client certificate the host\'s CA signed is served; one another CA signed, or none, gets a 401 saying why', async () => {
    const { url } = await host('a', { ...files(dir, 'a'), allow: [] });
    const get = (o: { cert?: Buffer; key?: Buffer }) => new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpsRequest(`${url.replace(/^wss/, 'https')}/metrics`, { ca: files(dir, 'a').ca, ...o }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => { body += d; });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    const ok = await get({ cert: files(dir, 'b').cert, key: files(dir, 'b').key });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatch(/^ferry_host_info\{host="a",/m);
    for (const o of [{}, { cert: files(other, 'mallory').cert, key: files(other, 'mallory').key }]) {
      const r = await get(o);
      expect(r.status).toBe(401);
      expect(r.body).toBe('this host wants a client certificate its CA signed\n');
    }
  });

  it('a host whose certificate another CA signed, or one not on the allow list, is refused and says why', async () => {
    const b = await host('b', { ...files(dir, 'b'), allow: ['a'] });
    for (const [who, certs] of [['mallory', files(other, 'mallory')], ['c', files(dir, 'c')]] as const) {
      // mallory trusts b's CA (so it reaches it) but its own certificate comes from elsewhere; c is not allowed.
      const src = await host(who, { ...certs, ca: files(dir, 'b').ca, allow: [] });
      // The operator trusts the source's own CA and presents a certificate the source accepts.
      const operator = files(dir, 'c');
      const cs = await client(src.url, { ca: certs.ca, cert: operator.cert, key: operator.key });
      await cs.request('vm.create', createParams('vm', { ...GUEST, insnLimit: 0 }));
      const s = await migrate(cs, 'vm', { to: b.url }, 30_000);
      expect(s.status).toBe('failed');
      expect(String(s['error-desc'])).toMatch(who === 'mallory' ? /not trusted/ : /not on the allow list/);
      expect((await cs.request<{ state: string }>('vm.info', { name: 'vm' })).state).toBe('running');
    }
  }, 60_000);

  it('an authenticated TLS connection outlives the pre-authentication deadline (it is released from admission like a plain one)', async () => {
    const b = await host('b', { ...files(dir, 'b'), allow: [] }, { ...DEFAULT_LIMITS, helloTimeoutMs: 300 });
    const c = await client(b.url, files(dir, 'c'));
    await new Promise((r) => setTimeout(r, 900));
    expect(await c.request<{ name: string }>('host.info')).toMatchObject({ name: 'b' });
  }, 30_000);

  it('a token proof is bound to its TLS session: an endpoint in the middle that relays a real host\'s hello opens nothing there', async () => {
    const TOKEN = 'the-cluster-token-of-this-test';
    const h = new Host({ host: '127.0.0.1', port: 0, name: 'h', maxMemory: 64 * MiB, log: silentLogger(), token: TOKEN, tls: { ...files(dir, 'b'), allow: [] } });
    hosts.push(h);
    const hUrl = await h.start();
    // The endpoint in the middle: a certificate the client trusts (same CA), and every message relayed to and from h.
    const mine = files(dir, 'c');
    const server = createHttpsServer({ cert: mine.cert, key: mine.key });
    const wss = new WebSocketServer({ server });
    const relayed: string[] = [];
    wss.on('connection', (down: WebSocket) => {
      const up = new WebSocket(`${hUrl}/control`, { ca: mine.ca, cert: mine.cert, key: mine.key });
      const early: Buffer[] = [];
      down.on('message', (d: Buffer) => { relayed.push('up'); if (up.readyState === WebSocket.OPEN) up.send(d); else early.push(d); });
      up.on('open', () => { for (const d of early.splice(0)) up.send(d); });
      up.on('message', (d: Buffer) => { relayed.push('down'); down.send(d); });
      up.on('close', (code, reason) => down.close(code === 1005 || code === 1006 ? 1000 : code, reason));
      down.on('close', () => up.close());
      up.on('error', () => down.terminate());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const e = await ControlClient.connect(`wss://127.0.0.1:${port}`, { token: TOKEN, tls: { ca: mine.ca } }).then((c) => {
        void c.close();
        return undefined;
      }, (err: FerryError) => err);
      expect(e, 'the relayed session must not be accepted').toBeDefined();
      expect(e!.code).toBe('EAUTH');
      expect(relayed).toContain('up'); // the client's proof did reach the real host, and was refused there
    } finally {
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }, 30_000);

  it('a browser (the dashboard\'s client, which cannot bind its proof to the TLS session) is let in with the token only when it presents a certificate the CA signed', async () => {
    const TOKEN = 'the-cluster-token-of-this-test';
    const h = new Host({ host: '127.0.0.1', port: 0, name: 'h', maxMemory: 64 * MiB, log: silentLogger(), token: TOKEN, tls: { ...files(dir, 'b'), allow: [] } });
    hosts.push(h);
    const url = await h.start();
    const { HostConnection } = await import('../../dashboard/control.js');
    const g = globalThis as { WebSocket?: unknown };
    const saved = g.WebSocket;
    // The browser's WebSocket, with what a browser would bring to this TLS handshake.
    const browserWith = (tls: { ca: Buffer; cert?: Buffer; key?: Buffer }) => class extends WebSocket {
      constructor(u: string) {
        super(u, tls);
      }
    };
    try {
      const mine = files(dir, 'a');
      g.WebSocket = browserWith({ ca: mine.ca, cert: mine.cert, key: mine.key });
      const conn = await HostConnection.open(url, { token: TOKEN });
      expect(conn.host).toBe('h');
      expect(conn.tags).toBeUndefined(); // TLS authenticates every record
      expect(await conn.request<{ name: string }>('host.info')).toMatchObject({ name: 'h' });
      conn.close();
      // Without a certificate the unbound proof is refused, saying why: the binding is what keeps a relayed proof out.
      const wantsCertificate = { code: 'ECERT', message: expect.stringContaining('needs a client certificate from this host\'s CA') };
      g.WebSocket = browserWith({ ca: mine.ca });
      await expect(HostConnection.open(url, { token: TOKEN })).rejects.toMatchObject(wantsCertificate);
      // With a certificate another CA signed, likewise.
      const stranger = files(other, 'mallory');
      g.WebSocket = browserWith({ ca: mine.ca, cert: stranger.cert, key: stranger.key });
      await expect(HostConnection.open(url, { token: TOKEN })).rejects.toMatchObject(wantsCertificate);
      // And a wrong token is still a wrong token.
      g.WebSocket = browserWith({ ca: mine.ca, cert: mine.cert, key: mine.key });
      await expect(HostConnection.open(url, { token: 'not-the-token-of-this-cluster' })).rejects.toMatchObject({ code: 'EAUTH', message: expect.stringContaining('wrong or missing cluster token') });
    } finally {
      g.WebSocket = saved;
    }
  }, 30_000);

  it('a client that does not trust the host\'s CA, or that has no certificate for a host without a token, gets a clear error; the host logs both', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => { lines.push(l); } });
    const h = new Host({ host: '127.0.0.1', port: 0, name: 'b', maxMemory: 64 * MiB, log, tls: { ...files(dir, 'b'), allow: [] } });
    hosts.push(h);
    const b = { url: await h.start() };
    await expect(ControlClient.connect(b.url)).rejects.toMatchObject({ code: 'ETLS', message: expect.stringContaining('--tls-ca') });
    await expect(ControlClient.connect(b.url, { tls: { ca: files(dir, 'b').ca } })).rejects.toMatchObject({
      code: 'EAUTH', message: expect.stringContaining('needs a client certificate signed by this host\'s CA: no client certificate'),
    });
    await eventually(async () => lines.some((l) => l.includes('TLS handshake failed')) || undefined, 'the failed handshake logged', 5_000);
    expect(lines.some((l) => l.includes('TLS peer refused') && l.includes('no client certificate'))).toBe(true);
  }, 30_000);
});
