// Helpers for the host suites: a real `ferry host start` child process on a random port, a
// tracker that kills whatever a test left running, raw control-protocol sockets, and
// long-running CLI children (`vm console`, `monitor`) whose output is read as it comes.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Packr } from 'msgpackr';
import WebSocket from 'ws';
import { proof } from '../../src/wire/auth.ts';
import { frameKeys, TagStream, type FrameKeys } from '../../src/wire/frame-mac.ts';
import { ControlClient } from '../../src/wire/control-client.ts';
import { REPO_ROOT, sleep, waitFor } from './helpers.ts';

export const packr = new Packr({ useRecords: false, moreTypes: true });

/** A token long enough for `loadToken` (≥ 16 characters). */
export const TOKEN = 'test-cluster-token-0123456789abcdef';

/** The environment of a child: ours without any FERRY_* variable, plus `extra`. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FERRY_')) env[k] = v;
  return { ...env, FERRY_LOG_LEVEL: 'info', ...extra };
}

/** Whether a process with this pid still exists. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A spawned child whose stdout/stderr are collected as text; `exited` resolves with the exit
 * code (or the signal name) once it is gone.
 */
export interface Spawned {
  proc: ChildProcess;
  pid: number;
  stdoutText(): string;
  stderrText(): string;
  /** Resolves with the exit code, or `null` if a signal ended it. */
  exited: Promise<number | null>;
  isRunning(): boolean;
  /** Sends `signal`, waits up to `timeoutMs` for the exit (SIGKILL after that), returns the code. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
}

const live = new Set<Spawned>();

/** Spawns `node --import tsx src/cli.ts ARGS...` from the repo root, stdin piped. Tracked. */
export function spawnCli(args: string[], env: Record<string, string> = {}): Spawned {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
    cwd: REPO_ROOT,
    env: childEnv(env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  proc.stdout!.on('data', (d: Buffer) => out.push(d));
  proc.stderr!.on('data', (d: Buffer) => err.push(d));
  proc.stdin!.on('error', () => {});
  let running = true;
  const exited = new Promise<number | null>((resolve) => {
    proc.on('close', (code) => {
      running = false;
      live.delete(s);
      resolve(code);
    });
    proc.on('error', () => {
      running = false;
      live.delete(s);
      resolve(null);
    });
  });
  const s: Spawned = {
    proc,
    pid: proc.pid!,
    stdoutText: () => Buffer.concat(out).toString('latin1'),
    stderrText: () => Buffer.concat(err).toString('utf8'),
    exited,
    isRunning: () => running,
    async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000) {
      if (running) proc.kill(signal);
      const timer = setTimeout(() => { if (running) proc.kill('SIGKILL'); }, timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
  live.add(s);
  return s;
}

/**
 * Kills every tracked child still running (SIGTERM, then SIGKILL), waits for them, and returns
 * the pids that were still alive — a test calls this in afterEach and expects `[]` of survivors.
 * Children in `keep` (a host shared by a whole file) are left alone.
 */
export async function killAllSpawned(keep: Spawned[] = []): Promise<{ killed: number[]; survivors: number[] }> {
  const all = [...live].filter((s) => !keep.includes(s));
  await Promise.all(all.map((s) => s.stop('SIGTERM', 5_000)));
  const pids = all.map((s) => s.pid);
  return { killed: pids, survivors: pids.filter(pidAlive) };
}

export interface StartedHost extends Spawned {
  name: string;
  /** The "listening" line as printed. */
  announced: string;
  url: string;
  port: number;
}

export interface StartHostOptions {
  name: string;
  /** Passed as FERRY_TOKEN. */
  token?: string;
  /** More `host start` arguments (e.g. `--max-memory 64M`, `--token-file F`). */
  args?: string[];
  env?: Record<string, string>;
  listen?: string;
  timeoutMs?: number;
}

const LISTENING_RE = /^ferry host (\S+) listening on ws:\/\/(\[[^\]]+\]|[^:/]+):(\d+)\n$/;

/** Starts `ferry host start --listen 127.0.0.1:0` and waits for its "listening" line. */
export async function startHost(o: StartHostOptions): Promise<StartedHost> {
  const args = ['host', 'start', '--listen', o.listen ?? '127.0.0.1:0', '--name', o.name, ...(o.args ?? [])];
  const s = spawnCli(args, { ...(o.token !== undefined ? { FERRY_TOKEN: o.token } : {}), ...(o.env ?? {}) });
  try {
    await waitFor(() => s.stdoutText().includes('\n') || !s.isRunning(), 'the host to listen', o.timeoutMs ?? 20_000, 10);
  } catch (e) {
    await s.stop('SIGKILL');
    throw e;
  }
  const m = LISTENING_RE.exec(s.stdoutText());
  if (!m) {
    await s.stop('SIGKILL');
    throw new Error(`host ${o.name} did not start: stdout=${JSON.stringify(s.stdoutText())} stderr=${s.stderrText()}`);
  }
  if (m[1] !== o.name) {
    await s.stop('SIGKILL');
    throw new Error(`host announced itself as ${m[1]}, not ${o.name}`);
  }
  // A wildcard listener is reached through loopback.
  const addr = m[2] === '0.0.0.0' ? '127.0.0.1' : m[2] === '[::]' ? '[::1]' : m[2]!;
  return Object.assign(s, { name: o.name, url: `ws://${addr}:${m[3]}`, port: Number(m[3]), announced: s.stdoutText().trimEnd() });
}

/** Tracks ControlClients so afterEach can close them all. */
export function clientTracker() {
  const clients: ControlClient[] = [];
  return {
    async connect(url: string, o: { token?: string; client?: string } = {}): Promise<ControlClient> {
      const c = await ControlClient.connect(url, o);
      clients.push(c);
      return c;
    },
    async closeAll(): Promise<void> {
      await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
    },
  };
}

/** A raw WebSocket on `/control`: every decoded message is queued; `next()` takes the next one. */
export interface RawClient {
  ws: WebSocket;
  /** The next message (skipping pushed events unless `events` is true). */
  next(timeoutMs?: number, events?: boolean): Promise<Record<string, unknown>>;
  /** Sends a msgpack-encoded message in a binary frame. */
  send(msg: unknown): void;
  /** Sends one frame as it is (tagged, once tags are on: see `tagAfterReady`). */
  sendFrame(data: Uint8Array | string): void;
  /**
   * For a hello with the token over plain TCP, before it is sent: from the host's `ready` on, tag
   * what this sends and check and strip the tags of what it hears (frame-mac.ts). Switched on as
   * `ready` arrives: an event the host pushes right behind it is already tagged.
   */
  tagAfterReady(keys: FrameKeys): void;
  /** Sends a request and returns its response. */
  request(method: string, params?: unknown): Promise<Record<string, unknown>>;
  /** Resolves with the close code and reason. */
  closed: Promise<{ code: number; reason: string }>;
  close(): Promise<void>;
}

const rawLive = new Set<WebSocket>();

/** A raw WebSocket on `path` (default `/control`), optionally from another loopback source address. */
export async function rawConnect(url: string, path = '/control', o: { localAddress?: string } = {}): Promise<RawClient> {
  const ws = new WebSocket(`${url}${path}`, {
    perMessageDeflate: false, maxPayload: 64 * 1024 * 1024, ...(o.localAddress ? { localAddress: o.localAddress } : {}),
  });
  rawLive.add(ws);
  const queue: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  let isClosed = false;
  let tags: { out: TagStream; in: TagStream } | undefined;
  let armed: FrameKeys | undefined;
  ws.on('message', (d: Buffer) => {
    if (tags) {
      const message = tags.in.open(d);
      if (message === undefined) {
        queue.push({ t: 'tag-failed' });
        for (const w of waiters.splice(0)) w();
        return;
      }
      d = message;
    }
    const m = packr.unpack(d) as Record<string, unknown>;
    if (armed && !tags && m.t === 'ready') {
      tags = { out: new TagStream(armed.send), in: new TagStream(armed.receive) };
      armed = undefined;
    }
    queue.push(m);
    for (const w of waiters.splice(0)) w();
  });
  ws.on('error', () => {});
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => {
      isClosed = true;
      rawLive.delete(ws);
      for (const w of waiters.splice(0)) w();
      resolve({ code, reason: reason.toString() });
    });
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let nextId = 1000;
  const raw: RawClient = {
    ws,
    closed,
    async next(timeoutMs = 10_000, events = false) {
      const t0 = Date.now();
      for (;;) {
        while (queue.length > 0) {
          const m = queue.shift()!;
          if (events || m.t !== 'event') return m;
        }
        if (isClosed) throw new Error('connection closed while waiting for a message');
        const left = timeoutMs - (Date.now() - t0);
        if (left <= 0) throw new Error(`no message within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiters.push(() => { clearTimeout(t); resolve(); });
        });
      }
    },
    send(msg: unknown) {
      raw.sendFrame(packr.pack(msg));
    },
    sendFrame(data: Uint8Array | string) {
      if (!tags) {
        ws.send(data);
        return;
      }
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      ws.send(Buffer.concat([bytes, tags.out.tag(bytes)]), { binary: typeof data !== 'string' });
    },
    tagAfterReady(keys: FrameKeys) {
      armed = keys;
    },
    async request(method: string, params: unknown = {}) {
      const id = nextId++;
      raw.send({ t: 'req', id, method, params });
      for (;;) {
        const m = await raw.next();
        if (m.t === 'res' && m.id === id) return m;
      }
    },
    close() {
      if (ws.readyState === WebSocket.CLOSED) return Promise.resolve();
      return new Promise<void>((resolve) => {
        ws.once('close', () => resolve());
        ws.close(1000);
        setTimeout(() => { ws.terminate(); }, 2000).unref();
      });
    },
  };
  return raw;
}

/** A raw client that has done the hello exchange (with the token's mac if given). */
export async function rawReady(url: string, token?: string): Promise<RawClient> {
  const raw = await rawConnect(url);
  const hello = await raw.next();
  if (hello.t !== 'hello') throw new Error(`expected hello, got ${JSON.stringify(hello)}`);
  const challenge = hello.challenge as Uint8Array | undefined;
  const nonce = new Uint8Array(randomBytes(32));
  if (token !== undefined && challenge) raw.tagAfterReady(frameKeys(token, 'client', '/control', challenge, nonce));
  raw.send({
    t: 'hello', v: hello.v, client: 'raw-test', nonce,
    ...(token !== undefined && challenge ? { mac: proof(token, 'client', '/control', challenge) } : {}),
  });
  const ready = await raw.next();
  if (ready.t !== 'ready') throw new Error(`expected ready, got ${JSON.stringify(ready)}`);
  return raw;
}

export async function closeAllRaw(): Promise<void> {
  const all = [...rawLive];
  for (const ws of all) ws.terminate();
  await sleep(0);
}

/** Parses "tick N" lines out of console text: the N values, in order. */
export function ticks(text: string): number[] {
  const complete = text.slice(0, text.lastIndexOf('\n') + 1); // a trailing partial line may be "tick 1" of "tick 12"
  return [...complete.matchAll(/^tick (\d+)$/gm)].map((m) => Number(m[1]));
}

/** Polls `vm.info` until the VM's state is `state`. */
export async function waitState(c: ControlClient, name: string, state: string, timeoutMs = 20_000): Promise<Record<string, unknown>> {
  const t0 = Date.now();
  for (;;) {
    const info = await c.request<Record<string, unknown>>('vm.info', { name });
    if (info.state === state) return info;
    if (Date.now() - t0 > timeoutMs) throw new Error(`VM ${name} is ${String(info.state)}, not ${state}, after ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** Collects a client's console events for one VM as latin1 text. */
export function consoleOf(c: ControlClient, name: string): { text: () => string } {
  const chunks: Buffer[] = [];
  c.on('event', (event: string, vm: string | undefined, data: unknown) => {
    if (event === 'console' && vm === name) chunks.push(Buffer.from(data as Uint8Array));
  });
  return { text: () => Buffer.concat(chunks).toString('latin1') };
}
