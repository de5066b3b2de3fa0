// Hostile and broken peers against a real `ferry host start` process: whatever a peer sends
// before or after authentication, on /control or /migrate (bulk or priority channel), only that
// connection and the migration it carries fail; the process, its other clients and VMs go on.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { eventually, MiB, sleep, waitFor } from '../support/helpers.ts';
import {
  clientTracker, closeAllRaw, killAllSpawned, packr, pidAlive, rawReady, startHost, TOKEN, waitState, type StartedHost,
} from '../support/host-helpers.ts';
import {
  idleSockets, migrationId, openScripted, pageFrame, plausibleState, SCRIPT_PAGES, scriptedPostcopy, setupMsg,
  sourceLink,
} from '../support/hostile-source.ts';
import { migrate, startFakeDestination, type FakeDestination } from '../support/migration-helpers.ts';
import { compressPageFrame } from '../../src/memory/page-compression.ts';
import { DELTA_PAGE } from '../../src/memory/page-frame.ts';
import { MIGRATION_PROTOCOL_VERSION } from '../../src/migration/protocol.ts';
import { CONTROL_PROTOCOL_VERSION } from '../../src/wire/control-protocol.ts';

const T = 30_000;
type Info = Record<string, unknown>;

const clients = clientTracker();
/** A host with a token, with short pre-authentication and idle-source deadlines. */
let th: StartedHost;
/** A host without a token (every peer on loopback is authenticated by its hello). */
let open: StartedHost;
const LIMIT_ENV = { FERRY_HELLO_TIMEOUT_MS: '1500', FERRY_MIGRATION_IDLE_MS: '2000' };

beforeAll(async () => {
  [th, open] = await Promise.all([
    startHost({ name: 'h-tok', token: TOKEN, env: LIMIT_ENV }),
    startHost({ name: 'h-open', env: LIMIT_ENV }),
  ]);
  // A VM on each host that every test checks is still running at its end.
  for (const [h, token] of [[th, TOKEN], [open, undefined]] as const) {
    const c = await clients.connect(h.url, token ? { token } : {});
    await c.request('vm.create', { name: 'bystander', program: 'counter', start: true, args: ['period_ms=50'] });
  }
}, T);

afterEach(async () => {
  await closeAllRaw();
  // Both hosts survived the test, and their bystander VM still runs.
  for (const [h, token] of [[th, TOKEN], [open, undefined]] as const) {
    expect(h.isRunning(), `${h.name} died:\n${h.stderrText().slice(-3000)}`).toBe(true);
    const c = await clients.connect(h.url, token ? { token } : {});
    const before = (await c.request<Info>('vm.info', { name: 'bystander' })).instret as number;
    await eventually(async () => ((await c.request<Info>('vm.info', { name: 'bystander' })).instret as number) > before, 'the bystander VM to run on', 5_000);
    for (const v of await c.request<Info[]>('vm.list')) {
      if (v.name !== 'bystander') await c.request('vm.destroy', { name: v.name }).catch(() => undefined);
    }
  }
  await clients.closeAll();
}, T);

afterAll(async () => {
  for (const h of [th, open]) {
    if (!h) continue;
    expect(await h.stop('SIGTERM')).toBe(0);
    expect(pidAlive(h.pid)).toBe(false);
  }
  expect((await killAllSpawned()).survivors).toEqual([]);
}, T);

/** A hello whose fields carry `text` where the host may echo it. */
function echoingHellos(text: string): Info[] {
  return [
    { t: text, v: CONTROL_PROTOCOL_VERSION, nonce: new Uint8Array(32) },
    { t: 'hello', v: text, nonce: new Uint8Array(32) },
    { t: 'hello', v: CONTROL_PROTOCOL_VERSION, nonce: new Uint8Array(32), client: text, role: text, id: text },
  ];
}

