// A link's messages (src/wire/link.ts openLink): delivered as they are read, not one per turn of
// the event loop (a post-copy source heard its fault requests 2.3 ms late at p50 on the
// datacenter bed, behind its own page sends), and none lost of those a host sends right behind
// `ready`, before the caller has attached its handlers.
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { packMsg, unpackChecked } from '../../src/wire/codec.ts';
import { openLink } from '../../src/wire/link.ts';
import type { LinkSocket } from '../../src/wire/socket.ts';

const VERSION = 1;

/** A host that says hello, answers the client's hello with `ready`, then runs `then` (with the socket's writes corked until it returns: one TCP segment). */
async function fakeHost(then: (send: (m: unknown) => void, ws: WebSocket) => void): Promise<{ url: string; close(): Promise<void> }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  wss.on('connection', (ws) => {
    ws.send(packMsg({ t: 'hello', v: VERSION }));
    ws.once('message', () => {
      corked(ws, () => {
        ws.send(packMsg({ t: 'ready', host: 'fake', incarnation: 'i1' }));
        then((m) => ws.send(packMsg(m)), ws);
      });
    });
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/migrate`,
    close: () => new Promise<void>((r) => {
      for (const c of wss.clients) c.terminate();
      wss.close(() => r());
    }),
  };
}

/** Runs `f` with the socket's writes held, so what it sends leaves in one write. */
function corked(ws: WebSocket, f: () => void): void {
  // ws keeps its net.Socket private; a test may reach it to control segmentation.
  const socket = (ws as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
  socket.cork();
  try {
    f();
  } finally {
    socket.uncork();
  }
}

const decode = (d: Buffer) => unpackChecked(d, { maxDepth: 1, maxString: 64, maxBinary: 0, maxItems: 8 }) as { t: string; i?: number };

let closeHost: (() => Promise<void>) | undefined;
let link: LinkSocket | undefined;
afterEach(async () => {
  link?.terminate();
  await closeHost?.();
  link = undefined;
  closeHost = undefined;
});

describe('openLink', () => {
  it('hands the messages a host sends right behind ready to the handler the caller attaches after it, in order', async () => {
    const host = await fakeHost((send) => {
      for (let i = 0; i < 5; i++) send({ t: 'early', i });
    });
    closeHost = host.close;
    const { ws } = await openLink({ url: host.url, version: VERSION, hello: {}, maxPayload: 1 << 20 });
    link = ws;
    await Promise.resolve(); // the caller attaches a few microtasks later, as the engine does
    const got: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`heard ${got.length} of the 5 messages within 2 s`)), 2000);
      ws.on('message', (d: Buffer) => {
        got.push(decode(d).i!);
        if (got.length === 5) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    expect(got).toEqual([0, 1, 2, 3, 4]);
  });

  it('delivers the messages that arrive together at once, not one per turn of the event loop', async () => {
    let burst: (() => void) | undefined;
    const host = await fakeHost((send, ws) => {
      burst = () => corked(ws, () => {
        for (let i = 0; i < 50; i++) send({ t: 'burst', i });
      });
    });
    closeHost = host.close;
    const { ws } = await openLink({ url: host.url, version: VERSION, hello: {}, maxPayload: 1 << 20 });
    link = ws;
    let got = 0;
    const atNextTurn = new Promise<number>((resolve) => {
      ws.on('message', () => {
        if (got++ === 0) setImmediate(() => resolve(got));
      });
    });
    await new Promise((r) => setTimeout(r, 20)); // past the hold of early messages
    burst!();
    // All 50 came in one segment: heard before the event loop turns (with one message per turn, 1).
    expect(await atNextTurn).toBe(50);
  });
});
