// The host daemon end to end at the protocol level: a real `ferry host start` child process,
// driven through ControlClient and through raw WebSockets speaking (and mangling) the protocol.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { FerryError } from '../../src/errors.ts';
import { CONTROL_PROTOCOL_VERSION, encode } from '../../src/wire/control-protocol.ts';
import { ControlClient } from '../../src/wire/control-client.ts';
import { loadElf, MiB, runCli, sleep, waitFor } from '../support/helpers.ts';
import {
  clientTracker, closeAllRaw, consoleOf, killAllSpawned, packr, pidAlive, rawConnect, rawReady, spawnCli, startHost,
  ticks, TOKEN, waitState, type StartedHost,
} from '../support/host-helpers.ts';

const T = 30_000;
type Info = Record<string, unknown>;

/** The error a promise rejects with (fails if it resolves). */
async function rejection(p: Promise<unknown>): Promise<FerryError> {
  try {
    await p;
  } catch (e) {
    return e as FerryError;
  }
  throw new Error('expected a rejection');
}

const clients = clientTracker();
let host: StartedHost;
/** Hosts shared by several tests, which afterEach leaves running. */
const shared: StartedHost[] = [];

beforeAll(async () => {
  host = await startHost({ name: 'h-main' });
  shared.push(host);
}, T);

afterEach(async () => {
  // Whatever a test left on the shared host goes, so the next one starts from an empty host.
  if (host?.isRunning()) await destroyAll(await clients.connect(host.url));
  await clients.closeAll();
  await closeAllRaw();
  const { survivors } = await killAllSpawned(shared);
  expect(survivors).toEqual([]);
});

afterAll(async () => {
  if (!host) return;
  const code = await host.stop('SIGINT');
  expect(code).toBe(0);
  expect(host.stderrText()).toContain('host stopped');
  // Every bad request above was answered as such: nothing was logged as an unexpected failure.
  expect(host.stderrText().split('\n').filter((l) => l.includes('"level":50'))).toEqual([]);
  expect(pidAlive(host.pid)).toBe(false);
}, T);

/** Destroys every VM on the shared host (so tests do not see each other's VMs). */
async function destroyAll(c: ControlClient): Promise<void> {
  const vms = await c.request<Info[]>('vm.list');
  for (const v of vms) await c.request('vm.destroy', { name: v.name }).catch(() => undefined);
}

