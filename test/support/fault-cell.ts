// What one cell of the fault matrix (fault-matrix.test.ts) runs on: a source host `a` and a
// destination host `b` (in-process, or a real `ferry host start` process where the cell kills
// it), each with its logs kept; a monitor that samples both hosts all through the cell and
// records every moment two copies of the guest ran at once, with a timeline of what each host
// said; and, when the cell fails, a log file with all of it.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { Host } from '../../src/host/host.ts';
import type { MigrationInfo } from '../../src/migration/stats.ts';
import { ControlClient } from '../../src/wire/control-client.ts';
import { restartablePort, sleep } from './helpers.ts';
import { startHost, type StartedHost } from './host-helpers.ts';
import type { MessageRelay } from './message-relay.ts';
import type { Info } from './migration-helpers.ts';

export const LOG_DIR = '/tmp/ferry-fault-matrix';

/** A request that answers within `ms`, or undefined (a dead or restarting host answers nothing). */
async function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** One host of a cell: in-process, or a real process that can be SIGKILLed and restarted on its port. */
export class CellHost {
  private client: ControlClient | undefined;
  private proc: StartedHost | undefined;
  private host: Host | undefined;
  /** Real processes' stderr, one entry per incarnation. */
  private readonly stderr: string[] = [];
  private readonly lines: string[] = [];
  url = '';
  port = 0;
  /** Killed and not restarted yet. */
  dead = false;
  incarnations = 0;

  /** `advertise`: the URL other hosts reach this one at (`--advertise`), e.g. a relay in front of it. */
  private constructor(readonly name: 'a' | 'b', readonly real: boolean, private readonly advertise: string | undefined) {}

  static async start(name: 'a' | 'b', real: boolean, advertise?: string): Promise<CellHost> {
    const h = new CellHost(name, real, advertise);
    await h.boot();
    return h;
  }

  private async boot(): Promise<void> {
    if (this.real) {
      // A real host may be SIGKILLed and restarted at the same address: a port no outgoing connection can take meanwhile.
      const first = !this.port;
      for (let attempt = 1; ; attempt++) {
        if (first) this.port = await restartablePort();
        try {
          this.proc = await startHost({
            name: this.name, listen: `127.0.0.1:${this.port}`, timeoutMs: 30_000,
            ...(this.advertise ? { args: ['--advertise', this.advertise] } : {}),
          });
          break;
        } catch (e) {
          // Another test took the port between the probe and the listen: a first start picks another.
          if (!first || attempt >= 5 || !/EADDRINUSE/.test((e as Error).message)) throw e;
        }
      }
      this.url = this.proc.url;
      this.port = this.proc.port;
    } else {
      const log = pino({ level: 'info', base: { host: this.name } }, { write: (s: string) => { this.lines.push(s); } });
      this.host = new Host({ host: '127.0.0.1', port: 0, name: this.name, maxMemory: 1024 * 1024 * 1024, log, ...(this.advertise ? { advertise: this.advertise } : {}) });
      this.url = await this.host.start();
      this.port = Number(new URL(this.url).port);
    }
    this.client = await ControlClient.connect(this.url, { client: 'fault-matrix' });
    this.dead = false;
    this.incarnations++;
  }

  /** The control client of the live incarnation (throws while the host is dead). */
  get c(): ControlClient {
    if (!this.client || this.dead) throw new Error(`host ${this.name} is dead`);
    return this.client;
  }

  /** SIGKILL (real processes only): no goodbye, no close frames, nothing flushed. */
  kill(): void {
    if (!this.proc) throw new Error(`host ${this.name} is in-process: it cannot be SIGKILLed`);
    this.proc.proc.kill('SIGKILL');
    this.dead = true;
    void this.client?.close().catch(() => undefined);
    this.client = undefined;
  }

  /** A new incarnation of the host at the same address (after kill). */
  async restart(): Promise<void> {
    if (this.proc) {
      await this.proc.exited;
      this.stderr.push(this.proc.stderrText());
    }
    await this.boot();
  }

  /** The VMs named `vm` here and their states ([] while dead); throws if a live host does not answer. */
  async copies(vm: string): Promise<string[]> {
    if (this.dead || !this.client) return [];
    const vms = await within(this.client.request<Info[]>('vm.list'), 5_000);
    return vms.filter((v) => v.name === vm).map((v) => String(v.state));
  }

  /** This host's latest migration statistics for `vm`, or undefined if it knows none (or is dead). */
  async status(vm: string): Promise<MigrationInfo | undefined> {
    if (this.dead || !this.client) return undefined;
    try {
      return await within(this.client.request<MigrationInfo>('migrate.status', { name: vm }), 5_000);
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOMIGRATION') return undefined;
      throw e;
    }
  }

