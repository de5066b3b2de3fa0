/**
 * Raw WebSocket throughput between two processes on this machine: the yardstick migration
 * throughput is compared with. Run alone it prints one JSON line; bench/migration.ts imports it.
 */
import { fork } from 'node:child_process';
import { connect, createServer } from 'node:net';
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

/** Runs `fn` against this file started as a child server (`flag`) on the port it listens on; the child goes after. */
async function withChild<T>(flag: string, fn: (port: number) => Promise<T>): Promise<T> {
  const proc = fork(fileURLToPath(import.meta.url), [flag], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const { port } = await new Promise<{ port: number }>((r) => proc.once('message', (m) => r(m as { port: number })));
    return await fn(port);
  } finally {
    proc.kill();
  }
}

/** MB/s (10^6 B/s) of `bytes` since `t0` (measured when the last byte is in). */
function mbsSince(bytes: number, t0: number): number {
  return bytes / ((performance.now() - t0) / 1000) / 1e6;
}

/** Sends `totalBytes` in 1 MiB binary frames, at most WINDOW in flight; returns MB/s (10^6 B/s). */
export async function rawWsThroughput(totalBytes = 512 * 1024 * 1024): Promise<number> {
  return withChild('--child', async (port) => {
    // Ferry's links send with an all-zero mask (wire/link.ts zeroMask), which ws skips: so does the yardstick.
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, generateMask: (mask: Buffer) => { mask.fill(0); } });
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
    ws.close();
    return mbsSince(totalBytes, t0);
  });
}

/** Child: a TCP server that counts bytes and answers one byte once `total` (its first line) have arrived. */
async function tcpChild(): Promise<void> {
  const srv = createServer((sock) => {
    let got = 0;
    let total = -1;
    let head = '';
    sock.on('data', (d: Buffer) => {
      if (total < 0) {
        head += d.toString('latin1');
        const nl = head.indexOf('\n');
        if (nl < 0) return;
        total = Number(head.slice(0, nl));
        got = head.length - nl - 1;
      } else got += d.length;
      if (got >= total) sock.end('d');
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  process.send!({ port: (srv.address() as { port: number }).port });
}

/** Raw TCP between two processes: `totalBytes` written as fast as the socket takes them; returns MB/s. */
export async function rawTcpThroughput(totalBytes = 512 * 1024 * 1024): Promise<number> {
  return withChild('--tcp-child', async (port) => {
    const sock = connect(port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const chunk = Buffer.alloc(FRAME, 7);
    const done = new Promise((r) => sock.once('data', r));
    const t0 = performance.now();
    sock.write(`${totalBytes}\n`);
    for (let sent = 0; sent < totalBytes; sent += FRAME) {
      if (!sock.write(chunk)) await new Promise((r) => sock.once('drain', r));
    }
    await done;
    sock.destroy();
    return mbsSince(totalBytes, t0);
  });
}

if (process.argv.includes('--child')) await child();
else if (process.argv.includes('--tcp-child')) await tcpChild();
else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${JSON.stringify({ name: 'ws.raw-throughput', unit: 'MB/s', value: Math.round(await rawWsThroughput()) })}\n`);
}