describe('VM lifecycle through ControlClient', () => {
  it('create → start → pause → resume → info → stop → destroy, with vm.state events pushed in order to another client', async () => {
    const a = await clients.connect(host.url);
    const b = await clients.connect(host.url, { client: 'watcher' });
    expect(a.hostName).toBe('h-main');
    const seen: string[] = [];
    b.on('event', (event: string, vm: string | undefined, data: unknown) => {
      if (event === 'vm.state' && vm === 'life') seen.push((data as Info).state as string);
    });

    const created = await a.request<Info>('vm.create', { name: 'life', program: 'counter', args: ['period_ms=20'], memory: 16 * MiB });
    expect(created).toMatchObject({ name: 'life', program: 'counter', host: 'h-main', state: 'created', memory: 16 * MiB, icount: false });

    expect(await a.request<Info>('vm.start', { name: 'life' })).toMatchObject({ name: 'life', state: 'running' });
    const out = consoleOf(a, 'life');
    await a.request('console.attach', { name: 'life' });
    await waitFor(() => ticks(out.text()).length >= 2, 'two ticks');

    expect(await a.request<Info>('vm.pause', { name: 'life' })).toMatchObject({ state: 'paused' });
    const p1 = await a.request<Info>('vm.info', { name: 'life' });
    const ticksAtPause = ticks(out.text()).length;
    await sleep(200);
    const p2 = await a.request<Info>('vm.info', { name: 'life' });
    expect(p2.state).toBe('paused');
    expect(p2.instret).toBe(p1.instret);
    expect(p2.pc).toBe(p1.pc);
    expect(p2.mips).toBe(0);
    expect(ticks(out.text()).length).toBe(ticksAtPause);

    expect(await a.request<Info>('vm.resume', { name: 'life' })).toMatchObject({ state: 'running' });
    await waitFor(() => ticks(out.text()).length >= ticksAtPause + 2, 'ticks after resume');
    const info = await a.request<Info>('vm.info', { name: 'life' });
    expect(info).toMatchObject({
      name: 'life', state: 'running', program: 'counter', host: 'h-main', memory: 16 * MiB, icount: false, insnLimit: 0,
      exitCode: null, haltReason: null,
    });
    expect(info.instret as number).toBeGreaterThan(p2.instret as number);
    expect(info.pc as number).toBeGreaterThanOrEqual(0x80000000);
    expect(info.pc as number).toBeLessThan(0x80000000 + 16 * MiB);
    expect(typeof info.mips).toBe('number');
    expect(new Date(info.createdAt as string).getTime()).toBeGreaterThan(Date.now() - 60_000);

    const hi = await a.request<Info>('host.info');
    expect(hi).toMatchObject({ name: 'h-main', version: CONTROL_PROTOCOL_VERSION, vms: 1, memoryUsed: 16 * MiB });

    const regs = await a.request<Info>('vm.registers', { name: 'life' });
    expect(regs).toMatchObject({ name: 'life', state: 'running', live: true });
    expect(regs.x).toHaveLength(32);
    expect((regs.x as number[])[0]).toBe(0);

    const stopped = await a.request<Info>('vm.stop', { name: 'life' });
    expect(stopped).toMatchObject({ state: 'halted', haltReason: 'stopped' });
    // A halted VM stays readable but cannot run again.
    expect(await a.request<Info>('vm.info', { name: 'life' })).toMatchObject({ state: 'halted', haltReason: 'stopped' });
    expect((await rejection(a.request('vm.start', { name: 'life' }))).code).toBe('ESTATE');
    expect((await rejection(a.request('vm.resume', { name: 'life' }))).code).toBe('ESTATE');

    expect(await a.request('vm.destroy', { name: 'life' })).toEqual({ name: 'life' });
    const gone = await rejection(a.request('vm.info', { name: 'life' }));
    expect(gone).toBeInstanceOf(FerryError);
    expect(gone.code).toBe('ENOVM');
    expect(gone.message).toBe('no VM named "life" on host h-main');
    expect((await rejection(a.request('vm.destroy', { name: 'life' }))).code).toBe('ENOVM');
    expect(await a.request('vm.list')).toEqual([]);

    await waitFor(() => seen.includes('destroyed'), 'the destroyed event');
    // Order of the transitions (a repeated 'destroyed' is checked on its own below).
    expect(seen.filter((s, i) => s !== seen[i - 1])).toEqual(['running', 'paused', 'running', 'halted', 'destroyed']);
  }, T);

  it('vm.destroy pushes exactly one "destroyed" event', async () => {
    const a = await clients.connect(host.url);
    const b = await clients.connect(host.url);
    const seen: string[] = [];
    b.on('event', (event: string, vm: string | undefined, data: unknown) => {
      if (event === 'vm.state' && vm === 'once') seen.push((data as Info).state as string);
    });
    await a.request('vm.create', { name: 'once', program: 'counter', memory: 4 * MiB, start: true });
    await a.request('vm.destroy', { name: 'once' });
    await waitFor(() => seen.includes('destroyed'), 'the destroyed event');
    await sleep(200);
    expect(seen).toEqual(['running', 'destroyed']);
  }, T);

  it('a program must name a built guest: host file paths are not read', async () => {
    const a = await clients.connect(host.url);
    // A client may only pick from the host's built programs (ELF bytes travel in "elf"); a path
    // would let any client probe and run files from the host's disk.
    for (const program of ['/etc/hostname', '/nonexistent.elf', 'guest-programs/build/hello.elf']) {
      const e = await rejection(a.request('vm.create', { name: 'path', program, memory: 4 * MiB }));
      expect(e.message, program).toMatch(/unknown program/);
    }
    expect(await a.request('vm.list')).toEqual([]);
    const unknown = await rejection(a.request('vm.create', { name: 'path', program: 'no-such', memory: 4 * MiB }));
    expect(unknown.message).toMatch(/^unknown program "no-such"; built programs: .*counter.*hello/);
    await destroyAll(a);
  }, T);

  it('a created VM cannot be paused; names are validated; duplicates are refused', async () => {
    const a = await clients.connect(host.url);
    await a.request('vm.create', { name: 'v.1_x-y', program: 'hello', memory: 4 * MiB });
    expect((await rejection(a.request('vm.pause', { name: 'v.1_x-y' }))).code).toBe('ESTATE');
    const dup = await rejection(a.request('vm.create', { name: 'v.1_x-y', program: 'hello', memory: 4 * MiB }));
    expect(dup.code).toBe('EEXIST');
    for (const name of ['bad name', '-x', 'a/b', 'x'.repeat(64)]) {
      expect((await rejection(a.request('vm.create', { name, program: 'hello', memory: 4 * MiB }))).code).toBe('EINVAL');
    }
    expect((await rejection(a.request('vm.create', { name: 'both', program: 'hello', elf: new Uint8Array(4) }))).code).toBe('EINVAL');
    expect((await rejection(a.request('vm.create', { name: 'none' }))).code).toBe('EINVAL');
    expect((await rejection(a.request('vm.create', { name: 'mem', program: 'hello', memory: 12345 }))).code).toBeTruthy();
    await destroyAll(a);
  }, T);
});