  logs(): string {
    const parts = [...this.stderr];
    if (this.proc) parts.push(this.proc.stderrText());
    return [...parts, this.lines.join('')].join('');
  }

  async stop(): Promise<void> {
    await this.client?.close().catch(() => undefined);
    this.client = undefined;
    if (this.proc) {
      this.stderr.push(this.proc.stderrText());
      await this.proc.stop('SIGKILL');
      this.proc = undefined;
    }
    if (this.host) {
      await this.host.stop().catch(() => undefined);
      this.host = undefined;
    }
    this.dead = true;
  }
}

/**
 * Samples both hosts every few milliseconds for the whole cell: b first, then a. A guest stops
 * at the source before it resumes at the destination, so a copy seen running at b and then one
 * seen running at a were running at the same time: that is recorded as a violation. Status and
 * VM-state changes of both hosts make the cell's timeline.
 */
export class Monitor {
  readonly violations: string[] = [];
  readonly timeline: string[] = [];
  private readonly t0 = Date.now();
  private stopped = false;
  private last = '';
  private readonly loop: Promise<void>;
  /** The VM's states on each host at the latest sample. */
  latest: { a: string[] | undefined; b: string[] | undefined } = { a: undefined, b: undefined };

  constructor(private readonly a: CellHost, private readonly b: CellHost, private readonly vm: string) {
    this.loop = this.run();
  }

  /** Milliseconds since the monitor started. */
  now(): number {
    return Date.now() - this.t0;
  }

  note(what: string): void {
    this.timeline.push(`+${this.now()}ms ${what}`);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const b = await this.b.copies(this.vm).catch(() => undefined);
      const a = await this.a.copies(this.vm).catch(() => undefined);
      this.latest = { a, b };
      const running = [...(a ?? []), ...(b ?? [])].filter((s) => s === 'running').length;
      if (running > 1) this.violations.push(`+${this.now()}ms two copies running: a=[${a}] b=[${b}]`);
      const [sa, sb] = await Promise.all([this.a.status(this.vm).catch(() => undefined), this.b.status(this.vm).catch(() => undefined)]);
      const desc = (h: CellHost, copies: string[] | undefined, s: MigrationInfo | undefined) =>
        `${h.name}${h.dead ? ' (dead)' : h.incarnations > 1 ? ` (incarnation ${h.incarnations})` : ''}: vm=[${copies ?? '?'}] ${s ? `${s.direction} ${s.status}${s['error-desc'] ? ` (${s['error-desc'].slice(0, 160)})` : ''}` : 'no migration'}`;
      const line = `${desc(this.a, a, sa)} | ${desc(this.b, b, sb)}`;
      if (line !== this.last) {
        this.last = line;
        this.note(line);
      }
      await sleep(15);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/** Writes what a failed cell saw (timeline, relayed messages, both hosts' logs); returns the file. */
export function writeCellLog(slug: string, parts: { monitor?: Monitor; relay?: MessageRelay; hosts: CellHost[]; error: unknown }): string {
  mkdirSync(LOG_DIR, { recursive: true });
  const file = join(LOG_DIR, `${slug}.log`);
  const trace: string[] = [];
  let frames = 0;
  for (const m of parts.relay?.seen ?? []) {
    if (m.t === 'page-frame') {
      frames++;
      continue;
    }
    if (frames) trace.push(`  ${frames} page frame(s)`);
    frames = 0;
    if (m.t !== 'hello' && m.t !== 'ready' && m.t !== 'other') trace.push(`  ${m.dir === 'up' ? 'a -> b' : 'b -> a'} ${m.t}`);
  }
  if (frames) trace.push(`  ${frames} page frame(s)`);
  const text = [
    `error: ${String((parts.error as Error)?.stack ?? parts.error)}`,
    '', 'timeline:', ...(parts.monitor?.timeline ?? []),
    '', 'relayed (control messages; page frames counted):', ...trace,
    ...parts.hosts.flatMap((h) => ['', `host ${h.name} log:`, h.logs()]),
  ].join('\n');
  writeFileSync(file, text);
  return file;
}

/** The log lines of a host worth quoting in a failure: warnings and errors, and migration milestones. */
export function keyLogLines(h: CellHost, max = 12): string[] {
  const out: string[] = [];
  for (const raw of h.logs().split('\n')) {
    if (!raw.startsWith('{')) continue;
    try {
      const l = JSON.parse(raw) as { level: number; msg: string; err?: unknown };
      if (l.level < 40 && !/migration|post-copy|outcome|recover/i.test(l.msg)) continue;
      const err = l.err === undefined ? '' : `: ${typeof l.err === 'string' ? l.err : (l.err as { message?: string }).message ?? JSON.stringify(l.err)}`;
      out.push(`${h.name}: ${l.msg}${err}`.slice(0, 300));
    } catch { /* not a log line */ }
  }
  return out.slice(-max);
}