describe('before authentication', () => {
  it('a hello that makes the host echo 200+ bytes of peer text closes only that connection, with a bounded reason', async () => {
    for (const path of ['/control', '/migrate']) {
      for (const text of ['x'.repeat(300), 'é'.repeat(150), '\u0000\u001b[31m'.repeat(60)]) {
        for (const hello of echoingHellos(text)) {
          const link = await openScripted(th.url, path);
          expect((await link.next()).t).toBe('hello');
          link.send(hello);
          const { code, reason } = await link.closed;
          expect([1002, 4001, 4002, 1008]).toContain(code);
          expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(123);
          expect(reason).not.toMatch(/[\u0000-\u001f]/);
        }
      }
    }
  }, T);

  it('a frame over the pre-authentication limit is refused with 1009 before it is buffered', async () => {
    for (const path of ['/control', '/migrate']) {
      const link = await openScripted(th.url, path);
      await link.next();
      link.sendRaw(Buffer.alloc(64 * 1024, 0x41));
      expect((await link.closed).code).toBe(1009);
    }
  }, T);

  it('silent connections: those beyond the per-address limit go at once, the rest at the hello deadline; others still get in', async () => {
    // 80 WebSocket upgrades that never say hello, and 40 TCP connections that send nothing or half a request.
    const upgrades = await Promise.allSettled(Array.from({ length: 80 }, () => openScripted(th.url, '/control', { localAddress: '127.0.0.2' })));
    const tcp = [
      ...await idleSockets(th.port, 20, '127.0.0.3'),
      ...await idleSockets(th.port, 20, '127.0.0.3', 'GET /control HTTP/1.1\r\nHost: x\r\n'),
    ];
    const closedTcp = () => tcp.filter((s) => s.destroyed || s.readableEnded).length;
    const opened = upgrades.filter((u) => u.status === 'fulfilled').map((u) => (u as PromiseFulfilledResult<Awaited<ReturnType<typeof openScripted>>>).value);
    // The per-address limit (32) refused the rest of 127.0.0.2's upgrades at once.
    expect(opened.length).toBeLessThanOrEqual(32);
    // A client from another address gets in while they wait.
    const c = await clients.connect(th.url, { token: TOKEN });
    expect(await c.request<Info>('host.info')).toMatchObject({ name: 'h-tok' });
    // Every silent connection is gone shortly after the 1.5 s hello deadline.
    await waitFor(() => opened.every((l) => l.ws.readyState === l.ws.CLOSED) && closedTcp() === tcp.length, 'silent connections to be closed', 8_000);
    for (const s of tcp) s.destroy();
    // Dozens were refused and dozens timed out: logged with their address, at most 5 lines of each kind (per 10 s).
    const lines = th.stderrText().split('\n').filter((l) => /"msg":"connection (refused|closed)"/.test(l));
    for (const what of ['refused', 'closed']) {
      const of = lines.filter((l) => l.includes(`"msg":"connection ${what}"`));
      expect(of.length, what).toBeGreaterThan(0);
      expect(of.length, what).toBeLessThanOrEqual(5);
      expect(of.every((l) => /"peer":"127\.0\.0\.[23]"/.test(l)), what).toBe(true);
    }
  }, T);

  it('a token host refuses a request before the hello, and a wrong mac, without running it', async () => {
    const link = await openScripted(th.url, '/migrate');
    await link.next();
    link.send({ t: 'hello', v: MIGRATION_PROTOCOL_VERSION, role: 'bulk', id: migrationId(), nonce: new Uint8Array(32), mac: new Uint8Array(32) });
    expect((await link.closed).code).toBe(4001);
  }, T);
});