describe('determinism and consoles', () => {
  it('an icount digest taken through the host equals `ferry run --digest` of the same run', async () => {
    const local = runCli(['run', 'memstress', '--icount', '--insn-limit', '5000000', '--digest', '--arg', 'ws_mib=4', '--memory', '32M']);
    const a = await clients.connect(host.url);
    const halted = new Promise<Info>((resolve) => {
      a.on('event', (event: string, vm: string | undefined, data: unknown) => {
        if (event === 'vm.state' && vm === 'ms' && (data as Info).state === 'halted') resolve(data as Info);
      });
    });
    await a.request('vm.create', {
      name: 'ms', program: 'memstress', icount: true, insnLimit: 5_000_000, args: ['ws_mib=4'], memory: 32 * MiB, start: true,
    });
    const h = await halted;
    expect(h.instret).toBe(5_000_000);
    const d = await a.request<Info>('vm.digest', { name: 'ms' });
    expect(d).toMatchObject({ name: 'ms', instret: 5_000_000, state: 'halted' });
    expect(d.digest).toMatch(/^[0-9a-f]{64}$/);
    const r = await local;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe(`digest: ${d.digest as string}`);
    // Asking again gives the same answer.
    expect((await a.request<Info>('vm.digest', { name: 'ms' })).digest).toBe(d.digest);
    await destroyAll(a);
  }, T);

  it('two clients attached to one counter see the same tick sequence', async () => {
    const a = await clients.connect(host.url);
    const b = await clients.connect(host.url);
    await a.request('vm.create', { name: 'fan', program: 'counter', args: ['period_ms=20'], memory: 16 * MiB, start: true });
    await sleep(150);
    const outA = consoleOf(a, 'fan');
    const ra = await a.request<{ history: Uint8Array }>('console.attach', { name: 'fan' });
    await sleep(100);
    const outB = consoleOf(b, 'fan');
    const rb = await b.request<{ history: Uint8Array }>('console.attach', { name: 'fan' });
    const textA = () => Buffer.from(ra.history).toString('latin1') + outA.text();
    const textB = () => Buffer.from(rb.history).toString('latin1') + outB.text();
    await waitFor(() => ticks(textA()).length >= 12 && ticks(textB()).length >= 12, '12 ticks on both clients');
    await a.request('vm.pause', { name: 'fan' });
    await sleep(100);
    const ta = ticks(textA());
    const tb = ticks(textB());
    // Each client sees 1, 2, 3, ... with neither gaps nor repeats (history + live output join cleanly).
    expect(ta[0]).toBe(1);
    expect(ta).toEqual(ta.map((_, i) => i + 1));
    expect(tb).toEqual(tb.map((_, i) => tb[0]! + i));
    const from = Math.max(ta[0]!, tb[0]!);
    const to = Math.min(ta.at(-1)!, tb.at(-1)!);
    expect(to - from).toBeGreaterThanOrEqual(8);
    expect(ta.filter((n) => n >= from && n <= to)).toEqual(tb.filter((n) => n >= from && n <= to));
    // Detached: no more output for b.
    await b.request('console.detach', { name: 'fan' });
    const before = outB.text().length;
    await a.request('vm.resume', { name: 'fan' });
    const n = ticks(textA()).length;
    await waitFor(() => ticks(textA()).length >= n + 3, 'more ticks on a');
    expect(outB.text().length).toBe(before);
    await destroyAll(a);
  }, T);

  it('console.input reaches the echo guest and comes back; Ctrl-D powers it off', async () => {
    const a = await clients.connect(host.url);
    const out = consoleOf(a, 'echo');
    await a.request('vm.create', { name: 'echo', program: 'echo', memory: 8 * MiB });
    await a.request('console.attach', { name: 'echo' });
    await a.request('vm.start', { name: 'echo' });
    await waitFor(() => out.text().includes('echo: ready\n'), 'echo: ready');
    expect(await a.request('console.input', { name: 'echo', data: new Uint8Array(Buffer.from('hello, echo\n')) })).toEqual({ bytes: 12 });
    await waitFor(() => out.text().includes('hello, echo\n'), 'the echoed line');
    const bytes = new Uint8Array(Buffer.from('abc\xe9\xff\n', 'latin1'));
    await a.request('console.input', { name: 'echo', data: bytes });
    await waitFor(() => out.text().includes('abc\xe9\xff\n'), 'the echoed bytes');
    expect((await rejection(a.request('console.input', { name: 'echo', data: 'text' }))).code).toBe('EINVAL');
    expect((await rejection(a.request('console.input', { name: 'nope', data: new Uint8Array(1) }))).code).toBe('ENOVM');
    await a.request('console.input', { name: 'echo', data: new Uint8Array([4]) });
    const h = await waitState(a, 'echo', 'halted');
    expect(h.exitCode).toBe(0);
    expect(out.text()).toBe('echo: ready\nhello, echo\nabc\xe9\xff\necho: bye\n');
    await destroyAll(a);
  }, T);

  it('uploaded ELF bytes boot: hello prints its greeting', async () => {
    const a = await clients.connect(host.url);
    const elf = loadElf('hello');
    const r = await a.request<Info>('vm.create', { name: 'up', elf, elfName: 'hello.elf', memory: 4 * MiB, start: true });
    expect(r.program).toBe('elf:hello.elf');
    const h = await waitState(a, 'up', 'halted');
    expect(h.exitCode).toBe(0);
    // A late attacher gets the history.
    const { history } = await a.request<{ history: Uint8Array }>('console.attach', { name: 'up' });
    expect(Buffer.from(history).toString('latin1')).toBe('hello from ferry\n');
    // Garbage bytes are refused, and the host is fine afterwards.
    const bad = await rejection(a.request('vm.create', { name: 'junk', elf: new Uint8Array(100).fill(7), memory: 4 * MiB }));
    expect(bad.code).not.toBe('EINTERNAL');
    expect(bad.message).toMatch(/ELF/i);
    expect((await a.request<Info[]>('vm.list')).map((v) => v.name)).toEqual(['up']);
    await destroyAll(a);
  }, T);
});

