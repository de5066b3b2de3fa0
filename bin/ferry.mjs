#!/usr/bin/env node
// The installed `ferry` command: load TypeScript sources through tsx, then run the CLI.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
