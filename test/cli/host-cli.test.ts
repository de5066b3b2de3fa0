// `ferry vm ...` and `ferry monitor` end to end: CLI child processes against a real host child
// process on a random port.
import { createServer } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/wire/control-client.ts';
import type { MigrationInfo } from '../../src/migration/stats.ts';
import { MiB, runCli, sleep, waitFor, type CliResult } from '../support/helpers.ts';
import { killAllSpawned, pidAlive, spawnCli, startHost, ticks, TOKEN, type StartedHost } from '../support/host-helpers.ts';
import { createParams, finalDigest, oracleDigest, type GuestSpec } from '../support/migration-helpers.ts';

// Every CLI run costs a node + tsx start-up (~0.7 s idle, several seconds on a loaded 2-core box).
const T = 60_000;
type Info = Record<string, unknown>;

let host: StartedHost;
const shared: StartedHost[] = [];

/** `ferry --host <the shared host> ARGS...` */
function ferry(args: string[], input?: string): Promise<CliResult> {
  return runCli(['--host', host.url, ...args], T, input);
}

/** Runs a CLI child with extra environment (FERRY_HOST, FERRY_TOKEN) and waits for it. */
async function ferryEnv(args: string[], env: Record<string, string>, input?: string): Promise<CliResult> {
  const p = spawnCli(args, env);
  if (input !== undefined) p.proc.stdin!.end(input, 'latin1');
  const code = await p.exited;
  return { code, signal: null, stdout: p.stdoutText(), stderr: p.stderrText() };
}

function ok(r: CliResult): CliResult {
  expect(r.code, `exit ${r.code}; stderr: ${r.stderr}`).toBe(0);
  expect(r.stderr).toBe('');
  return r;
}

beforeAll(async () => {
  host = await startHost({ name: 'h-cli' });
  shared.push(host);
}, T);

afterEach(async () => {
  const { survivors } = await killAllSpawned(shared);
  expect(survivors).toEqual([]);
  // Whatever a test left on the shared host goes (in process: cheaper than more CLI runs).
  if (host?.isRunning()) {
    const c = await ControlClient.connect(host.url);
    for (const v of await c.request<Info[]>('vm.list')) await c.request('vm.destroy', { name: v.name });
    await c.close();
  }
}, T);

afterAll(async () => {
  if (!host) return;
  expect(await host.stop('SIGINT')).toBe(0);
  expect(pidAlive(host.pid)).toBe(false);
  expect(host.stderrText().split('\n').filter((l) => l.includes('"level":50'))).toEqual([]);
}, T);

describe('the reviewer script', () => {
  it('create --start, list --json, console, pause, resume, digest, destroy', async () => {
    expect(ok(await ferry(['vm', 'create', 'c1', '--program', 'counter', '--start'])).stdout).toBe('c1: running on host h-cli\n');

    const list = JSON.parse(ok(await ferry(['vm', 'list', '--json'])).stdout) as Info[];
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ name: 'c1', state: 'running', program: 'counter', host: 'h-cli', memory: 128 * 1024 * 1024 });

    // Console: output streams to stdout; SIGINT detaches with exit 0 and leaves the VM running.
    const con = spawnCli(['--host', host.url, 'vm', 'console', 'c1']);
    await waitFor(() => ticks(con.stdoutText()).length >= 2 || !con.isRunning(), 'two tick lines', 15_000, 20);
    expect(await con.stop('SIGINT')).toBe(0);
    const t = ticks(con.stdoutText());
    expect(t.length).toBeGreaterThanOrEqual(2);
    expect(t).toEqual(t.map((_, i) => i + 1)); // history first, then live: 1, 2, 3, ...
    expect(con.stdoutText()).toMatch(/^(tick \d+\n)+$/);
    expect(pidAlive(con.pid)).toBe(false);

    expect(ok(await ferry(['vm', 'pause', 'c1'])).stdout).toBe('c1: paused\n');
    const details = ok(await ferry(['vm', 'info', 'c1'])).stdout;
    expect(details).toMatch(/^name\s+c1$/m);
    expect(details).toMatch(/^host\s+h-cli$/m);
    expect(details).toMatch(/^state\s+paused$/m);
    expect(details).toMatch(/^program\s+counter$/m);
    expect(ok(await ferry(['vm', 'resume', 'c1'])).stdout).toBe('c1: running\n');

    const digest = ok(await ferry(['vm', 'digest', 'c1']));
    expect(digest.stdout).toMatch(/^digest: [0-9a-f]{64}\n$/);
    const table = ok(await ferry(['vm', 'list'])).stdout;
    expect(table.split('\n')[0]).toMatch(/^NAME\s+STATE\s+PROGRAM\s+MEMORY\s+INSTRET\s+MIPS\s+PC$/);
    expect(table.split('\n')[1]).toMatch(/^c1\s+running\s+counter\s+128 MiB\s+\d+\s+[\d.]+\s+0x[0-9a-f]{8}$/); // resumed after the digest

    expect(ok(await ferry(['vm', 'destroy', 'c1'])).stdout).toBe('c1: destroyed\n');
    const c = await ControlClient.connect(host.url);
    expect(await c.request('vm.list')).toEqual([]);
    await c.close();
  }, T);
});