describe('msgpack that would allocate or stall is refused before decoding', () => {
  /** Encodes `{t:'req', id, method:'host.info', params:{x: <value bytes>}}` around raw msgpack. */
  function requestWith(id: number, valueBytes: Buffer): Buffer {
    const head = packr.pack({ t: 'req', id, method: 'host.info', params: { x: 0 } });
    // The packed map ends with "x" then 0 (one byte, 0x00): swap that byte for the raw value.
    return Buffer.concat([head.subarray(0, head.length - 1), valueBytes]);
  }
  const bigIntExt = (n: number) => Buffer.concat([Buffer.from([0xc9, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff, 0x42]), Buffer.alloc(n, 0x7f)]);
  const nested = (depth: number) => Buffer.concat([Buffer.alloc(depth, 0x91), Buffer.from([0x00])]);
  const cases: [string, Buffer][] = [
    ['a 1 MiB BigInt extension', bigIntExt(1024 * 1024)],
    ['an Error extension', Buffer.from([0xd4, 0x65, 0x00])],
    ['a typed array of an unlisted type (Float64)', Buffer.from([0xd6, 0x74, 0x08, 0, 0, 0])],
    ['10,000 nested arrays', nested(10_000)],
    ['an array announcing 2^32-1 items', Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff])],
    ['a string announcing 4 GiB', Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xff, 0x41])],
    ['a map with a non-string key', Buffer.from([0x81, 0x01, 0x02])],
  ];
  it.each(cases)('%s: an EPROTO reply, and the connection goes on', async (_name, value) => {
    const raw = await rawReady(open.url);
    raw.ws.send(requestWith(5, value));
    const r = await raw.next();
    expect(r.t === 'error' || (r.t === 'res' && r.ok === false), JSON.stringify(r)).toBe(true);
    expect((r.error as Info).code).toBe('EPROTO');
    expect(await raw.request('host.info')).toMatchObject({ ok: true });
  }, T);

  it('trailing bytes after a message are refused', async () => {
    const raw = await rawReady(open.url);
    raw.ws.send(Buffer.concat([packr.pack({ t: 'req', id: 9, method: 'host.info', params: {} }), Buffer.from([0x00])]));
    expect(await raw.next()).toMatchObject({ error: { code: 'EPROTO' } });
  }, T);

  it('control requests are checked against their schema: ranges, sizes and unknown fields', async () => {
    const raw = await rawReady(open.url);
    const refused = async (method: string, params: unknown) => {
      const r = await raw.request(method, params);
      expect(r.ok, `${method} ${JSON.stringify(params)}`).toBe(false);
      expect(['EINVAL', 'EPROTO']).toContain((r.error as Info).code);
    };
    await refused('vm.info', { name: 'a'.repeat(10_000) });
    // Nothing a reply may quote back carries terminal escapes.
    await refused('vm.info', { name: '\u001b[31mred' });
    await refused('vm.create', { name: 'n1', program: 'x\u001b[2J' });
    await refused('migrate.start', { name: 'bystander', to: 'ws://x\u0007' });
    await refused('vm.create', { name: 'n1', program: 'counter', memory: 2 ** 60 });
    await refused('vm.create', { name: 'n1', program: 'counter', memory: 1.5 });
    await refused('vm.create', { name: 'n1', program: 'counter', insnLimit: Number.NaN });
    await refused('vm.create', { name: 'n1', program: 'counter', args: Array.from({ length: 1000 }, () => 'a=b') });
    await refused('vm.create', { name: 'n1', program: 'counter', surprise: true });
    await refused('migrate.start', { name: 'bystander', to: 'ws://127.0.0.1:1', downtimeLimitMs: -5 });
    await refused('migrate.start', { name: 'bystander', to: 'x'.repeat(5000) });
    await refused('console.input', { name: 'bystander', data: 'not bytes' });
    // Beyond the decoder's item limit a request is refused before it is decoded: no id to answer to.
    raw.send({ t: 'req', id: 3, method: 'vm.create', params: { name: 'n1', program: 'counter', args: Array.from({ length: 10_000 }, () => 'a=b') } });
    expect(await raw.next()).toMatchObject({ t: 'error', error: { code: 'EPROTO' } });
    expect(await raw.request('host.info')).toMatchObject({ ok: true });
  }, T);
});

