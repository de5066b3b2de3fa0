/**
 * The web dashboard's files, served by the host itself at `/` (dashboard/ in the package, plain
 * ES modules: nothing to build) with the few browser libraries it imports (`/vendor/...`, from
 * the host's own node_modules). The page holds no data: everything it shows it asks for over
 * `/control`, as any control client, with the same authentication (the token proof and, over
 * plain ws://, tagged messages), so serving it opens nothing the control API does not.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FERRY_VERSION } from '../version.ts';

/** dashboard/ beside src/ (or dist/) in the repository and in the installed package. */
const DASHBOARD_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dashboard');

const require = createRequire(import.meta.url);

/** The directory of an installed package, found from its entry point. */
function packageDir(name: string): string {
  let dir = dirname(require.resolve(name));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === name) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find the directory of package ${name}`);
    dir = up;
  }
}

/** /vendor/NAME/FILE: the directory each browser library's files are served from. */
const VENDOR: Record<string, () => string> = {
  msgpackr: () => packageDir('msgpackr'),
  'noble-ciphers': () => join(packageDir('@noble/ciphers'), 'esm'),
  'noble-hashes': () => join(packageDir('@noble/hashes'), 'esm'),
  xterm: () => join(packageDir('@xterm/xterm'), 'lib'),
  'xterm-css': () => join(packageDir('@xterm/xterm'), 'css'),
  uplot: () => join(packageDir('uplot'), 'dist'),
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** One path segment of a file we serve: no slashes, no dot-dot, one of the served types. */
const FILE_RE = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(html|js|mjs|css|svg)$/;

export class DashboardFiles {
  private readonly dirs = new Map<string, string>();
  private index: { html: string; csp: string } | undefined;

  /** Serves GET/HEAD of `/`, `/app/FILE` and `/vendor/LIB/FILE`; false for any other path (not ours). */
  handles(path: string): boolean {
    return path === '/' || path === '/index.html' || path.startsWith('/app/') || path.startsWith('/vendor/');
  }

  async serve(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('the dashboard is read with GET\n');
      return;
    }
    if (path === '/' || path === '/index.html') {
      const { html, csp } = this.indexPage();
      res.writeHead(200, { ...securityHeaders(csp), 'content-type': TYPES['.html']!, 'cache-control': 'no-cache' });
      res.end(req.method === 'HEAD' ? undefined : html);
      return;
    }
    // /app/FILE or /vendor/LIB/FILE; the page itself only with its headers, at /.
    const parts = path.split('/');
    let dir: string | undefined;
    let file: string | undefined;
    if (parts.length === 3 && parts[1] === 'app') [dir, file] = [DASHBOARD_DIR, parts[2]];
    else if (parts.length === 4 && parts[1] === 'vendor' && Object.hasOwn(VENDOR, parts[2]!)) [dir, file] = [this.vendorDir(parts[2]!), parts[3]];
    if (dir === undefined || file === undefined || !FILE_RE.test(file) || file.endsWith('.html')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('no such file\n');
      return;
    }
    let body: Buffer;
    try {
      body = await readFile(join(dir, file));
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('no such file\n');
      return;
    }
    const ext = file.slice(file.lastIndexOf('.'));
    res.writeHead(200, {
      ...securityHeaders(undefined), 'content-type': TYPES[ext] ?? 'application/octet-stream',
      // The files change only with the installed version; a page reload after an upgrade revalidates.
      'cache-control': 'no-cache', etag: `"${FERRY_VERSION}-${createHash('sha1').update(body).digest('hex').slice(0, 16)}"`,
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private vendorDir(lib: string): string {
    let d = this.dirs.get(lib);
    if (d === undefined) {
      d = VENDOR[lib]!();
      this.dirs.set(lib, d);
    }
    return d;
  }

  /** index.html, and a Content-Security-Policy that allows its one inline script (the import map) by its hash. */
  private indexPage(): { html: string; csp: string } {
    if (this.index) return this.index;
    const html = readFileSync(join(DASHBOARD_DIR, 'index.html'), 'utf8');
    const importMap = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html)?.[1] ?? '';
    const hash = createHash('sha256').update(importMap).digest('base64');
    const csp = [
      "default-src 'none'", `script-src 'self' 'sha256-${hash}'`, "style-src 'self' 'unsafe-inline'", "img-src 'self' data: blob:",
      // ws:/wss: to any host: a console follows its VM to the host it migrated to.
      "connect-src 'self' ws: wss:", "font-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
    ].join('; ');
    this.index = { html, csp };
    return this.index;
  }
}

function securityHeaders(csp: string | undefined): Record<string, string> {
  return {
    ...(csp !== undefined ? { 'content-security-policy': csp } : {}),
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    'cross-origin-opener-policy': 'same-origin',
  };
}