describe('errors and exit codes', () => {
  it('an unknown VM exits 1 with one line on stderr; bad usage exits 2', async () => {
    const [nope, noProgram, both, badMem, dup] = await Promise.all([
      ferry(['vm', 'info', 'nope']),
      ferry(['vm', 'create', 'x']),
      ferry(['vm', 'create', 'x', '--program', 'hello', '--elf', 'guest-programs/build/hello.elf']),
      ferry(['vm', 'create', 'x', '--program', 'hello', '--memory', '12Q']),
      ferry(['vm', 'pause', 'nope']),
    ]);
    expect(nope.code).toBe(1);
    expect(nope.stdout).toBe('');
    expect(nope.stderr).toBe('ferry: no VM named "nope" on host h-cli\n');
    expect(dup.code).toBe(1);
    expect(dup.stderr).toBe('ferry: no VM named "nope" on host h-cli\n');
    for (const r of [noProgram, both]) {
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe('ferry: give exactly one of --program P or --elf F\n');
    }
    expect(badMem.code).toBe(2);
    expect(badMem.stderr).toMatch(/^ferry: invalid memory size "12Q"/);
    // Nothing was created by any of them; an empty host lists as "no VMs".
    expect(ok(await ferry(['vm', 'list'])).stdout).toBe('no VMs\n');
  }, T);

  it('a VM name that exists already, or a halted VM started again, fails with exit 1', async () => {
    ok(await ferry(['vm', 'create', 'd1', '--program', 'hello', '--memory', '4M']));
    const [dup, stop] = await Promise.all([
      ferry(['vm', 'create', 'd1', '--program', 'hello', '--memory', '4M']),
      ferry(['vm', 'stop', 'd1', '--json']),
    ]);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toBe('ferry: a VM named "d1" already exists on host h-cli\n');
    expect(stop.code, stop.stderr).toBe(0);
    expect(JSON.parse(stop.stdout)).toMatchObject({ name: 'd1', state: 'halted', haltReason: 'stopped' });
    const again = await ferry(['vm', 'start', 'd1']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^ferry: VM "d1" has halted; it cannot run again\n$/);
  }, T);

  it('an unreachable host exits 1 with a clear message', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer();
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const r = await runCli(['--host', `ws://127.0.0.1:${port}`, 'vm', 'list']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^ferry: cannot reach ferry host at ws://127\\.0\\.0\\.1:${port}(/control)?: .*ECONNREFUSED.*\\n$`));
    const bad = await runCli(['--host', 'http://127.0.0.1:1', 'vm', 'list']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/^ferry: host URL must start with ws:\/\/ or wss:\/\/ \(got http:\/\/127\.0\.0\.1:1\)\n$/);
  }, T);
});

