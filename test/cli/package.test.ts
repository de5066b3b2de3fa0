// The package as a user gets it: `npm pack`, then `npm install -g` of the tarball into a fresh
// prefix (from npm's cache, as CI's `npm ci` filled it), then the installed `ferry`, run from a
// folder outside the repo: compiled JavaScript only (no TypeScript loader installed), its guests,
// its worker threads (vCPU, the encoding pool), host processes it starts itself, and completion.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onPath, REPO_ROOT, runCli, runProcess } from '../support/helpers.ts';

const T = 60_000;
const work = mkdtempSync(join(tmpdir(), 'ferry-package-'));
const prefix = join(work, 'prefix');
const installed = join(prefix, 'lib', 'node_modules', 'ferry');
const ferryBin = join(prefix, 'bin', 'ferry');
const env = { ...process.env, PATH: `${join(prefix, 'bin')}:${process.env.PATH ?? ''}`, FERRY_HOST: '', FERRY_LOG_LEVEL: 'warn' };
const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const hosts: ChildProcess[] = [];
const hasZsh = onPath('zsh');
if (!hasZsh) console.warn('package.test.ts: the zsh completion test is SKIPPED: zsh is not installed (.ci/run installs it)');

/** The installed `ferry`, run from the scratch folder (so nothing of the repo is at hand). */
function ferry(args: string[], timeoutMs = 30_000) {
  return runProcess(ferryBin, args, timeoutMs, undefined, { cwd: work, env });
}

function npm(args: string[]) {
  return runProcess('npm', args, 110_000, undefined, { cwd: REPO_ROOT, env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' } });
}

/** `ferry host start` from the package, on a free loopback port; resolves with its URL. */
function startInstalledHost(name: string): Promise<string> {
  const proc = spawn(ferryBin, ['host', 'start', '--listen', '127.0.0.1:0', '--name', name], { cwd: work, env, stdio: ['ignore', 'pipe', 'inherit'] });
  hosts.push(proc);
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`installed host ${name} did not listen within 20 s: ${out}`)), 20_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (ws:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`installed host ${name} exited (${code}) before listening`));
    });
  });
}

beforeAll(async () => {
  const packed = await npm(['pack', '--pack-destination', work]); // prepack compiles src/ into dist/
  expect(packed.code, packed.stderr).toBe(0);
  const tgz = readdirSync(work).find((f) => f.endsWith('.tgz'));
  expect(tgz, packed.stdout).toBeDefined();
  const inst = await npm(['install', '-g', '--prefix', prefix, '--prefer-offline', join(work, tgz!)]);
  expect(inst.code, inst.stderr).toBe(0);
}, 240_000);

afterAll(async () => {
  await Promise.all(hosts.map((h) => new Promise<void>((resolve) => {
    if (h.exitCode !== null || h.signalCode !== null) return resolve();
    h.once('exit', () => resolve());
    h.kill('SIGTERM');
  })));
  rmSync(work, { recursive: true, force: true });
});

