// `ferry run` end to end: the CLI as a child process (node --import tsx src/cli.ts ...).
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/helpers.ts';

const T = 30_000;

describe('ferry run', () => {
  it('run hello prints the greeting and exits 0', async () => {
    const r = await runCli(['run', 'hello']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('hello from ferry\n');
    expect(r.code).toBe(0);
  }, T);

  it('--icount --insn-limit --digest is reproducible across two processes', async () => {
    const args = ['run', 'memstress', '--icount', '--insn-limit', '20000000', '--digest', '--arg', 'ws_mib=8', '--memory', '32M'];
    const [a, b] = await Promise.all([runCli(args), runCli(args)]);
    for (const r of [a, b]) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^memstress: ws_mib=8 base=0x[0-9a-f]{8} pages=2048\n/);
      expect(r.stdout.endsWith('\n')).toBe(true);
    }
    const lastA = a.stdout.trimEnd().split('\n').at(-1)!;
    const lastB = b.stdout.trimEnd().split('\n').at(-1)!;
    expect(lastA).toMatch(/^digest: [0-9a-f]{64}$/);
    expect(lastB).toBe(lastA);
    expect(b.stdout).toBe(a.stdout);
  }, T);

  it('the digest depends on the instruction limit', async () => {
    const base = ['run', 'memstress', '--icount', '--digest', '--arg', 'ws_mib=8', '--memory', '32M'];
    const [a, b] = await Promise.all([runCli([...base, '--insn-limit', '1_000_000']), runCli([...base, '--insn-limit', '1000001'])]);
    const da = a.stdout.trimEnd().split('\n').at(-1)!;
    const db = b.stdout.trimEnd().split('\n').at(-1)!;
    expect(da).toMatch(/^digest: [0-9a-f]{64}$/);
    expect(db).toMatch(/^digest: [0-9a-f]{64}$/);
    expect(da).not.toBe(db);
  }, T);

  it('stdin reaches the guest UART: echo copies its input back and powers off on Ctrl-D', async () => {
    const r = await runCli(['run', 'echo'], T, 'abc\nxyz\n\x04');
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('echo: ready\nabc\nxyz\necho: bye\n');
    expect(r.code).toBe(0);
  }, T);

  it('a conformance ELF path: htif-fail-expected exits with code 3', async () => {
    const r = await runCli(['run', 'guest-programs/build/tests/htif-fail-expected.elf']);
    expect(r.code).toBe(3);
    expect(r.stderr).toBe('');
  }, T);

  it('a conformance ELF path that passes exits 0', async () => {
    const r = await runCli(['run', 'guest-programs/build/tests/muldiv.elf', '--memory', '16M']);
    expect(r.code, r.stderr).toBe(0);
  }, T);

  it('sieve with a boot argument', async () => {
    const r = await runCli(['run', 'sieve', '--arg', 'n=1000']);
    expect(r.stdout).toBe('sieve: n=1000 primes=168\n');
    expect(r.code).toBe(0);
  }, T);
});

describe('ferry usage errors (exit 2, one-line "ferry: ..." message)', () => {
  const oneLine = (s: string) => s.trimEnd().split('\n').length === 1;

  it('run nope: unknown program', async () => {
    const r = await runCli(['run', 'nope']);
    expect(r.code).toBe(2);
    expect(r.stderr.startsWith('ferry: unknown program')).toBe(true);
    expect(oneLine(r.stderr)).toBe(true);
    expect(r.stdout).toBe('');
  }, T);

  it('a missing ELF file', async () => {
    const r = await runCli(['run', 'no/such/file.elf']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ferry: no such ELF file/);
  }, T);

  it('--memory 3Q', async () => {
    const r = await runCli(['run', 'hello', '--memory', '3Q']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ferry: .*memory/);
    expect(oneLine(r.stderr)).toBe(true);
    expect(r.stdout).toBe('');
  }, T);

  it('--memory out of range', async () => {
    const r = await runCli(['run', 'hello', '--memory', '4G']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ferry: /);
  }, T);

  it('--insn-limit abc', async () => {
    const r = await runCli(['run', 'hello', '--insn-limit', 'abc']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ferry: .*instruction limit/);
    expect(oneLine(r.stderr)).toBe(true);
  }, T);

  it('--insn-limit 0', async () => {
    const r = await runCli(['run', 'hello', '--insn-limit', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ferry: /);
  }, T);

  it('a malformed boot argument', async () => {
    const r = await runCli(['run', 'hello', '--arg', 'novalue']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ferry: .*key=value/);
  }, T);

  it('--help exits 0 and documents --insn-limit', async () => {
    const r = await runCli(['run', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--insn-limit');
    const top = await runCli(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toContain('run');
  }, T);
});
