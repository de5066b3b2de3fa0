// `ferry demo` (the README's first command): two real host processes, the counter guest
// migrated live back and forth; the console must run on without a repeated or missing tick.
import { spawn } from 'node:child_process';
import { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, runCli } from '../support/helpers.ts';

describe('ferry demo', () => {
  it('migrates the guest back and forth with a continuous console and exits 0', async () => {
    const r = await runCli(['demo', '--migrations', '3', '--interval', '600', '--period', '50'], 60_000);
    expect(r.code, r.stderr).toBe(0);
    const completed = r.stdout.match(/migration completed/g) ?? [];
    expect(completed.length).toBe(3);
    expect(r.stdout).toMatch(/\[a\] tick \d+/);
    expect(r.stdout).toMatch(/\[b\] tick \d+/);
    const done = /console ran from tick 1 to tick (\d+) with 0 repeats or gaps/.exec(r.stdout);
    expect(done, r.stdout.slice(-500)).not.toBeNull();
    expect(Number(done![1])).toBeGreaterThan(20);
  }, 90_000);

  it('Ctrl-C (SIGINT) ends it cleanly: exit 0, both host processes gone', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'demo', '--interval', '500', '--period', '50'], {
      cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const deadline = Date.now() + 30_000;
    while (!/migration completed/.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(out).toMatch(/migration completed/);
    const hosts = [...out.matchAll(/host [ab] at ws:\/\/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
    expect(hosts.length).toBe(2);
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    // The hosts' ports are closed: nothing is left listening.
    for (const port of hosts) {
      const refused = await new Promise<boolean>((resolve) => {
        const s = new Socket();
        s.once('error', () => resolve(true));
        s.connect(port, '127.0.0.1', () => { s.destroy(); resolve(false); });
      });
      expect(refused).toBe(true);
    }
  }, 60_000);
});
