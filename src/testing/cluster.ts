/**
 * A cluster for a migration test: named hosts (in this process, or as processes a test can kill
 * and restart on the same address), links between them that the test shapes and breaks (a
 * message relay: relay.ts), deterministic guests and the digest an unmigrated run of them ends
 * with. Everything a cluster started, `stop()` ends.
 */
import { FerryClient, type CreateVmOptions } from '../api/client.ts';
import { startHost, spawnHost, type FerryHost, type HostStartOptions, type SpawnedHost } from '../api/host.ts';
import { FerryError } from '../errors.ts';
import { loadProgram } from '../vm/programs.ts';
import { Vm } from '../vm/vm.ts';
import { restartablePort } from './ports.ts';
import { startMessageRelay, type LinkShape, type MessageRelay, type RelayAction, type RelayedMessage } from './relay.ts';

/** A deterministic guest (--icount): the same run to the same instruction count ends with the same digest. */
export interface Guest {
  program: string;
  /** Bytes of RAM. */
  memory: number;
  args?: string[];
  /** It halts after exactly this many instructions. */
  insnLimit: number;
}

/** `createVm` options for `guest` under `name`, started. */
export function guestVm(name: string, guest: Guest): CreateVmOptions {
  return { name, program: guest.program, memory: guest.memory, args: guest.args ?? [], icount: true, insnLimit: guest.insnLimit, start: true };
}

/** The digest `guest` ends with when nothing migrates it (run here, in a VM of this process). */
export async function referenceDigest(guest: Guest, timeoutMs = 120_000): Promise<string> {
  const vm = Vm.create({ elf: loadProgram(guest.program).elf, memory: guest.memory, icount: true, insnLimit: guest.insnLimit, args: guest.args ?? [] });
  let timer: NodeJS.Timeout | undefined;
  try {
    vm.start();
    await Promise.race([
      vm.waitHalted(),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new FerryError('ETIMEDOUT', `the reference run of ${guest.program} did not halt within ${timeoutMs} ms`)), timeoutMs); }),
    ]);
    return await vm.digest();
  } finally {
    clearTimeout(timer);
    await vm.destroy();
  }
}

export interface TestHost {
  name: string;
  /** Where it listens (the same across a restart). */
  url: string;
  /** A client of its control API (a new one after a restart). */
  readonly client: FerryClient;
  /** Whether it is a process (it can be killed and restarted). */
  readonly isProcess: boolean;
  /** SIGKILL (processes only): no goodbye, nothing flushed, as a host that crashes. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same address, as a new incarnation (processes only). */
  restart(): Promise<void>;
}

/** Breaking a link at a message: what the relay does with it ('cut' refuses new connections until `restore`). */
export type LinkAction = 'drop' | 'cut' | 'cut-silent' | 'freeze' | ((m: RelayedMessage) => void);

export interface TestLink extends MessageRelay {
  /**
   * At the first message of type `t` (a migration message: setup, round-end, state, resumed, ...;
   * 'page-frame' for pages) going `dir` (up: towards the link's host; default either), do `what`: a
   * relay action, or a function (kill a host there) after which the message goes on.
   */
  at(t: string, what: LinkAction, o?: { dir?: 'up' | 'down'; times?: number }): void;
  /** Undoes a cut or a freeze. */
  restore(): Promise<void>;
}

export interface TestCluster {
  host(name: string): TestHost;
  /** A link to `name`: migrate to `link.url` instead of the host's own URL to go through it. */
  link(name: string, shape?: LinkShape): Promise<TestLink>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  hosts: string[];
  /** Which hosts run as processes (true: all). In-process hosts start faster; only processes can be killed. */
  processes?: boolean | string[];
  /** A cluster token every host requires. */
  token?: string;
  /** Policies the in-process hosts know besides the built-in ones (a process host loads them with --policy-module). */
  policies?: HostStartOptions['policies'];
}

export async function startCluster(o: ClusterOptions): Promise<TestCluster> {
  const hosts = new Map<string, TestHost>();
  const relays: MessageRelay[] = [];
  const stops: (() => Promise<void>)[] = [];
  const asProcess = (name: string) => o.processes === true || (Array.isArray(o.processes) && o.processes.includes(name));
  const token = o.token !== undefined ? { token: o.token } : {};
  try {
    await Promise.all(o.hosts.map(async (name) => {
      if (!asProcess(name)) {
        const h: FerryHost = await startHost({ name, ...token, ...(o.policies ? { policies: o.policies } : {}) });
        const client = await h.connect();
        stops.push(async () => { await client.close().catch(() => undefined); await h.stop(); });
        hosts.set(name, {
          name, url: h.url, client, isProcess: false,
          kill: () => Promise.reject(new FerryError('EINVAL', `host ${name} runs in this process: start it with processes: ['${name}'] to kill it`)),
          restart: () => Promise.reject(new FerryError('EINVAL', `host ${name} runs in this process: it cannot be restarted`)),
        });
        return;
      }
      const port = await restartablePort();
      const env: Record<string, string> = o.token !== undefined ? { FERRY_TOKEN: o.token } : {};
      let proc: SpawnedHost | undefined;
      let client: FerryClient | undefined;
      const launch = async () => {
        proc = await spawnHost(name, ['--listen', `127.0.0.1:${port}`], token, env);
        client = await proc.connect();
      };
      await launch();
      const th: TestHost = {
        name, url: proc!.url, isProcess: true,
        get client() { return client!; },
        async kill(signal: NodeJS.Signals = 'SIGKILL') {
          await client?.close().catch(() => undefined);
          await proc!.kill(signal);
        },
        async restart() {
          await launch();
        },
      };
      hosts.set(name, th);
      stops.push(async () => { await client?.close().catch(() => undefined); await proc?.kill('SIGTERM'); });
    }));
  } catch (e) {
    await Promise.all(stops.map((s) => s().catch(() => undefined)));
    throw e;
  }
  const host = (name: string): TestHost => {
    const h = hosts.get(name);
    if (!h) throw new FerryError('EINVAL', `no host named ${name} in this cluster (${[...hosts.keys()].join(', ')})`);
    return h;
  };
  return {
    host,
    async link(name, shape) {
      const relay = await startMessageRelay(host(name).url);
      relays.push(relay);
      if (shape) relay.shape(shape);
      const link: TestLink = Object.assign(relay, {
        at(t: string, what: LinkAction, opts: { dir?: 'up' | 'down'; times?: number } = {}) {
          const action: RelayAction = typeof what === 'function' ? 'pass' : what === 'cut' ? 'cut-refuse' : what;
          relay.on({
            match: (m) => m.t === t && (opts.dir === undefined || m.dir === opts.dir),
            action,
            ...(typeof what === 'function' ? { then: what } : {}),
            ...(opts.times !== undefined ? { times: opts.times } : {}),
          });
        },
        restore: () => relay.heal(),
      });
      return link;
    },
    async stop() {
      await Promise.all(relays.map((r) => r.close().catch(() => undefined)));
      await Promise.all(stops.map((s) => s().catch(() => undefined)));
    },
  };
}
