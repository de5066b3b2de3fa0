// Helpers for the migration suites: in-process hosts, the `ferry run --digest` oracle, and
// waiting for a migration or a VM to reach a state through a ControlClient.
import { expect } from 'vitest';
import { ControlClient } from '../../src/wire/control-client.ts';
import { Host } from '../../src/host/host.ts';
import { createLogger } from '../../src/log.ts';
import { PAGE_EVER_WRITTEN } from '../../src/memory/layout.ts';
import { MIGRATION_PROTOCOL_VERSION } from '../../src/migration/protocol.ts';
import type { MigrationInfo, MigrationStatus } from '../../src/migration/stats.ts';
import { runCli, sleep } from './helpers.ts';

export type Info = Record<string, unknown>;

export const FINAL: readonly MigrationStatus[] = ['completed', 'failed', 'cancelled'];

/** A guest run, as `vm.create` takes it and `ferry run` reproduces it. */
export interface GuestSpec {
  program: string;
  memory: number;
  args: string[];
  insnLimit: number;
}

/** `vm.create` parameters for a deterministic (icount) run of `g`, started at once. */
export function createParams(name: string, g: GuestSpec, extra: Info = {}): Info {
  return { name, program: g.program, memory: g.memory, icount: true, insnLimit: g.insnLimit, args: g.args, start: true, ...extra };
}

const oracles = new Map<string, Promise<string>>();

/**
 * The oracle: the digest `ferry run PROGRAM --icount --insn-limit N --digest` prints as its last
 * line for the same guest. Cached per spec; start it early and await it late, it runs in a child.
 */
export function oracleDigest(g: GuestSpec): Promise<string> {
  const args = [
    'run', g.program, '--icount', '--insn-limit', String(g.insnLimit), '--memory', String(g.memory), '--digest',
    ...g.args.flatMap((a) => ['--arg', a]),
  ];
  const key = args.join(' ');
  let p = oracles.get(key);
  if (!p) {
    p = runCli(args, 60_000).then((r) => {
      const lines = r.stdout.trimEnd().split('\n');
      const m = /^digest: ([0-9a-f]{64})$/.exec(lines[lines.length - 1] ?? '');
      if (!m) throw new Error(`ferry ${key}: no digest line (exit ${r.code}): ${r.stdout.slice(-300)} ${r.stderr.slice(-300)}`);
      return m[1]!;
    });
    oracles.set(key, p);
  }
  return p;
}

/** A logger that says nothing (tests read state, not logs). */
export function silentLogger() {
  const prev = process.env.FERRY_LOG_LEVEL;
  process.env.FERRY_LOG_LEVEL = 'silent';
  try {
    return createLogger();
  } finally {
    if (prev === undefined) delete process.env.FERRY_LOG_LEVEL;
    else process.env.FERRY_LOG_LEVEL = prev;
  }
}

export interface LiveHost {
  host: Host;
  url: string;
  name: string;
}

/**
 * In-process hosts and control clients, tracked so `cleanup()` (afterEach) stops every host
 * (and with it every VM worker) and closes every client.
 */
export function hostTracker() {
  const hosts: LiveHost[] = [];
  const clients: ControlClient[] = [];
  return {
    async start(name: string, o: { maxMemory?: number; token?: string; advertise?: string } = {}): Promise<LiveHost> {
      const host = new Host({
        host: '127.0.0.1', port: 0, name, maxMemory: o.maxMemory ?? 1024 * 1024 * 1024, log: silentLogger(),
        ...(o.token !== undefined ? { token: o.token } : {}), ...(o.advertise !== undefined ? { advertise: o.advertise } : {}),
      });
      const url = await host.start();
      const h = { host, url, name };
      hosts.push(h);
      return h;
    },
    async connect(url: string, o: { token?: string } = {}): Promise<ControlClient> {
      const c = await ControlClient.connect(url, { client: 'migration-test', ...o });
      clients.push(c);
      return c;
    },
    async cleanup(): Promise<void> {
      await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
      await Promise.all(hosts.splice(0).map((h) => h.host.stop().catch(() => undefined)));
    },
  };
}

/**
 * Starts a migration of `name` and resolves with its final outgoing statistics. Listens for
 * 'migration' events before asking, and polls `migrate.status` as a fallback.
 */
