// A real browser for the dashboard's tests and bench: Debian's Chromium driven by playwright-core
// (no browser download). Where none is installed the callers skip and say why.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { REPO_ROOT } from './helpers.ts';

const CANDIDATES = [process.env.FERRY_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

/** The Chromium binary, or undefined (then `why` says what is missing). */
export const chromiumPath = CANDIDATES.find((p): p is string => p !== undefined && p !== '' && existsSync(p));
export const noBrowserWhy = 'no Chromium found (apt-get install chromium, or set FERRY_CHROMIUM): the dashboard\'s browser tests are skipped';

export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: chromiumPath!, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

/** test-artifacts/NAME/ (git-ignored): where the browser tests leave their screenshots. */
export function artifactDir(name: string): string {
  const dir = join(REPO_ROOT, 'test-artifacts', name);
  mkdirSync(dir, { recursive: true });
  return dir;
}
