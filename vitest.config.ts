import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/**
 * Files whose checks are timings or decisions taken from measured rates (the two-machine bed's
 * round trips and fault waits; 'auto' page encoding), so they run alone, after the rest; and the
 * browser's, whose Chromium would otherwise take the CPU of the files running beside it.
 */
const LINK_BED = [
  'test/migration/link-profiles.test.ts', 'test/migration/encoding-auto.test.ts', 'test/migration/encoding-remeasure.test.ts', 'test/dashboard/browser.test.ts',
];

export default defineConfig({
  resolve: {
    // examples/ import the package by its name, as a user's tests do: here that is the sources.
    alias: [
      { find: /^ferry\/testing$/, replacement: fileURLToPath(new URL('./src/testing/index.ts', import.meta.url)) },
      { find: /^ferry$/, replacement: fileURLToPath(new URL('./src/index.ts', import.meta.url)) },
    ],
  },
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'suite',
          include: ['test/**/*.test.ts', 'examples/**/*.test.ts'],
          exclude: LINK_BED,
          // Two cores: VMs run in their own worker threads, so keep test files from piling up.
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: { name: 'link-bed', include: LINK_BED, maxWorkers: 1, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