describe('more of the CLI', () => {
  it('FERRY_HOST works instead of --host; --elf uploads a file', async () => {
    const created = await ferryEnv(['vm', 'create', 'e1', '--elf', 'guest-programs/build/hello.elf', '--memory', '4M', '--start', '--json'], { FERRY_HOST: host.url });
    expect(created.code, created.stderr).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ name: 'e1', program: 'elf:hello.elf', host: 'h-cli' });
    let info: Info = {};
    for (let i = 0; i < 50; i++) {
      const r = await ferryEnv(['vm', 'info', 'e1', '--json'], { FERRY_HOST: host.url });
      expect(r.code, r.stderr).toBe(0);
      info = JSON.parse(r.stdout) as Info;
      if (info.state === 'halted') break;
    }
    expect(info).toMatchObject({ state: 'halted', exitCode: 0 });
    // --host wins over FERRY_HOST.
    const both = await ferryEnv(['--host', host.url, 'vm', 'list', '--json'], { FERRY_HOST: 'ws://127.0.0.1:1' });
    expect(both.code, both.stderr).toBe(0);
    expect((JSON.parse(both.stdout) as Info[]).map((v) => v.name)).toEqual(['e1']);
  }, T);

  it('vm console of echo: piped stdin reaches the guest and comes back', async () => {
    ok(await ferry(['vm', 'create', 'echo1', '--program', 'echo', '--memory', '8M', '--start']));
    const con = spawnCli(['--host', host.url, 'vm', 'console', 'echo1']);
    await waitFor(() => con.stdoutText().includes('echo: ready\n') || !con.isRunning(), 'echo: ready', 15_000, 20);
    con.proc.stdin!.write('hello through the console\n');
    await waitFor(() => con.stdoutText().includes('hello through the console\n') || !con.isRunning(), 'the echo', 15_000, 20);
    con.proc.stdin!.write('second line\n');
    await waitFor(() => con.stdoutText().includes('second line\n') || !con.isRunning(), 'the second echo', 15_000, 20);
    expect(await con.stop('SIGINT')).toBe(0);
    expect(con.stdoutText()).toBe('echo: ready\nhello through the console\nsecond line\n');
  }, T);

  it('vm console ends by itself when the VM is destroyed', async () => {
    ok(await ferry(['vm', 'create', 'gone', '--program', 'counter', '--memory', '4M', '--arg', 'period_ms=50', '--start']));
    const con = spawnCli(['--host', host.url, 'vm', 'console', 'gone']);
    await waitFor(() => ticks(con.stdoutText()).length >= 1 || !con.isRunning(), 'a tick', 15_000, 20);
    ok(await ferry(['vm', 'destroy', 'gone']));
    const code = await Promise.race([con.exited, new Promise<string>((r) => setTimeout(() => r('still running'), 5_000))]);
    expect(code).toBe(0);
    expect(con.stderrText()).toContain('[gone destroyed]');
  }, T);

  it('a monitor session fed through stdin', async () => {
    const script = [
      'create m1 counter memory=16M period_ms=50 start',
      'info vms',
      'stop m1',
      'info vm m1',
      'cont m1',
      'digest m1',
      'info registers m1',
      'info vm nope',
      'frobnicate',
      'quit',
      '',
    ].join('\n');
    const r = await ferry(['monitor'], script);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const out = r.stdout.replace(/\(ferry\) /g, '');
    const expected: RegExp[] = [
      /^m1: running$/m,
      /^NAME\s+STATE\s+PROGRAM\s+MEMORY\s+INSTRET\s+MIPS\s+PC$/m,
      /^m1\s+running\s+counter\s+16 MiB\s/m,
      /^m1: paused$/m,
      /^state\s+paused$/m,
      /^m1: running$/m,
      /^digest: [0-9a-f]{64}$/m,
      /^pc  0x[0-9a-f]{8}   \(running, live sample\)$/m,
      /^x0\/zero\s+0x00000000\s+x1\/ra\s+0x[0-9a-f]{8}/m,
      /^error: no VM named "nope" on host h-cli$/m,
      /^unknown command "frobnicate"; try "help"$/m,
    ];
    let at = 0;
    for (const re of expected) {
      const m = re.exec(out.slice(at));
      expect(m, `${re} after offset ${at} in:\n${out}`).not.toBeNull();
      at += m!.index + m![0].length;
    }
    // quit leaves the VM running.
    const list = JSON.parse(ok(await ferry(['vm', 'list', '--json'])).stdout) as Info[];
    expect(list.map((v) => [v.name, v.state, v.memory])).toEqual([['m1', 'running', 16 * 1024 * 1024]]);
  }, T);
});

