import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: VMs run in their own worker threads, so keep test files from piling up.
    maxWorkers: 2,
  },
});
