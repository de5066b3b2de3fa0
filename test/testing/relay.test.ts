// The test kit's link (src/testing/relay.ts): a shaped link never delivers a message before its
// delay and its share of the bandwidth allow, keeps each direction in order whatever it loses,
// and a perfect link ({}) forwards at once. (Lower bounds only: a loaded machine may add to them.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { startMessageRelay, type MessageRelay } from '../../src/testing/relay.ts';

let echo: WebSocketServer;
let relay: MessageRelay;

beforeAll(async () => {
  echo = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  echo.on('connection', (ws) => ws.on('message', (d: Buffer, bin: boolean) => ws.send(d, { binary: bin })));
  await new Promise((r) => echo.once('listening', r));
  relay = await startMessageRelay(`ws://127.0.0.1:${(echo.address() as { port: number }).port}`);
});

afterAll(async () => {
  await relay.close();
  await new Promise((r) => echo.close(r));
});

async function roundTrips(count: number, bytes: number): Promise<{ ms: number; order: number[] }> {
  const ws = new WebSocket(relay.url);
  await new Promise((r) => ws.once('open', r));
  const order: number[] = [];
  const t0 = performance.now();
  const all = new Promise<void>((resolve) => ws.on('message', (d: Buffer) => { order.push(d.readUInt32BE(0)); if (order.length === count) resolve(); }));
  for (let i = 0; i < count; i++) {
    const b = Buffer.alloc(bytes);
    b.writeUInt32BE(i, 0);
    ws.send(b);
  }
  await all;
  const ms = performance.now() - t0;
  ws.close();
  return { ms, order };
}

describe('a shaped link', () => {
  it('delays each direction by delayMs: a round trip takes at least twice it', async () => {
    relay.shape({ delayMs: 40 });
    const { ms } = await roundTrips(1, 16);
    expect(ms).toBeGreaterThanOrEqual(80);
  });

  it('carries at most `bandwidth` bytes a second each way', async () => {
    relay.shape({ bandwidth: 1_000_000 });
    const { ms, order } = await roundTrips(4, 100_000); // 400 kB up, 400 kB back: each way 0.4 s at least
    expect(ms).toBeGreaterThanOrEqual(400);
    expect(order).toEqual([0, 1, 2, 3]);
  });

  it('a lost message arrives a retransmission late, and what follows waits behind it (in order)', async () => {
    relay.shape({ loss: 1, retransmitMs: 150 });
    const { ms, order } = await roundTrips(20, 64);
    expect(ms).toBeGreaterThanOrEqual(300);
    expect(order).toEqual([...Array(20).keys()]);
  });

  it('keeps order under partial loss', async () => {
    relay.shape({ loss: 0.3, retransmitMs: 30, delayMs: 1 });
    const { order } = await roundTrips(200, 64);
    expect(order).toEqual([...Array(200).keys()]);
  });
});
