/**
 * Starting hosts from code: in this process (`startHost`: cheapest, for tests that need no
 * process boundary) or as a `ferry host start` child process (`spawnHost`: one a test can kill).
 */
import pino from 'pino';
import { Host } from '../host/host.ts';
import { DEFAULT_LIMITS, type HostLimits } from '../host/limits.ts';
import { startHostProcess } from '../host/spawn.ts';
import type { Logger } from '../log.ts';
import { PolicyRegistry, type ConvergencePolicyFactory, type PushOrderPolicy } from '../migration/policies.ts';
import type { HostTls } from '../wire/tls.ts';
import { FerryClient, type ConnectOptions } from './client.ts';

export interface HostStartOptions {
  /** Its name (what clients and peers are told). */
  name: string;
  /** The address to listen on (default 127.0.0.1, port 0: a free one). */
  host?: string;
  port?: number;
  /** The cluster token it requires from clients and peers. */
  token?: string;
  /** Guest RAM it accepts in total (default 4 GiB). */
  maxMemory?: number;
  /** Mutual TLS (wire/tls.ts loadHostTls reads the files). */
  tls?: HostTls;
  limits?: HostLimits;
  /** Where its log goes (default: nowhere). */
  log?: Logger;
  /** More convergence policies and push orders its migrations may name (besides the built-in ones). */
  policies?: { convergence?: ConvergencePolicyFactory[]; pushOrders?: PushOrderPolicy[] };
}

export interface FerryHost {
  name: string;
  /** ws://HOST:PORT (wss:// with TLS): what clients connect to and sources migrate to. */
  url: string;
  /** A new client of its control API (the host's token by default). */
  connect(o?: ConnectOptions): Promise<FerryClient>;
  /** Stops it: its VMs end, outgoing migrations are cancelled (as `ferry host start` on SIGTERM). */
  stop(): Promise<void>;
}

/** A host in this process. */
export async function startHost(o: HostStartOptions): Promise<FerryHost> {
  const policies = new PolicyRegistry();
  for (const c of o.policies?.convergence ?? []) policies.addConvergence(c);
  for (const p of o.policies?.pushOrders ?? []) policies.addPushOrder(p);
  const h = new Host({
    policies,
    host: o.host ?? '127.0.0.1', port: o.port ?? 0, name: o.name, maxMemory: o.maxMemory ?? 4 * 1024 ** 3,
    log: o.log ?? pino({ level: 'silent' }), limits: o.limits ?? DEFAULT_LIMITS,
    ...(o.token !== undefined ? { token: o.token } : {}), ...(o.tls !== undefined ? { tls: o.tls } : {}),
  });
  const url = await h.start();
  return {
    name: o.name, url,
    connect: (c = {}) => FerryClient.connect(url, { ...(o.token !== undefined ? { token: o.token } : {}), ...c }),
    stop: () => h.stop(),
  };
}

export interface SpawnedHost extends FerryHost {
  pid: number;
  /** Kills the process with `signal` (SIGKILL: a host that dies mid-migration) and waits for it to go. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * `ferry host start` as a child process on a free loopback port; `args` are more `host start`
 * flags (a later `--listen` wins), `env` more environment (FERRY_TOKEN).
 */
export async function spawnHost(name: string, args: string[] = [], connect: ConnectOptions = {}, env: Record<string, string> = {}): Promise<SpawnedHost> {
  const h = await startHostProcess(name, args, { ...(connect.token !== undefined ? { token: connect.token } : {}), ...(connect.tls !== undefined ? { tls: connect.tls } : {}) }, env);
  await h.client.close(); // (the API's clients are its own)
  return {
    name, url: h.url, pid: h.proc.pid!,
    connect: (c = {}) => FerryClient.connect(h.url, { ...connect, ...c }),
    stop: () => h.stop(),
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (h.proc.exitCode !== null || h.proc.signalCode !== null) return;
      const gone = new Promise((r) => h.proc.once('exit', r));
      h.proc.kill(signal);
      await gone;
    },
  };
}