export async function migrate(c: ControlClient, name: string, params: Info, timeoutMs = 30_000): Promise<MigrationInfo> {
  const done = waitMigrationEnd(c, name, timeoutMs);
  try {
    await c.request('migrate.start', { name, ...params });
  } catch (e) {
    done.cancel();
    throw e;
  }
  return done.promise;
}

/** Resolves with the first final outgoing status of `name` seen on `c` (events, or polling). */
export function waitMigrationEnd(c: ControlClient, name: string, timeoutMs = 30_000): { promise: Promise<MigrationInfo>; cancel: () => void } {
  let stop = () => {};
  const promise = new Promise<MigrationInfo>((resolve, reject) => {
    const onEvent = (event: string, vm: string | undefined, data: unknown) => {
      if (event !== 'migration' || vm !== name) return;
      const s = data as MigrationInfo;
      if (s.direction === 'outgoing' && FINAL.includes(s.status)) finish(() => resolve(s));
    };
    const poll = setInterval(() => {
      c.request<MigrationInfo>('migrate.status', { name }).then((s) => {
        if (s.direction === 'outgoing' && FINAL.includes(s.status)) finish(() => resolve(s));
      }, () => undefined);
    }, 100);
    const timer = setTimeout(() => finish(() => reject(new Error(`migration of ${name} did not end within ${timeoutMs} ms`))), timeoutMs);
    const finish = (f: () => void) => {
      clearInterval(poll);
      clearTimeout(timer);
      c.off('event', onEvent);
      f();
    };
    stop = () => finish(() => resolve(undefined as unknown as MigrationInfo));
    c.on('event', onEvent);
  });
  return { promise, cancel: () => stop() };
}

/** Polls `vm.info` until `pred` holds on it; returns that info. */
export async function waitInfo(c: ControlClient, name: string, pred: (i: Info) => boolean, what: string, timeoutMs = 30_000): Promise<Info> {
  const t0 = Date.now();
  for (;;) {
    const info = await c.request<Info>('vm.info', { name });
    if (pred(info)) return info;
    if (Date.now() - t0 > timeoutMs) throw new Error(`VM ${name}: timed out waiting for ${what} (last: ${JSON.stringify(info)})`);
    await sleep(5);
  }
}

/** Waits for `name` to have retired more than `n` instructions (or halted). */
export function waitInstret(c: ControlClient, name: string, n: number, timeoutMs = 30_000): Promise<Info> {
  return waitInfo(c, name, (i) => (i.instret as number) > n || i.state === 'halted', `instret > ${n}`, timeoutMs);
}

export function waitHalted(c: ControlClient, name: string, timeoutMs = 30_000): Promise<Info> {
  return waitInfo(c, name, (i) => i.state === 'halted', 'halted', timeoutMs);
}

/** The error code a request fails with (fails the test if it succeeds). */
export async function errorCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
  throw new Error('expected the request to fail');
}

/** Waits for the VM to halt and returns its digest. */
export async function finalDigest(c: ControlClient, name: string, timeoutMs = 30_000): Promise<string> {
  await waitHalted(c, name, timeoutMs);
  const d = await c.request<{ digest: string; state: string }>('vm.digest', { name });
  if (d.state !== 'halted') throw new Error(`VM ${name} is ${d.state} after its digest`);
  return d.digest;
}

/** Number of pages a memory's page-state array marks as ever written. */
export function everWrittenCount(pageState: Int32Array | Uint8Array | Uint32Array, flag: number): number {
  let n = 0;
  for (let p = 0; p < pageState.length; p++) if ((pageState[p]! & flag) !== 0) n++;
  return n;
}

/** What a fake destination does to the link, and when. */
export type FakeBehaviour =
  /** Drops the TCP connection as soon as the setup section arrives (before answering it). */
  | { drop: 'setup' }
  /** Accepts setup, acknowledges rounds, drops the connection after this many page frames. */
  | { drop: 'pages'; afterFrames: number }
  /** Plays along to the end, then drops the connection on the state section without answering. */
  | { drop: 'state' }
  /** A hostile destination: answers the setup (or the first round-end) with these raw frames instead. */
  | { answer: 'setup' | 'round-end'; with: (Buffer | string)[] };

export interface FakeDestination {
  url: string;
  /** Control messages seen on the bulk stream, by type, in order. */
  seen: string[];
  pageFrames: number;
  /** Resolves once the fake has dropped the link. */
  dropped: Promise<void>;
  close(): Promise<void>;
}