describe('capacity', () => {
  it('runs 4 counters at once; --max-memory 64M refuses a 5th with ENOMEM while the others keep running', async () => {
    const h = await startHost({ name: 'h-small', args: ['--max-memory', '64M'] });
    const a = await clients.connect(h.url);
    const names = ['c1', 'c2', 'c3', 'c4'];
    for (const name of names) {
      await a.request('vm.create', { name, program: 'counter', args: ['period_ms=20'], memory: 16 * MiB, start: true });
    }
    const outs = names.map((n) => consoleOf(a, n));
    const hists = await Promise.all(names.map((name) => a.request<{ history: Uint8Array }>('console.attach', { name })));
    const text = (i: number) => Buffer.from(hists[i]!.history).toString('latin1') + outs[i]!.text();
    expect(await a.request<Info>('host.info')).toMatchObject({ name: 'h-small', vms: 4, memoryUsed: 64 * MiB, memoryLimit: 64 * MiB });

    const full = await rejection(a.request('vm.create', { name: 'c5', program: 'counter', memory: 4 * MiB }));
    expect(full.code).toBe('ENOMEM');
    expect(full.message).toContain('64 MiB limit');
    expect(full.message).toContain('4 MiB');
    expect((await rejection(a.request('vm.create', { name: 'c5', program: 'counter' }))).code).toBe('ENOMEM'); // default 128M

    const counts = names.map((_, i) => ticks(text(i)).length);
    await waitFor(() => names.every((_, i) => ticks(text(i)).length >= counts[i]! + 5), '5 more ticks on every VM');
    for (let i = 0; i < 4; i++) {
      const t = ticks(text(i));
      expect(t).toEqual(t.map((_, j) => j + 1));
    }
    const list = await a.request<Info[]>('vm.list');
    expect(list.map((v) => [v.name, v.state])).toEqual(names.map((n) => [n, 'running']));

    // Freeing one makes room again.
    await a.request('vm.destroy', { name: 'c4' });
    expect(await a.request<Info>('vm.create', { name: 'c5', program: 'hello', memory: 16 * MiB })).toMatchObject({ state: 'created' });
    await a.close();
    expect(await h.stop('SIGTERM')).toBe(0);
  }, T);
});

