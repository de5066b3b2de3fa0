// Worker threads cannot load .ts files through tsx's CLI hooks (DESIGN §9): register tsx's
// ESM loader in this thread, then import the real entry.
import { register } from 'tsx/esm/api';
import { workerData } from 'node:worker_threads';

register();
await import(workerData.entry);