describe('the installed package', () => {
  it('is compiled JavaScript with type declarations and needs no TypeScript loader', () => {
    const pkg = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as { bin: Record<string, string>; dependencies: Record<string, string> };
    expect(pkg.bin.ferry).toBe('dist/cli.js');
    expect(Object.keys(pkg.dependencies)).not.toContain('tsx');
    expect(existsSync(join(installed, 'node_modules', 'tsx'))).toBe(false);
    const files = readdirSync(join(installed, 'dist'), { recursive: true }).map(String);
    expect(files).toContain('cli.js');
    expect(files).toContain('cli.d.ts');
    expect(files).toContain('index.d.ts');
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    expect(existsSync(join(installed, 'src'))).toBe(false);
    expect(existsSync(join(installed, 'guest-programs', 'build', 'memstress.elf'))).toBe(true);
  });

  it('ferry --version prints the package version', async () => {
    const r = await ferry(['--version']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${version}\n`);
  }, T);

  it('ferry run gives the same digest as the sources do', async () => {
    const args = ['run', 'memstress', '--icount', '--insn-limit', '20000000', '--digest', '--arg', 'ws_mib=8', '--memory', '32M'];
    const [pkg, src] = await Promise.all([ferry(args), runCli(args)]);
    expect(pkg.code, pkg.stderr).toBe(0);
    expect(pkg.stdout.trimEnd().split('\n').at(-1)).toMatch(/^digest: [0-9a-f]{64}$/);
    expect(pkg.stdout).toBe(src.stdout);
  }, T);

  it('two installed hosts migrate a guest with deltas and compression (the pool threads load) to the unmigrated digest, and serve their dashboard', async () => {
    const [a, b] = await Promise.all([startInstalledHost('pa'), startInstalledHost('pb')]);
    const limit = '60000000';
    const create = await ferry(['--host', a, 'vm', 'create', 'm', '--program', 'memstress', '--memory', '32M', '--icount', '--insn-limit', limit, '--arg', 'ws_mib=8', '--start']);
    expect(create.code, create.stderr).toBe(0);
    const mig = await ferry(['--host', a, 'migrate', 'm', '--to', b, '--xbzrle', 'on', '--compress', 'on', '--json'], 60_000);
    expect(mig.code, mig.stderr).toBe(0);
    const stats = JSON.parse(mig.stdout) as { status: string; 'transferred-bytes': number };
    expect(stats.status).toBe('completed');
    let digest = '';
    for (let i = 0; i < 200 && !digest; i++) {
      const info = await ferry(['--host', b, 'vm', 'info', 'm']);
      if (/state\s+halted/.test(info.stdout)) digest = (await ferry(['--host', b, 'vm', 'digest', 'm'])).stdout.trim();
      else await new Promise((r) => setTimeout(r, 100));
    }
    const ref = await ferry(['run', 'memstress', '--icount', '--insn-limit', limit, '--digest', '--arg', 'ws_mib=8', '--memory', '32M']);
    expect(digest).toMatch(/^digest: [0-9a-f]{64}$/);
    expect(digest).toBe(ref.stdout.trimEnd().split('\n').at(-1));
    // The installed host serves its dashboard: the page and every library its import map names, from the package's own dependencies.
    const page = await fetch(`${a.replace(/^ws/, 'http')}/`);
    expect(page.status).toBe(200);
    const map = JSON.parse(/<script type="importmap">([\s\S]*?)<\/script>/.exec(await page.text())![1]!) as { imports: Record<string, string> };
    for (const path of ['/app/app.js', '/app/control.js', ...Object.values(map.imports)]) expect((await fetch(`${a.replace(/^ws/, 'http')}${path}`)).status, path).toBe(200);
  }, 90_000);

  it('ferry demo starts its own host processes from the package', async () => {
    const r = await ferry(['demo', '--migrations', '1'], 60_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/demo: done; console ran from tick 1 to tick \d+ with 0 repeats or gaps/);
  }, T);

  it.skipIf(!hasZsh)('zsh completion offers the commands and options of the installed ferry', async () => {
    // The completion function as zsh would call it, with compadd standing in to print what it is given.
    const script = [
      'compdef() { : }',
      'eval "$(ferry completion zsh)"',
      'compadd() { [[ $1 == -a ]] && print -l -- ${(P)2} }',
      "_files() { print -- '<files>' }",
      'words=(ferry vm cr); CURRENT=3; _ferry_complete',
      "print -- '--'",
      "words=(ferry migrate m1 --mode ''); CURRENT=5; _ferry_complete",
    ].join('\n');
    const r = await runProcess('zsh', ['-c', script], 30_000, undefined, { cwd: work, env });
    expect(r.code, r.stderr).toBe(0);
    const [vm, mode] = r.stdout.split('--\n');
    expect(vm!.split('\n')).toEqual(expect.arrayContaining(['create', 'list', 'console', '--host', '--help']));
    expect(mode).toBe('<files>\n'); // after an option that takes a value: the shell's own completion
  }, T);

  it('the library and its test kit import by the package name: a migration between two in-process hosts, a reference digest', async () => {
    symlinkSync(join(prefix, 'lib', 'node_modules'), join(work, 'node_modules'));
    const script = [
      "import { startHost, FERRY_VERSION } from 'ferry';",
      "import { referenceDigest, startCluster } from 'ferry/testing';",
      "const cluster = await startCluster({ hosts: ['x'] });",
      "const ref = await referenceDigest({ program: 'hello', memory: 4 * 1024 * 1024, insnLimit: 100000 });",
      "await cluster.stop();",
      "const [a, b] = await Promise.all([startHost({ name: 'a' }), startHost({ name: 'b' })]);",
      "const ca = await a.connect();",
      "await ca.createVm({ name: 'v', program: 'counter', memory: 4 * 1024 * 1024, start: true });",
      "const m = await ca.migrate('v', { to: b.url, compress: 'on' });",
      "const final = await m.done;",
      "console.log(FERRY_VERSION, final.status, m.history.map((e) => e.type).join(','), ref.length);",
      "await ca.close(); await Promise.all([a.stop(), b.stop()]);",
    ].join('\n');
    const r = await runProcess(process.execPath, ['--input-type=module', '-e', script], 60_000, undefined, { cwd: work, env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${version.replace(/\./g, '\\.')} completed setup,(pass,)*switchover,completed 64\n$`));
  }, T);

  it('bash completion completes commands and options from the installed ferry', async () => {
    const complete = (line: string) => runProcess('bash', ['-c', `source <(ferry completion bash); COMP_WORDS=(${line}); COMP_CWORD=$((\${#COMP_WORDS[@]}-1)); _ferry_complete; printf '%s\\n' "\${COMPREPLY[@]}"`], 30_000, undefined, { cwd: work, env });
    const vm = await complete('ferry vm cr');
    expect(vm.code, vm.stderr).toBe(0);
    expect(vm.stdout).toBe('create\n');
    const mig = await complete('ferry --host ws://x:1 migrate m1 --max-b');
    expect(mig.stdout).toBe('--max-bandwidth\n');
    const top = await complete("ferry ''");
    expect(top.stdout.split('\n')).toEqual(expect.arrayContaining(['run', 'host', 'vm', 'migrate', 'monitor', 'demo', 'completion', '--version']));
    expect(top.stdout).not.toContain('__complete');
    const bad = await ferry(['completion', 'fish']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('ferry: no completion for shell "fish": bash or zsh\n');
  }, T);
});