describe('a hostile source on /migrate', () => {
  it('messages out of order fail that migration with EPROTO, and nothing is left behind', async () => {
    const sequences: [string, Info[]][] = [
      ['state before setup', [{ t: 'state', state: plausibleState(), run: 'paused', console: new Uint8Array(0) }]],
      ['round-end before setup', [{ t: 'round-end', round: 0 }]],
      ['a second setup', [setupMsg('ooo-1'), setupMsg('ooo-1')]],
      ['postcopy-done in pre-copy', [setupMsg('ooo-2'), { t: 'postcopy-done', pages: 1 }]],
      ['an advice in a pre-copy migration', [setupMsg('ooo-3'), { t: 'postcopy-advise', advice: { missing: new Uint8Array(SCRIPT_PAGES / 8), missingCount: 0 } }]],
      ['a message only a destination sends', [setupMsg('ooo-4'), { t: 'page-req', page: 1 }]],
      ['a state with post-copy fields without an advice', [setupMsg('ooo-5', 'postcopy'), { t: 'state', state: plausibleState(), run: 'paused', console: new Uint8Array(0), postcopy: { late: new Uint32Array(0), missingCount: 0 } }]],
    ];
    const c = await clients.connect(open.url);
    for (const [what, msgs] of sequences) {
      const bulk = await sourceLink(open.url, { role: 'bulk', id: migrationId() });
      let failed: Info | undefined;
      for (const m of msgs) {
        bulk.send(m);
        const r = await bulk.next().catch(() => undefined);
        if (r?.t === 'failed' || r?.t === 'refused') {
          failed = r;
          break;
        }
      }
      expect(failed, what).toMatchObject({ code: 'EPROTO' });
      await bulk.closed;
      await eventually(async () => (await c.request<Info[]>('vm.list')).every((v) => v.name === 'bystander'), `no VM left after "${what}"`, 5_000);
    }
  }, T);

  /** A page frame of one delta page. */
  function deltaFrame(page: number, delta: Buffer): Buffer {
    const f = Buffer.alloc(8 + 4 + 2 + delta.length);
    f[0] = 0x50;
    f.writeUInt32LE(1, 4);
    f.writeUInt32LE((page | DELTA_PAGE) >>> 0, 8);
    f.writeUInt16LE(delta.length, 12);
    delta.copy(f, 14);
    return f;
  }
  /** `inner` compressed as a source would, its stated length optionally a lie. */
  function lz4Frame(inner: Buffer, statedExtra = 0): Buffer {
    const z = Buffer.from(compressPageFrame(inner)!);
    z.writeUInt32LE(z.readUInt32LE(4) + statedExtra, 4);
    return z;
  }

  it('page frames are checked before any byte is copied: beyond RAM, short, trailing bytes, a count that lies, bad deltas and LZ4', async () => {
    const frames: [string, Buffer][] = [
      ['a page beyond RAM', pageFrame([SCRIPT_PAGES])],
      ['a page at 2^31-1', pageFrame([0x7fff_ffff])],
      ['a frame shorter than its data', pageFrame([1, 2], 1)],
      ['trailing bytes', Buffer.concat([pageFrame([1]), Buffer.alloc(10)])],
      ['a count larger than the list', pageFrame([1], 1, 0xab, 1_000_000)],
      ['a header only', pageFrame([]).subarray(0, 6)],
      // Pre-copy's encoded frames (src/memory/xbzrle.ts, page-compression.ts):
      ['a delta that runs past its page', deltaFrame(1, Buffer.from([0x80, 0x08, 1, 1, 2, 3, 4]))],
      ['a delta longer than its frame', deltaFrame(1, Buffer.from([0, 1, 1, 2, 3, 4])).subarray(0, 14)],
      ['an LZ4 frame stating 2 GiB', Buffer.concat([Buffer.from([0x51, 0, 0, 0, 0, 0, 0, 0x80]), Buffer.alloc(64)])],
      ['an LZ4 frame that inflates short of what it states', lz4Frame(pageFrame([1]), 4096)],
      ['an LZ4 frame of garbage', Buffer.concat([Buffer.from([0x51, 0, 0, 0, 0, 16, 0, 0]), Buffer.alloc(64, 0xff)])],
      ['an LZ4 frame holding a bad page frame', lz4Frame(pageFrame([SCRIPT_PAGES]))],
    ];
    const c = await clients.connect(open.url);
    for (const [what, frame] of frames) {
      const bulk = await sourceLink(open.url, { role: 'bulk', id: migrationId() });
      bulk.send(setupMsg('frames'));
      expect((await bulk.next()).t).toBe('setup-ok');
      bulk.sendRaw(frame);
      expect(await bulk.next(), what).toMatchObject({ t: 'failed', code: 'EPROTO' });
      await bulk.closed;
      await eventually(async () => (await c.request<Info[]>('vm.list')).every((v) => v.name === 'bystander'), `no VM left after "${what}"`, 5_000);
    }
  }, T);

  it('a garbage CPU or device state is refused before anything is acknowledged: no VM runs, the source is told why', async () => {
    const garbage: [string, (s: Info) => void][] = [
      ['devices missing', (s) => { delete s.devices; }],
      ['a UART that is a string', (s) => { (s.devices as Info).uart = 'x'; }],
      ['a UART register of 300', (s) => { ((s.devices as Info).uart as Info).lcr = 300; }],
      ['a UART rx of 1,000,000 bytes', (s) => { ((s.devices as Info).uart as Info).rx = new Array(1_000_000).fill(1); }],
      ['a clock of another mode', (s) => { ((s.devices as Info).clock as Info).mode = 'realtime'; }],
      ['an mtime of NaN', (s) => { ((s.devices as Info).clock as Info).mtime = Number.NaN; }],
      ['a CPU of 47 words', (s) => { (s.cpu as number[]).pop(); }],
      ['a CPU word that is a string', (s) => { (s.cpu as unknown[])[5] = 'x'; }],
      ['a CPU word beyond 32 bits', (s) => { (s.cpu as number[])[5] = 2 ** 40; }],
      ['a misaligned pc', (s) => { (s.cpu as number[])[33] = 0x8000_0002 | 0; }],
      ['privilege level 2', (s) => { (s.cpu as number[])[34] = 2; }],
      ['another RAM size', (s) => { (s.config as Info).ramSize = 2 * 1024 * 1024; }],
      ['a state version from the future', (s) => { s.version = 99; }],
    ];
    const c = await clients.connect(open.url);
    for (const [what, spoil] of garbage) {
      const bulk = await sourceLink(open.url, { role: 'bulk', id: migrationId() });
      bulk.send(setupMsg('garbage'));
      expect((await bulk.next()).t).toBe('setup-ok');
      const state = plausibleState();
      spoil(state);
      bulk.send({ t: 'state', state, run: 'running', console: new Uint8Array(0) });
      const reply = await bulk.next();
      expect(reply.t, what).toBe('failed');
      expect(['EPROTO', 'EINCOMPATIBLE', 'EVERSION']).toContain(reply.code);
      await bulk.closed;
      await eventually(async () => (await c.request<Info[]>('vm.list')).every((v) => v.name === 'bystander'), `no VM left after "${what}"`, 5_000);
    }
  }, T);

  it('a malformed frame on the post-copy priority channel pauses that migration; the host and its VMs go on', async () => {
    const c = await clients.connect(open.url);
    for (const [what, frame] of [
      ['a page beyond RAM', pageFrame([SCRIPT_PAGES + 5])],
      ['a short frame', pageFrame([1, 2], 1)],
      ['trailing bytes', Buffer.concat([pageFrame([1]), Buffer.alloc(3)])],
      ['msgpack garbage', Buffer.from([0xc1, 0xc1])],
    ] as [string, Buffer][]) {
      const { bulk, prio } = await scriptedPostcopy(open.url, 'pc-victim');
      prio.sendRaw(frame);
      const closed = await prio.closed;
      expect(closed.code, what).not.toBe(1006);
      const s = await eventually(async () => {
        const st = await c.request<Info>('migrate.status', { name: 'pc-victim' });
        return st.status === 'postcopy-paused' ? st : undefined;
      }, `the post-copy to pause after "${what}"`, 5_000);
      expect(String(s['error-desc'])).toMatch(/EPROTO|malformed|outside|short|trailing/i);
      bulk.terminate();
      await c.request('vm.destroy', { name: 'pc-victim' });
      await eventually(async () => (await c.request<Info[]>('vm.list')).every((v) => v.name === 'bystander'), 'the paused VM to be given up', 5_000);
    }
  }, T);

  it('a source that goes silent after its setup: the half-built VM is dropped after the idle deadline', async () => {
    const c = await clients.connect(open.url);
    const bulk = await sourceLink(open.url, { role: 'bulk', id: migrationId() });
    bulk.send(setupMsg('silent'));
    expect((await bulk.next()).t).toBe('setup-ok');
    bulk.sendRaw(pageFrame([1, 2]));
    await waitState(c, 'silent', 'incoming');
    const failed = await bulk.next(8_000);
    expect(failed).toMatchObject({ t: 'failed', code: 'ETIMEDOUT' });
    await eventually(async () => (await c.request<Info[]>('vm.list')).every((v) => v.name === 'bystander'), 'the half-built VM to go', 5_000);
    expect(await c.request<Info>('migrate.status', { name: 'silent' })).toMatchObject({ status: 'failed' });
  }, T);

  it('vm destroy removes a half-built incoming VM at any time, and the source is told', async () => {
    const c = await clients.connect(open.url);
    const bulk = await sourceLink(open.url, { role: 'bulk', id: migrationId() });
    bulk.send(setupMsg('half'));
    expect((await bulk.next()).t).toBe('setup-ok');
    await waitState(c, 'half', 'incoming');
    await c.request('vm.destroy', { name: 'half' });
    expect(await bulk.next()).toMatchObject({ t: 'failed', code: 'ECANCELED' });
    expect((await c.request<Info[]>('vm.list')).map((v) => v.name)).toEqual(['bystander']);
  }, T);

  it('a priority channel for a migration that has one already, or for none, is refused', async () => {
    const id = migrationId();
    const bulk = await sourceLink(open.url, { role: 'bulk', id });
    bulk.send(setupMsg('twoprio'));
    expect((await bulk.next()).t).toBe('setup-ok');
    const prio = await sourceLink(open.url, { role: 'prio', id });
    const second = await sourceLink(open.url, { role: 'prio', id });
    expect((await second.closed).code).toBe(1008);
    expect(prio.ws.readyState).toBe(prio.ws.OPEN);
    const stray = await sourceLink(open.url, { role: 'prio', id: migrationId() });
    expect((await stray.closed).code).toBe(1008);
    await sleep(0);
  }, T);
});

