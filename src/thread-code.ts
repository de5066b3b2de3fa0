/**
 * A worker thread's code as plain JavaScript a thread loads without a TypeScript loader. Run from
 * the TypeScript sources (tsx: the repo's tests, demo and CLI), a thread's entry is bundled once
 * per process with esbuild (tsx's own compiler). Each thread used to register tsx's loader hooks
 * itself: that cost ~100 ms per thread, and a thread that ended while those hooks were still
 * loading leaked their file descriptors (Node 20; measured 3.5 per thread). Compiled JavaScript
 * loads the sibling `.js` directly.
 *
 * `packages` stay outside the bundle (native addons, or a package whose module state the thread
 * must share with it), imported by absolute URL. `asFile`: written to a file named by its content
 * (piscina loads a path), else a data: URL.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const built = new Map<string, URL>();

export function threadCode(entry: URL, o: { packages?: string[]; asFile?: boolean } = {}): URL {
  // Compiled (this module is JavaScript itself): the entry's own .js sits beside it.
  if (!import.meta.url.endsWith('.ts')) return new URL(entry.href.replace(/\.ts$/, '.js'));
  const known = built.get(entry.href);
  if (known) return known;
  // Present wherever the .ts sources run (tsx depends on it); loaded only then.
  const esbuild = createRequire(entry)('esbuild') as typeof import('esbuild');
  const packages = o.packages ?? [];
  const out = esbuild.buildSync({
    entryPoints: [entry.pathname], bundle: true, format: 'esm', platform: 'node', target: 'node20', write: false, external: packages,
  });
  let code = out.outputFiles[0]!.text;
  // (esbuild's sync API takes no resolve plugin: the external imports are pointed at their files here.)
  for (const name of packages) code = code.replaceAll(`from "${name}"`, `from ${JSON.stringify(import.meta.resolve(name))}`);
  let url: URL;
  if (o.asFile) {
    const dir = join(tmpdir(), 'ferry-threads');
    const file = join(dir, `${createHash('sha256').update(code).digest('hex').slice(0, 16)}.mjs`);
    if (!existsSync(file)) {
      mkdirSync(dir, { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, code);
      renameSync(tmp, file); // whole or not at all, should another process write it too
    }
    url = pathToFileURL(file);
  } else {
    url = new URL(`data:text/javascript;base64,${Buffer.from(code).toString('base64')}`);
  }
  built.set(entry.href, url);
  return url;
}
