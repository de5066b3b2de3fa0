// `ferry migrate` as its users expect it, against two real host processes: Ctrl-C cancels a
// migration before its switch-over (and says so), explains after it why it cannot, and with
// --detach leaves it running; any VM name can be migrated; errors are said once; a command that
// fails ends; a closed stdout ends a command quietly.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/wire/control-client.ts';
import type { MigrationInfo } from '../../src/migration/stats.ts';
import { eventually, MiB, onPath, runCli, runProcess } from '../support/helpers.ts';
import { killAllSpawned, spawnCli, startHost, type Spawned, type StartedHost } from '../support/host-helpers.ts';
import { createParams, finalDigest, oracleDigest, type GuestSpec } from '../support/migration-helpers.ts';

const T = 60_000;
let ha: StartedHost;
let hb: StartedHost;
let ca: ControlClient;
let cb: ControlClient;

beforeAll(async () => {
  [ha, hb] = await Promise.all([startHost({ name: 'mc-a' }), startHost({ name: 'mc-b' })]);
  [ca, cb] = await Promise.all([ControlClient.connect(ha.url), ControlClient.connect(hb.url)]);
}, T);

afterEach(async () => {
  const { survivors } = await killAllSpawned([ha, hb]);
  expect(survivors).toEqual([]);
  for (const c of [ca, cb]) for (const v of await c.request<{ name: string }[]>('vm.list')) await c.request('vm.destroy', { name: v.name });
}, T);

afterAll(async () => {
  await Promise.all([ca?.close(), cb?.close()]);
  for (const h of [ha, hb]) if (h) expect(await h.stop('SIGTERM')).toBe(0);
}, T);

/** A guest that keeps 64 MiB dirty, so a migration capped at 16 MB/s takes seconds. */
async function bigGuest(name: string): Promise<void> {
  await ca.request('vm.create', { name, program: 'memstress', memory: 128 * MiB, args: ['ws_mib=64'], start: true });
  await eventually(async () => ((await ca.request<{ instret: number }>('vm.info', { name })).instret > 50_000_000 ? true : undefined), 'the guest to touch its working set');
}

function migrateChild(name: string, extra: string[], bandwidth = '16M'): Spawned {
  return spawnCli(['--host', ha.url, 'migrate', name, '--to', hb.url, '--max-bandwidth', bandwidth, ...extra]);
}

async function statusOn(c: ControlClient, name: string): Promise<MigrationInfo> {
  return c.request<MigrationInfo>('migrate.status', { name });
}

function waitStatus(name: string, want: (s: MigrationInfo) => boolean, what: string): Promise<MigrationInfo> {
  return eventually(async () => {
    const s = await statusOn(ca, name).catch(() => undefined);
    return s && want(s) ? s : undefined;
  }, what, 30_000, 50);
}