describe('authentication', () => {
  let dir: string;
  let th: StartedHost;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-host-test-'));
    writeFileSync(join(dir, 'token'), `${TOKEN}\nsecond line is ignored\n`, { mode: 0o600 });
    th = await startHost({ name: 'h-auth', args: ['--token-file', join(dir, 'token')] });
    shared.push(th);
  }, T);
  afterAll(async () => {
    if (th) expect(await th.stop('SIGTERM')).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  }, T);

  it('the right token gets in', async () => {
    const c = await clients.connect(th.url, { token: TOKEN });
    expect(c.hostName).toBe('h-auth');
    expect(await c.request<Info>('host.info')).toMatchObject({ name: 'h-auth' });
    expect(th.stderrText()).toContain('"auth":"cluster token"');
  }, T);

  it('mutual: a client holding a token refuses a host that asks for none (it cannot prove it holds it)', async () => {
    const e = await rejection(clients.connect(host.url, { token: TOKEN }));
    expect(e.code).toBe('EAUTH');
    expect(e.message).toContain('asks for no cluster token, so it cannot prove it holds ours');
  }, T);

  it('a wrong token is refused with EAUTH and logged', async () => {
    const e = await rejection(clients.connect(th.url, { token: 'a-wrong-token-of-enough-length' }));
    expect(e.code).toBe('EAUTH');
    expect(e.message).toMatch(/authentication failed/);
    await waitFor(() => th.stderrText().includes('authentication failed'), 'the host to log the failure', 5_000);
  }, T);

  it('no token is refused with EAUTH telling how to pass one', async () => {
    const e = await rejection(clients.connect(th.url));
    expect(e.code).toBe('EAUTH');
    expect(e.message).toMatch(/--token-file/);
    expect(e.message).toMatch(/FERRY_TOKEN/);
  }, T);

  it('a raw hello with a garbage mac (or none) is closed with 4001', async () => {
    for (const mac of [new Uint8Array(32).fill(1), new Uint8Array(3), undefined, 'string']) {
      const raw = await rawConnect(th.url);
      const hello = await raw.next();
      expect(hello).toMatchObject({ t: 'hello', v: CONTROL_PROTOCOL_VERSION, host: 'h-auth' });
      expect(hello.challenge).toBeInstanceOf(Uint8Array);
      raw.send({ t: 'hello', v: CONTROL_PROTOCOL_VERSION, client: 'evil', nonce: new Uint8Array(32), ...(mac !== undefined ? { mac } : {}) });
      const closed = await raw.closed;
      expect(closed.code).toBe(4001);
      expect(closed.reason).toMatch(/authentication failed/);
    }
    // Requests before a successful hello never run.
    const raw = await rawConnect(th.url);
    await raw.next();
    raw.send({ t: 'req', id: 1, method: 'vm.list', params: {} });
    expect((await raw.closed).code).toBe(1002);
  }, T);

  it('listening off loopback needs a token: refused with exit 2, accepted with FERRY_TOKEN', async () => {
    const bare = spawnCli(['host', 'start', '--listen', '0.0.0.0:0', '--name', 'h-open']);
    expect(await bare.exited).toBe(2);
    expect(bare.stdoutText()).toBe('');
    expect(bare.stderrText()).toMatch(/^ferry: listening on 0\.0\.0\.0 \(not loopback\) requires TLS \(--tls-cert F --tls-key F --tls-ca F\) or a cluster token \(--token-file F, or FERRY_TOKEN\)\n$/);

    const short = spawnCli(['host', 'start', '--listen', '127.0.0.1:0', '--name', 'h-short'], { FERRY_TOKEN: 'short' });
    expect(await short.exited).toBe(2);
    expect(short.stderrText()).toMatch(/at least 16 characters/);

    const open = await startHost({ name: 'h-open', listen: '0.0.0.0:0', token: TOKEN });
    expect(open.announced).toMatch(/^ferry host h-open listening on ws:\/\/0\.0\.0\.0:\d+$/);
    const c = await clients.connect(open.url, { token: TOKEN });
    expect(await c.request<Info>('host.info')).toMatchObject({ name: 'h-open' });
    expect((await rejection(clients.connect(open.url))).code).toBe('EAUTH');
    await c.close();
    expect(await open.stop('SIGTERM')).toBe(0);
  }, T);
});