describe('a hostile destination', () => {
  const fakes: FakeDestination[] = [];
  afterEach(async () => {
    await Promise.all(fakes.splice(0).map((f) => f.close()));
  });

  it('whatever it answers, the migration fails with EPROTO and the VM runs on at the source', async () => {
    const c = await clients.connect(open.url);
    await c.request('vm.create', { name: 'leaver', program: 'counter', memory: 8 * MiB, start: true, args: ['period_ms=20'] });
    const bigIntExt = Buffer.concat([Buffer.from([0xc9, 0, 0x10, 0, 0, 0x42]), Buffer.alloc(0x100000, 1)]);
    const answers: [string, 'setup' | 'round-end', (Buffer | string)[]][] = [
      ['a text frame', 'setup', ['{"t":"setup-ok"}']],
      ['a 1 MiB BigInt', 'setup', [Buffer.concat([packr.pack({ t: 'setup-ok', x: 0 }).subarray(0, -1), bigIntExt])]],
      ['an unknown field', 'setup', [packr.pack({ t: 'setup-ok', surprise: 1 })]],
      ['the wrong message', 'setup', [packr.pack({ t: 'round-ack', round: 0, pages: 0 })]],
      ['a refusal of 10 KB', 'setup', [packr.pack({ t: 'refused', code: 'EX', message: 'x'.repeat(10_000) })]],
      ['a flood of unasked-for messages', 'setup', [packr.pack({ t: 'setup-ok' }), ...Array.from({ length: 40 }, () => packr.pack({ t: 'advise-ok' }))]],
      ['a round-ack counting 2^60 pages', 'round-end', [packr.pack({ t: 'round-ack', round: 0, pages: 2 ** 60 })]],
      ['a received-page bitmap nobody asked for', 'round-end', [packr.pack({ t: 'recv-bitmap', received: new Uint8Array(3), receivedCount: 1 })]],
    ];
    for (const [what, at, frames] of answers) {
      const fake = await startFakeDestination({ answer: at, with: frames.map((f) => (typeof f === 'string' ? f : Buffer.from(f))) });
      fakes.push(fake);
      const s = await migrate(c, 'leaver', { to: fake.url, maxRounds: 1, switchoverAtMaxRounds: true }, 15_000);
      expect(s.status, what).toBe('failed');
      expect(s['error-code'], `${what}: ${String(s['error-desc'])}`).toBe('EPROTO');
      expect(Buffer.byteLength(String(s['error-desc']))).toBeLessThan(2000);
      const info = await c.request<Info>('vm.info', { name: 'leaver' });
      expect(info.state, what).toBe('running');
    }
  }, 60_000);
});