describe('a host that requires a token', () => {
  let dir: string;
  let th: StartedHost;
  beforeAll(async () => {
    th = await startHost({ name: 'h-tok', token: TOKEN });
    shared.push(th);
    dir = mkdtempSync(join(tmpdir(), 'ferry-cli-test-'));
    writeFileSync(join(dir, 'token'), `${TOKEN}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'open-token'), `${TOKEN}\n`, { mode: 0o644 });
  }, T);
  afterAll(async () => {
    if (th) expect(await th.stop('SIGTERM')).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  }, T);

  it('FERRY_TOKEN or --token-file get in; without one the CLI exits 1 saying how to pass it', async () => {
    const [env, file, none, wrong] = await Promise.all([
      ferryEnv(['--host', th.url, 'vm', 'list', '--json'], { FERRY_TOKEN: TOKEN }),
      ferryEnv(['--host', th.url, '--token-file', join(dir, 'token'), 'vm', 'list', '--json'], {}),
      ferryEnv(['--host', th.url, 'vm', 'list'], {}),
      ferryEnv(['--host', th.url, 'vm', 'list'], { FERRY_TOKEN: 'not-the-token-but-long-enough' }),
    ]);
    for (const r of [env, file]) {
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual([]);
    }
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/^ferry: host ws:\/\/127\.0\.0\.1:\d+(\/control)? requires a cluster token: pass --token-file F or set FERRY_TOKEN\n$/);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^ferry: host .*: authentication failed: wrong or missing cluster token\n$/);
    // Both refusals are logged by the host that refused them (the one without a token too).
    const refusals = () => th.stderrText().split('\n').filter((l) => l.includes('hello refused') && l.includes('wrong or missing cluster token')).length;
    await waitFor(() => refusals() >= 2, 'the host to log both', 5_000);
  }, T);

  it('a token file other users can read is refused, saying how to fix it', async () => {
    const r = await ferryEnv(['--host', th.url, '--token-file', join(dir, 'open-token'), 'vm', 'list'], {});
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`token file ${join(dir, 'open-token')} is readable by other users: chmod 600`);
  }, T);
});

describe('ferry migrate pause / recover', () => {
  let hb: StartedHost;
  beforeAll(async () => {
    hb = await startHost({ name: 'h-cli-b' });
    shared.push(hb);
  }, T);
  afterAll(async () => {
    if (hb) expect(await hb.stop('SIGTERM')).toBe(0);
  }, T);

  it('--help lists them; without such a migration they exit 1 saying so; the monitor verbs too', async () => {
    const [help, migrateHelp, recover, recoverNoWait, pause, mon] = await Promise.all([
      ferry(['migration', '--help']),
      ferry(['migrate', '--help']),
      ferry(['migration', 'recover', 'nope']),
      ferry(['migration', 'recover', 'nope', '--no-wait', '--json']),
      ferry(['migration', 'pause', 'nope']),
      ferry(['monitor'], ['migrate_recover', 'migrate_recover nope', 'migrate_pause', 'migrate_pause nope', 'help migrate_recover', 'quit', ''].join('\n')),
    ]);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^ {2}pause \[options\] <name> +Drop the link of a post-copy migration/m);
    expect(help.stdout).toMatch(/^ {2}recover \[options\] <name> +Reconnect a postcopy-paused migration/m);
    expect(migrateHelp.stdout).toMatch(/^ {2}--no-auto-recover +post-copy: when the link drops, wait for "ferry\s+migration\s+recover"/m);
    for (const r of [recover, recoverNoWait, pause]) {
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe('ferry: no outgoing migration of "nope" is in progress on this host\n');
    }
    expect(mon.code, mon.stderr).toBe(0);
    const out = mon.stdout.replace(/\(ferry\) /g, '');
    expect(out).toMatch(/^error: usage: migrate_recover NAME$/m);
    expect(out).toMatch(/^error: usage: migrate_pause NAME$/m);
    expect(out.match(/^error: no outgoing migration of "nope" is in progress on this host$/gm)).toHaveLength(2);
    expect(out).toMatch(/^migrate_recover NAME\n {2}reconnect a postcopy-paused migration now/m);
  }, T);

  it('vm console says where its VM went when it migrates away, and ends', async () => {
    ok(await ferry(['vm', 'create', 'mover', '--program', 'counter', '--memory', '4M', '--arg', 'period_ms=50', '--start']));
    const con = spawnCli(['--host', host.url, 'vm', 'console', 'mover']);
    await waitFor(() => ticks(con.stdoutText()).length >= 1 || !con.isRunning(), 'a tick', 15_000, 20);
    ok(await ferry(['migrate', 'mover', '--to', hb.url]));
    const code = await Promise.race([con.exited, new Promise<string>((r) => setTimeout(() => r('still running'), 5_000))]);
    expect(code).toBe(0);
    expect(con.stderrText()).toContain(`[mover migrated to ${hb.url}; "ferry --host ${hb.url} vm console mover" follows it there]`);
    expect(con.stderrText()).not.toContain('destroyed');
    const cb = await ControlClient.connect(hb.url);
    await cb.request('vm.destroy', { name: 'mover' });
    await cb.close();
  }, T);

  it('a post-copy migration paused and recovered through the CLI reaches the unmigrated digest', async () => {
    const g: GuestSpec = { program: 'memstress', memory: 32 * MiB, args: ['ws_mib=8'], insnLimit: 200_000_000 };
    const oracle = oracleDigest(g);
    const ca = await ControlClient.connect(host.url);
    const cb = await ControlClient.connect(hb.url);
    try {
      await ca.request('vm.create', createParams('pr1', g));
      // Through the API for pushDelayMs: the background push waits 5 s, so the migration is
      // surely still in post-copy when the `ferry migrate pause` child gets there.
      await ca.request('migrate.start', { name: 'pr1', to: hb.url, mode: 'postcopy', pushDelayMs: 5_000 });
      for (let t0 = Date.now(); ; await sleep(10)) {
        const st = await ca.request<MigrationInfo>('migrate.status', { name: 'pr1' });
        if (st.status === 'postcopy-active') break;
        if (Date.now() - t0 > 5_000) throw new Error(`no postcopy-active: ${JSON.stringify(st)}`);
      }
      expect(ok(await ferry(['migration', 'pause', 'pr1'])).stdout).toBe('pr1: migration postcopy-paused; "ferry migration recover pr1" reconnects it\n');

      const [json, human, again, onDest] = await Promise.all([
        ferry(['migration', 'status', 'pr1', '--json']),
        ferry(['migration', 'status', 'pr1']),
        ferry(['migration', 'pause', 'pr1']),
        runCli(['--host', hb.url, 'migration', 'recover', 'pr1'], T),
      ]);
      expect(JSON.parse(ok(json).stdout)).toMatchObject({ vm: 'pr1', direction: 'outgoing', status: 'postcopy-paused', 'error-desc': 'link lost: post-copy paused by command' });
      expect(ok(human).stdout).toMatch(/^pr1: migration postcopy-paused \(to ws:\/\/127\.0\.0\.1:\d+\): link lost: post-copy paused by command; total /);
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/^ferry: the migration of "pr1" is postcopy-paused; .*\n$/);
      expect(onDest.code).toBe(1);
      expect(onDest.stderr).toMatch(/^ferry: "pr1" is arriving here from .*: run "ferry migration recover" against the source host\n$/);

      const rec = ok(await ferry(['migration', 'recover', 'pr1', '--json']));
      const s = JSON.parse(rec.stdout) as MigrationInfo;
      expect(s).toMatchObject({ vm: 'pr1', direction: 'outgoing', mode: 'postcopy', status: 'completed', 'postcopy-recoveries': 1 });
      expect(s['postcopy-paused-ms']).toBeGreaterThan(0);
      const after = ok(await ferry(['migration', 'status', 'pr1'])).stdout;
      expect(after).toMatch(/^pr1: migration completed \(to ws:\/\/127\.0\.0\.1:\d+\): .*, 1 recovery, paused [\d.]+ ms(, \d+ pages resent)?\n$/);
      expect(await finalDigest(cb, 'pr1')).toBe(await oracle);
      await cb.request('vm.destroy', { name: 'pr1' });
    } finally {
      await Promise.all([ca.close(), cb.close()]);
    }
  }, T);
});