describe('a control API that accepts and then says nothing', () => {
  it('a request with a deadline fails ETIMEDOUT (how hosts call each other), and its client still closes', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    wss.on('connection', (ws) => {
      ws.send(encode({ t: 'hello', v: CONTROL_PROTOCOL_VERSION, host: 'mute' }));
      ws.once('message', () => ws.send(encode({ t: 'ready', v: CONTROL_PROTOCOL_VERSION, host: 'mute', incarnation: 'x' })));
      // ...and every request after that goes unanswered.
    });
    try {
      const c = await ControlClient.connect(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
      await expect(c.request('migrate.status', { name: 'vm' }, 300)).rejects.toMatchObject({ code: 'ETIMEDOUT', message: expect.stringContaining('did not answer migrate.status within 300 ms') });
      await c.close();
    } finally {
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    }
  }, T);
});

describe('--advertise', () => {
  it('a malformed address is refused with exit 2 and says what is expected', async () => {
    for (const bad of ['nope', 'http://127.0.0.1:7400', 'ws://127.0.0.1:7400/control']) {
      const h = spawnCli(['host', 'start', '--listen', '127.0.0.1:0', '--name', 'h-adv', '--advertise', bad]);
      expect(await h.exited).toBe(2);
      expect(h.stderrText()).toContain(`invalid --advertise "${bad}": expected ws://HOST:PORT`);
    }
  }, T);
});