/**
 * A destination that speaks just enough of `/migrate` (hello/ready without a token, setup-ok,
 * round-ack) to bring a source to a given point, and then cuts the TCP connection there. It
 * has no `/control`, so a source asking it whether it runs the VM gets no answer.
 */
export async function startFakeDestination(b: FakeBehaviour): Promise<FakeDestination> {
  const { WebSocketServer } = await import('ws');
  const { Packr } = await import('msgpackr');
  const packr = new Packr({ useRecords: false, moreTypes: true });
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/migrate', perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const port = (wss.address() as { port: number }).port;
  let markDropped = () => {};
  const fake: FakeDestination = {
    url: `ws://127.0.0.1:${port}`,
    seen: [],
    pageFrames: 0,
    dropped: new Promise<void>((resolve) => { markDropped = resolve; }),
    close: () => new Promise<void>((resolve) => {
      for (const ws of wss.clients) ws.terminate();
      wss.close(() => resolve());
    }),
  };
  const drop = () => {
    for (const ws of wss.clients) ws.terminate();
    markDropped();
  };
  wss.on('connection', (ws) => {
    ws.on('error', () => {});
    ws.send(packr.pack({ t: 'hello', v: MIGRATION_PROTOCOL_VERSION, host: 'fake' }));
    let helloDone = false;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!helloDone) {
        helloDone = true;
        ws.send(packr.pack({ t: 'ready', v: MIGRATION_PROTOCOL_VERSION, host: 'fake' }));
        return;
      }
      if (isBinary && (data[0] === 0x50 || data[0] === 0x51)) { // a page frame, plain or LZ4
        fake.pageFrames++;
        if ('drop' in b && b.drop === 'pages' && fake.pageFrames >= b.afterFrames) drop();
        return;
      }
      const m = packr.unpack(data) as { t: string; round?: number };
      fake.seen.push(m.t);
      if ('answer' in b && b.answer === m.t) {
        for (const f of b.with) ws.send(f);
      } else if (m.t === 'setup') {
        if ('drop' in b && b.drop === 'setup') drop();
        else ws.send(packr.pack({ t: 'setup-ok' }));
      } else if (m.t === 'round-end') {
        ws.send(packr.pack({ t: 'round-ack', round: m.round, pages: 0 }));
      } else if (m.t === 'state') {
        drop();
      }
    });
  });
  return fake;
}

/** Waits until the destination's side of the migration of `name` is over, and returns it. */
export async function incomingDone(c: ControlClient, name: string): Promise<MigrationInfo> {
  const t0 = Date.now();
  for (;;) {
    const s = await c.request<MigrationInfo>('migrate.status', { name }).catch(() => undefined);
    if (s && (s.status === 'completed' || s.status === 'failed')) return s;
    if (Date.now() - t0 > 30_000) throw new Error(`incoming post-copy of ${name} did not end`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Hosts A and B (tracked by `hosts`, so afterEach stops them), `g` created on A and run to
 * `at` × its instruction limit; `ever` is how many pages it had ever written by then.
 */
export async function guestRunningOnA(hosts: ReturnType<typeof hostTracker>, g: GuestSpec, name: string, at: number, aOptions: { advertise?: string } = {}) {
  const a = await hosts.start('a', aOptions);
  const b = await hosts.start('b');
  const ca = await hosts.connect(a.url);
  const cb = await hosts.connect(b.url);
  await ca.request('vm.create', createParams(name, g));
  await waitInstret(ca, name, Math.floor(g.insnLimit * at));
  const ever = everWrittenCount(a.host.registry.get(name).vm.memory.pageState, PAGE_EVER_WRITTEN);
  return { a, b, ca, cb, ever };
}

/** Migrates `g` from A to B by pre-copy with `params` at `at` of its run; B must reach the unmigrated digest. */
export async function migrateAndCompare(hosts: ReturnType<typeof hostTracker>, g: GuestSpec, name: string, params: Info, at = 0.3): Promise<MigrationInfo> {
  const oracle = oracleDigest(g);
  const { b, ca, cb } = await guestRunningOnA(hosts, g, name, at);
  const s = await migrate(ca, name, { to: b.url, ...params }, 60_000);
  expect(s.status).toBe('completed');
  expect(await finalDigest(cb, name, 60_000)).toBe(await oracle);
  return s;
}