describe('Ctrl-C on ferry migrate', () => {
  it('before the switch-over cancels the migration after saying so; the VM runs on at the source', async () => {
    await bigGuest('cc1');
    const child = migrateChild('cc1', []);
    await waitStatus('cc1', (s) => s.status === 'active' && s['transferred-bytes'] > 0, 'pre-copy to be sending');
    child.proc.kill('SIGINT');
    expect(await child.exited).toBe(1);
    const err = child.stderrText();
    expect(err).toMatch(/^cc1: cancelling the migration \(Ctrl-C again stops waiting for the cancel\)\n/);
    expect(err).toMatch(/\nferry: cc1: migration cancelled: cancelled by user\n$/);
    expect(child.stdoutText()).toBe('');
    expect((await statusOn(ca, 'cc1')).status).toBe('cancelled');
    expect((await ca.request<{ state: string }>('vm.info', { name: 'cc1' })).state).toBe('running');
    expect(await cb.request('vm.list')).toEqual([]);
  }, T);

  it('in post-copy explains why it cannot cancel and goes on; a second Ctrl-C stops watching, and the migration completes', async () => {
    await bigGuest('cc2');
    const child = migrateChild('cc2', ['--mode', 'postcopy'], '20M'); // a push of 64 MiB at 20 MB/s: seconds for two Ctrl-Cs, then the end
    await waitStatus('cc2', (s) => s.status === 'postcopy-active', 'post-copy');
    child.proc.kill('SIGINT');
    await eventually(async () => (child.stderrText().includes('cannot be cancelled') ? true : undefined), 'the explanation', 10_000);
    expect(child.isRunning()).toBe(true);
    expect(child.stderrText()).toMatch(/^cc2: the migration is past its switch-over \(postcopy-active\): the guest runs on the destination, which still needs pages from here, so it cannot be cancelled\. It goes on without this command: Ctrl-C again stops watching/);
    child.proc.kill('SIGINT');
    expect(await child.exited).toBe(1);
    expect(child.stderrText()).toMatch(/\nferry: stopped watching; the migration goes on \(postcopy-(active|paused)\): "ferry migration status cc2" follows it\n$/);
    const final = await waitStatus('cc2', (s) => s.status === 'completed' || s.status === 'failed', 'the migration to end');
    expect(final.status).toBe('completed');
    expect((await cb.request<{ state: string }>('vm.info', { name: 'cc2' })).state).toBe('running');
  }, T);

  it('with --detach leaves the migration running and exits 0', async () => {
    await bigGuest('cc3');
    const child = migrateChild('cc3', ['--detach']);
    await waitStatus('cc3', (s) => s.status === 'active' && s['transferred-bytes'] > 0, 'pre-copy to be sending');
    child.proc.kill('SIGINT');
    expect(await child.exited).toBe(0);
    expect(child.stderrText()).toMatch(/^cc3: detached; the migration goes on \(active\): "ferry migration status cc3" follows it\n$/);
    expect((await statusOn(ca, 'cc3')).status).toBe('active');
    await ca.request('migrate.cancel', { name: 'cc3' }); // (it would take long at 16 MB/s: it was running, which is what counts)
    await waitStatus('cc3', (s) => s.status === 'cancelled', 'the cancel');
  }, T);
});