describe('bad input on a raw connection', () => {
  it('unknown methods, missing or mistyped params get error replies', async () => {
    const raw = await rawReady(host.url);
    expect(await raw.request('vm.reboot', {})).toMatchObject({ ok: false, error: { code: 'ENOMETHOD', message: 'unknown method "vm.reboot"' } });
    expect(await raw.request('__proto__', {})).toMatchObject({ ok: false, error: { code: 'ENOMETHOD' } });
    expect(await raw.request('toString', {})).toMatchObject({ ok: false, error: { code: 'ENOMETHOD' } });
    expect(await raw.request('vm.info', {})).toMatchObject({ ok: false, error: { code: 'EINVAL', message: 'parameter "name" must be a non-empty string' } });
    expect(await raw.request('vm.info', { name: 42 })).toMatchObject({ ok: false, error: { code: 'EINVAL' } });
    expect(await raw.request('vm.info', [1, 2])).toMatchObject({ ok: false, error: { code: 'EINVAL' } });
    expect(await raw.request('vm.create', { name: 'x', program: 'hello', memory: -1 })).toMatchObject({ ok: false, error: { code: 'EINVAL' } });
    expect(await raw.request('vm.create', { name: 'x', program: 'hello', args: 'a=b' })).toMatchObject({ ok: false, error: { code: 'EINVAL' } });
    expect(await raw.request('vm.create', { name: 'x', program: 'no-such-program', memory: 4 * MiB })).toMatchObject({ ok: false });
    // Requests without an id or a method, and unknown message types, get a protocol error.
    raw.send({ t: 'req', method: 'host.info' });
    expect(await raw.next()).toMatchObject({ t: 'error', error: { code: 'EPROTO' } });
    raw.send({ t: 'req', id: 5 });
    expect(await raw.next()).toMatchObject({ t: 'res', id: 5, ok: false, error: { code: 'EPROTO' } });
    raw.send({ t: 'bogus' });
    expect(await raw.next()).toMatchObject({ t: 'error', error: { code: 'EPROTO' } });
    expect(await raw.request('host.info')).toMatchObject({ ok: true, result: { name: 'h-main' } });
  }, T);

  it('malformed msgpack and text frames get {t:"error"} and the connection stays usable', async () => {
    const raw = await rawReady(host.url);
    raw.ws.send(Buffer.from([0xc1, 0xc1, 0xc1]));
    expect(await raw.next()).toMatchObject({ t: 'error', error: { code: 'EPROTO' } });
    raw.ws.send(packr.pack([1, 2, 3]));
    expect(await raw.next()).toMatchObject({ t: 'error', error: { code: 'EPROTO' } });
    raw.ws.send(packr.pack('just a string'));
    expect(await raw.next()).toMatchObject({ t: 'error', error: { code: 'EPROTO' } });
    raw.ws.send('{"t":"req","id":1,"method":"host.info"}');
    const textErr = await raw.next();
    expect(textErr).toMatchObject({ t: 'error', error: { code: 'EPROTO' } });
    expect((textErr.error as Info).message).toMatch(/text frames/);
    expect(await raw.request('host.info')).toMatchObject({ ok: true, result: { name: 'h-main' } });
    expect(raw.ws.readyState).toBe(raw.ws.OPEN);
  }, T);

  it('an oversized frame closes that connection with 1009; other clients are unaffected', async () => {
    const other = await clients.connect(host.url);
    const raw = await rawReady(host.url);
    raw.ws.send(Buffer.alloc(32 * MiB + 1024));
    const closed = await raw.closed;
    expect(closed.code).toBe(1009);
    expect(await other.request<Info>('host.info')).toMatchObject({ name: 'h-main' });
    const fresh = await clients.connect(host.url);
    expect(await fresh.request<Info[]>('vm.list')).toBeInstanceOf(Array);
  }, T);

  it('a frame just under the limit is accepted (a large ELF upload is answered, not dropped)', async () => {
    const raw = await rawReady(host.url);
    raw.send({ t: 'req', id: 77, method: 'vm.create', params: { name: 'big', elf: new Uint8Array(31 * MiB), memory: 4 * MiB } });
    const r = await raw.next(20_000);
    expect(r).toMatchObject({ t: 'res', id: 77, ok: false });
    expect(await raw.request('host.info')).toMatchObject({ ok: true });
  }, T);

  it('a hello with another protocol version is closed with 4002', async () => {
    const raw = await rawConnect(host.url);
    expect(await raw.next()).toMatchObject({ t: 'hello', v: CONTROL_PROTOCOL_VERSION, host: 'h-main' });
    raw.send({ t: 'hello', v: 99, client: 'future', nonce: new Uint8Array(32) });
    const closed = await raw.closed;
    expect(closed.code).toBe(4002);
    expect(closed.reason).toMatch(/protocol version 99 is not supported/);
  }, T);

  it('a first message that is not a hello, or not msgpack, is closed with 1002', async () => {
    const raw = await rawConnect(host.url);
    await raw.next();
    raw.send({ t: 'req', id: 1, method: 'host.info', params: {} });
    expect((await raw.closed).code).toBe(1002);

    const raw2 = await rawConnect(host.url);
    await raw2.next();
    raw2.ws.send(Buffer.from([0xc1]));
    expect((await raw2.closed).code).toBe(1002);

    const raw3 = await rawConnect(host.url);
    await raw3.next();
    raw3.ws.send('hello');
    expect((await raw3.closed).code).toBe(1002);
    // The host is still serving.
    const c = await clients.connect(host.url);
    expect(await c.request<Info>('host.info')).toMatchObject({ name: 'h-main' });
  }, T);
});

describe('shutdown', () => {
  it('SIGTERM with running VMs and connected clients: exit 0 quickly, "host stopped" logged, no process left', async () => {
    const h = await startHost({ name: 'h-term' });
    const a = await clients.connect(h.url);
    await a.request('vm.create', { name: 'busy', program: 'memstress', args: ['ws_mib=2'], memory: 8 * MiB, start: true });
    await a.request('vm.create', { name: 'tick', program: 'counter', args: ['period_ms=10'], memory: 8 * MiB, start: true });
    await a.request('console.attach', { name: 'tick' });
    await sleep(200);
    const closedWith = new Promise<FerryError>((resolve) => a.once('close', resolve));
    const t0 = Date.now();
    const code = await h.stop('SIGTERM', 10_000);
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(pidAlive(h.pid)).toBe(false);
    const log = h.stderrText();
    expect(log).toContain('"signal":"SIGTERM"');
    expect(log).toContain('host stopping');
    expect(log).toContain('host stopped');
    for (const line of log.trimEnd().split('\n')) expect(() => JSON.parse(line), line).not.toThrow();
    const e = await closedWith;
    expect(e.message).toMatch(/host shutting down/);
    expect((await rejection(a.request('host.info'))).code).toBe('ECLOSED');
  }, T);
});
