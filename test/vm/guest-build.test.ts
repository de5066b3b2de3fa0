// The committed guest ELFs (guest-programs/build) must be exactly what
// guest-programs/build.sh produces from the committed sources.
import { describe, it, expect } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const guestDir = join(repoRoot, 'guest-programs');
const committedDir = join(guestDir, 'build');

function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { stdio: 'ignore' }).status === 0;
}

const hasClang = onPath('clang') && onPath('ld.lld');

/** First line of `clang --version` and `ld.lld --version`, as build.sh records them. */
function toolchainId(): string {
  const first = (cmd: string) =>
    (spawnSync(cmd, ['--version'], { encoding: 'utf8' }).stdout ?? '').split('\n')[0] ?? '';
  return `${first('clang')}\n${first('ld.lld')}\n`;
}

const recordedToolchainFile = join(committedDir, 'toolchain.txt');
const recordedToolchain = existsSync(recordedToolchainFile) ? readFileSync(recordedToolchainFile, 'utf8') : '';
const sameToolchain = hasClang && toolchainId() === recordedToolchain;
const canRebuild = hasClang && sameToolchain;

if (!hasClang) {
  console.warn(
    'guest-build.test.ts: clang and/or ld.lld not found on PATH; skipping the reproducible-rebuild check ' +
      '(install with: apt-get install -y clang lld)',
  );
} else if (!sameToolchain) {
  console.warn(
    'guest-build.test.ts: the local clang/ld.lld differ from the toolchain recorded in ' +
      `guest-programs/build/toolchain.txt (${JSON.stringify(recordedToolchain)} vs ${JSON.stringify(toolchainId())}); ` +
      'a rebuild would not be byte-identical, so the reproducible-rebuild check is skipped',
  );
}

/** All *.elf files under dir, as sorted paths relative to dir ("x.elf", "tests/y.elf"). */
function listElfs(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    const rel = prefix ? `${prefix}/${name}` : name;
    if (statSync(full).isDirectory()) out.push(...listElfs(full, rel));
    else if (name.endsWith('.elf')) out.push(rel);
  }
  return out.sort();
}

/** The ELFs the sources call for: <name>.c -> <name>.elf, tests/<name>.S -> tests/<name>.elf. */
function expectedElfs(): string[] {
  const progs = readdirSync(guestDir)
    .filter((f) => f.endsWith('.c'))
    .map((f) => f.replace(/\.c$/, '.elf'));
  const tests = readdirSync(join(guestDir, 'tests'))
    .filter((f) => f.endsWith('.S'))
    .map((f) => `tests/${f.replace(/\.S$/, '.elf')}`);
  return [...progs, ...tests].sort();
}

describe('committed guest ELFs', () => {
  it('exist for every source, and no others', () => {
    expect(listElfs(committedDir)).toEqual(expectedElfs());
  });

  it('are ELF32 little-endian RISC-V executables entered at 0x80000000', () => {
    for (const rel of listElfs(committedDir)) {
      const b = readFileSync(join(committedDir, rel));
      expect(b.subarray(0, 4).toString('latin1'), rel).toBe('\x7fELF');
      expect(b[4], `${rel}: ELFCLASS32`).toBe(1);
      expect(b[5], `${rel}: little-endian`).toBe(1);
      expect(b.readUInt16LE(16), `${rel}: ET_EXEC`).toBe(2);
      expect(b.readUInt16LE(18), `${rel}: EM_RISCV`).toBe(0xf3);
      expect(b.readUInt32LE(24), `${rel}: entry`).toBe(0x80000000);
    }
  });
});

describe.skipIf(!canRebuild)('guest build is reproducible', () => {
  it('rebuilding from source gives byte-identical ELFs', () => {
    const out = mkdtempSync(join(tmpdir(), 'ferry-guest-build-'));
    try {
      execFileSync('bash', [join(guestDir, 'build.sh'), out], { stdio: 'pipe' });
      const committed = listElfs(committedDir);
      const rebuilt = listElfs(out);
      expect(committed, 'same set of ELF files (none missing, none extra)').toEqual(rebuilt);
      for (const rel of rebuilt) {
        const a = readFileSync(join(committedDir, rel));
        const b = readFileSync(join(out, rel));
        expect(a.equals(b), `${rel} differs from a fresh build: run bash guest-programs/build.sh`).toBe(true);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 120_000);
});
