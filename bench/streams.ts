/**
 * The multi-stream yardstick (issue 12, point 2): raw WebSocket throughput between two processes
 * over 1, 2, ... N connections, each sender a thread of its own copying 1 MiB frames out of a
 * SharedArrayBuffer (as a page stream would), the receiver either one thread for all
 * connections (what a Node 20 host can do: an accepted socket cannot move to a worker) or one
 * thread and port per connection. Prints one JSON line per case and its ratio to one stream in
 * the same run: where that ratio stays below 1, more streams cost more than they carry here.
 *
 *   npx tsx bench/streams.ts            (FERRY_STREAMS_MAX=3, FERRY_STREAMS_MIB=1024)
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

const MiB = 1024 * 1024;
const MAX = Number(process.env.FERRY_STREAMS_MAX ?? 3);
const TOTAL = Number(process.env.FERRY_STREAMS_MIB ?? 1024) * MiB;
const WS = createRequire(import.meta.url).resolve('ws');

/** The receiving process: counts bytes on every connection, prints the running total every 50 ms. */
const RECEIVER = `
const { Worker, isMainThread, workerData, parentPort } = require('node:worker_threads');
const { WebSocketServer } = require(${JSON.stringify(WS)});
const serve = (port, count) => {
  const wss = new WebSocketServer({ port, host: '127.0.0.1', perMessageDeflate: false, maxPayload: 4 << 20 });
  wss.on('connection', (ws) => ws.on('message', (d) => count(d.length)));
  return new Promise((r) => wss.on('listening', r));
};
if (isMainThread) {
  const [n, base, perThread] = process.argv.slice(1).map(Number);
  let bytes = 0;
  const ready = [];
  if (perThread) {
    for (let k = 0; k < n; k++) {
      const w = new Worker(__filename_code, { eval: true, workerData: { port: base + k } });
      w.on('message', (m) => { bytes += m; });
      ready.push(new Promise((r) => w.once('online', () => setTimeout(r, 300))));
    }
  } else ready.push(serve(base, (x) => { bytes += x; }));
  Promise.all(ready).then(() => process.stderr.write('ready\\n'));
  setInterval(() => process.stdout.write(bytes + '\\n'), 50);
} else {
  let acc = 0;
  serve(workerData.port, (x) => { acc += x; if (acc >= 1 << 20) { parentPort.postMessage(acc); acc = 0; } });
}`;

/** A sending thread: one connection, 1 MiB frames copied from the shared buffer, 8 in flight. */
const SENDER = `
const { workerData, parentPort } = require('node:worker_threads');
const WebSocket = require(${JSON.stringify(WS)});
const { url, ram, bytes } = workerData;
const ws = new WebSocket(url, { perMessageDeflate: false });
ws.once('open', () => {
  const src = new Uint8Array(ram);
  const free = Array.from({ length: 8 }, () => Buffer.allocUnsafe(${MiB}));
  let sent = 0, off = 0, inflight = 0;
  const pump = () => {
    while (sent < bytes && free.length > 0) {
      const b = free.pop();
      b.set(src.subarray(off, off + ${MiB}));
      off = (off + ${MiB}) % ram.byteLength;
      sent += ${MiB};
      inflight++;
      ws.send(b, { binary: true }, () => { inflight--; free.push(b); if (sent >= bytes && inflight === 0) parentPort.postMessage('done'); else pump(); });
    }
  };
  pump();
});`;

async function once(streams: number, perThread: boolean, port: number): Promise<number> {
  const code = RECEIVER.replace('__filename_code', JSON.stringify(RECEIVER));
  const recv = spawn(process.execPath, ['-e', code, String(streams), String(port), perThread ? '1' : '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    await new Promise((resolve, reject) => {
      recv.stderr!.once('data', resolve);
      recv.once('exit', (c) => reject(new Error(`receiver exited ${c}`)));
    });
    let got = 0;
    recv.stdout!.on('data', (d: Buffer) => { got = Number(d.toString().trim().split('\n').at(-1)); });
    const ram = new SharedArrayBuffer(256 * MiB);
    new Uint8Array(ram).fill(7);
    const t0 = performance.now();
    const senders = Array.from({ length: streams }, (_, k) => new Worker(SENDER, {
      eval: true, workerData: { url: `ws://127.0.0.1:${perThread ? port + k : port}`, ram, bytes: TOTAL / streams },
    }));
    await Promise.all(senders.map((w) => new Promise((r) => w.once('message', r))));
    const deadline = performance.now() + 60_000;
    while (got < TOTAL) {
      if (performance.now() > deadline) throw new Error(`received ${got} of ${TOTAL} bytes in 60 s`);
      await new Promise((r) => setTimeout(r, 5));
    }
    const mbs = TOTAL / ((performance.now() - t0) / 1000) / 1e6;
    await Promise.all(senders.map((w) => w.terminate()));
    return mbs;
  } finally {
    recv.kill();
  }
}

let port = 47000 + Math.floor(Math.random() * 1000);
for (const perThread of [false, true]) {
  let one = 0;
  for (let n = 1; n <= MAX; n++) {
    const mbs = await once(n, perThread, port);
    port += MAX + 1;
    if (n === 1) one = mbs;
    const receiver = perThread ? 'a thread per stream' : 'one thread';
    process.stdout.write(`${JSON.stringify({ name: `ws.streams-${n}.receiver-${perThread ? 'threads' : 'main'}`, unit: 'MB/s', value: Math.round(mbs), vsOneStream: Math.round((mbs / one) * 100) / 100, receiver })}\n`);
  }
}