describe.skipIf(!onPath('script'))('ferry migrate on a terminal (a pty from util-linux script)', () => {
  it('redraws one live line in place while it runs (round, what is left of it, a share of it), then prints the summary and a statistics table', async () => {
    // 8 MiB rewritten at 4 MiB/s over 8 MB/s: rounds of a second, then half a second, then it converges.
    await ca.request('vm.create', { name: 'tty1', program: 'memstress', memory: 32 * MiB, args: ['ws_mib=8', 'rate_mib_s=4'], start: true });
    await new Promise((r) => setTimeout(r, 2500)); // (it touches its set in two seconds)
    const cmd = `${process.execPath} --import tsx src/cli.ts --host ${ha.url} migrate tty1 --to ${hb.url} --max-bandwidth 8M --xbzrle off --compress off`;
    const r = await runProcess('script', ['-qec', cmd, '/dev/null'], 60_000);
    expect(r.code, r.stdout).toBe(0);
    const out = Buffer.from(r.stdout, 'latin1').toString('utf8'); // (runProcess keeps bytes as latin1; the table draws in UTF-8)
    // The live line: drawn over itself (carriage return, erase line), with the round and a share of its pages.
    expect(out).toMatch(/\r\x1b\[Ktty1 active: round \d+ \[[#-]{20}\] \d+% [\d.]+ [KM]iB left in it(, ~[\d.]+ (ms|s) left)?, [\d.]+ [KM]iB sent/);
    expect(out).not.toMatch(/round 0 \[#{20}\] 100%/); // (it used to read 100 % from the start of round 0)
    expect(out).toMatch(/tty1: migration completed \(to ws:\/\/127\.0\.0\.1:\d+\): /);
    expect(out).toMatch(/│ total time\s+│ [\d.]+ (ms|s)\s+│/);
    expect(out).toMatch(/│ downtime\s+│ [\d.]+ ms\s+│/);
    expect(out).toMatch(/│ sent\s+│ [\d.]+ MiB \(pre-copy /);
  }, T);
});

describe('ferry migrate and names', () => {
  it('a VM named like a migration verb migrates; without --to the error points to "ferry migration"', async () => {
    await ca.request('vm.create', { name: 'status', program: 'counter', memory: 4 * MiB, start: true });
    const noTo = await runCli(['--host', ha.url, 'migrate', 'status']);
    expect(noTo.code).toBe(2);
    expect(noTo.stderr).toBe('ferry: --to ws://HOST:PORT is required (to status a migration: "ferry migration status NAME")\n');
    const r = await runCli(['--host', ha.url, 'migrate', 'status', '--to', hb.url]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^status: migration completed \(to ws:\/\/127\.0\.0\.1:\d+\): /);
    expect((await cb.request<{ state: string }>('vm.info', { name: 'status' })).state).toBe('running');
    const st = await runCli(['--host', ha.url, 'migration', 'status', 'status']);
    expect(st.stdout).toMatch(/^status: migration completed/);
  }, T);
});

describe('ferry migrate --name', () => {
  it('renames the VM on the destination, in pre-copy and in post-copy, to the unmigrated digest; a taken name is refused and the VM stays', async () => {
    const guest: GuestSpec = { program: 'memstress', memory: 32 * MiB, args: ['ws_mib=4'], insnLimit: 1_500_000_000 };
    const oracle = oracleDigest(guest);
    for (const mode of ['precopy', 'postcopy']) {
      const from = `orig-${mode}`;
      const to = `renamed-${mode}`;
      await ca.request('vm.create', createParams(from, guest));
      const r = await runCli(['--host', ha.url, 'migrate', from, '--to', hb.url, '--mode', mode, '--name', to], T);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^${from}: migration completed \\(to ws://127\\.0\\.0\\.1:\\d+\\): `));
      expect(await finalDigest(cb, to)).toBe(await oracle);
      expect((await cb.request<{ name: string }[]>('vm.list')).map((v) => v.name)).not.toContain(from);
      expect((await ca.request<{ name: string }[]>('vm.list')).map((v) => v.name)).not.toContain(from);
      expect((await cb.request<MigrationInfo>('migrate.status', { name: to })).status).toBe('completed');
    }
    await ca.request('vm.create', { name: 'keep', program: 'counter', memory: 4 * MiB, start: true });
    const taken = await runCli(['--host', ha.url, 'migrate', 'keep', '--to', hb.url, '--name', 'renamed-precopy'], T);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(/^ferry: keep: migration failed: .*a VM named "renamed-precopy" already exists/);
    expect((await ca.request<{ state: string }>('vm.info', { name: 'keep' })).state).toBe('running');
  }, 90_000);
});

describe('ferry host drain', () => {
  it('moves every VM, running ones live and stopped ones cold, reports each, and says what stayed (exit 1) until all are moved', async () => {
    const guest: GuestSpec = { program: 'memstress', memory: 32 * MiB, args: ['ws_mib=4'], insnLimit: 1_500_000_000 };
    const oracle = oracleDigest(guest);
    await ca.request('vm.create', createParams('d-live', guest));
    await ca.request('vm.create', { name: 'd-paused', program: 'counter', memory: 4 * MiB, start: true });
    await ca.request('vm.pause', { name: 'd-paused' });
    await ca.request('vm.create', { name: 'd-taken', program: 'hello', memory: 4 * MiB, start: true });
    await cb.request('vm.create', { name: 'd-taken', program: 'hello', memory: 4 * MiB }); // the name is taken there
    const first = await runCli(['--host', ha.url, 'host', 'drain', '--to', hb.url], T);
    expect(first.code).toBe(1);
    const lines = first.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines.find((l) => l.startsWith('d-live:'))).toMatch(/^d-live: migration completed \(to ws:\/\/127\.0\.0\.1:\d+\): /);
    expect(lines.find((l) => l.startsWith('d-paused:'))).toMatch(/^d-paused: migration completed /);
    expect(lines.find((l) => l.startsWith('d-taken:'))).toMatch(/^d-taken: migration failed: .*already exists/);
    expect(first.stderr).toMatch(/\[1\/3\] d-live \(running\): precopy migration to /);
    expect(first.stderr).toMatch(/\[2\/3\] d-paused \(paused\): cold migration to /);
    expect(first.stderr).toMatch(/\nferry: drained 2 of 3 VMs to ws:\/\/[^;]+; still here: d-taken \(failed: [^\n]*already exists[^\n]*\)\n$/);
    expect((await ca.request<{ name: string }[]>('vm.list')).map((v) => v.name)).toEqual(['d-taken']);
    expect((await cb.request<{ state: string }>('vm.info', { name: 'd-paused' })).state).toBe('paused');
    expect(await finalDigest(cb, 'd-live')).toBe(await oracle);

    await cb.request('vm.destroy', { name: 'd-taken' });
    const second = await runCli(['--host', ha.url, 'host', 'drain', '--to', hb.url], T);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/^d-taken: migration completed .*\ndrained 1 of 1 VMs to ws:\/\/127\.0\.0\.1:\d+\n$/);
    expect(await ca.request('vm.list')).toEqual([]);
  }, 90_000);
});

describe('errors and ends', () => {
  it('a console that cannot attach says so once and exits 1 (it used to hang)', async () => {
    const r = await runCli(['--host', ha.url, 'vm', 'console', 'nosuch'], 20_000);
    expect(r.signal).toBeNull();
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('ferry: no VM named "nosuch" on host mc-a\n');
  }, T);

  it('commander\'s usage errors speak as ferry and exit 2', async () => {
    const [unknown, missing] = await Promise.all([runCli(['bogus']), runCli(['vm', 'create'])]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^ferry: unknown command 'bogus'\n/);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^ferry: missing required argument 'name'\n/);
    // A size the host would refuse is bad usage too, said in the user's units (it was exit 1, "at most 2147483648").
    const [huge, odd] = await Promise.all([
      runCli(['--host', ha.url, 'vm', 'create', 'x', '--program', 'counter', '--memory', '3G']),
      runCli(['--host', ha.url, 'vm', 'create', 'y', '--program', 'counter', '--memory', '5000']),
    ]);
    expect(huge.code).toBe(2);
    expect(huge.stderr).toBe('ferry: RAM size 3 GiB must be a multiple of 4 KiB between 1 MiB and 2 GiB\n');
    expect(odd.code).toBe(2);
    expect(odd.stderr).toBe('ferry: RAM size 5000 bytes must be a multiple of 4 KiB between 1 MiB and 2 GiB\n');
  }, T);

  it('a closed stdout ends a command quietly (exit 141, as SIGPIPE would), where it used to die with an EPIPE stack trace', async () => {
    await ca.request('vm.create', { name: 'ticker', program: 'counter', memory: 4 * MiB, args: ['period_ms=2'], start: true });
    const pipe = (cmd: string) => runProcess('bash', ['-c', `${process.execPath} --import tsx src/cli.ts ${cmd} | head -c 20 >/dev/null; echo "status=\${PIPESTATUS[0]}"`], 30_000);
    const [run, console] = await Promise.all([pipe('run counter --arg period_ms=1'), pipe(`--host ${ha.url} vm console ticker`)]);
    for (const r of [run, console]) {
      expect(r.stdout).toBe('status=141\n');
      expect(r.stderr).toBe('');
    }
  }, T);
});
