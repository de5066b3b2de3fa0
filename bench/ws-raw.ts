/**
 * Raw WebSocket throughput between two processes on this machine: the yardstick migration
 * throughput is compared with. Run alone it prints one JSON line; bench/migration.ts imports it.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import WebSocket, { WebSocketServer } from 'ws';

const FRAME = 1024 * 1024;
const WINDOW = 8 * 1024 * 1024;

/** Child: a ws server that counts bytes and reports when `total` have arrived. */
async function child(): Promise<void> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 4 * FRAME });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  process.send!({ port: (wss.address() as { port: number }).port });
  wss.on('connection', (ws) => {
    let got = 0;
    let total = Infinity;
    ws.on('message', (d: Buffer, isBinary: boolean) => {
      if (!isBinary) {
        total = Number(d.toString());
        return;
      }
      got += d.length;
      if (got >= total) ws.send('done');
    });
  });
}

/** Sends `totalBytes` in 1 MiB binary frames, at most WINDOW in flight; returns MB/s (10^6 B/s). */
export async function rawWsThroughput(totalBytes = 512 * 1024 * 1024): Promise<number> {
  const proc = fork(fileURLToPath(import.meta.url), ['--child'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const { port } = await new Promise<{ port: number }>((r) => proc.once('message', (m) => r(m as { port: number })));
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
    await new Promise((r) => ws.once('open', r));
    const frame = Buffer.alloc(FRAME, 7);
    ws.send(String(totalBytes));
    const done = new Promise((r) => ws.once('message', r));
    const t0 = performance.now();
    let inflight = 0;
    let wake: (() => void) | undefined;
    for (let sent = 0; sent < totalBytes; sent += FRAME) {
      while (inflight + FRAME > WINDOW) await new Promise<void>((r) => { wake = r; });
      inflight += FRAME;
      ws.send(frame, () => { inflight -= FRAME; const w = wake; wake = undefined; w?.(); });
    }
    await done;
    const mbs = totalBytes / ((performance.now() - t0) / 1000) / 1e6;
    ws.close();
    return mbs;
  } finally {
    proc.kill();
  }
}

if (process.argv.includes('--child')) await child();
else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${JSON.stringify({ name: 'ws.raw-throughput', unit: 'MB/s', value: Math.round(await rawWsThroughput()) })}\n`);
}
