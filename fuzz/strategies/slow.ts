/**
 * Slow and idle connections from 127.0.0.2 .. 127.0.0.50: TCP connections that never send
 * anything, HTTP requests trickled a byte at a time, WebSocket connections that never send a
 * hello or stop inside a frame, and readers that stop reading. They are parked (left open past
 * the case) so the oracle checks that a client from 127.0.0.1 still gets in, and the end of the
 * run waits for the host to close them.
 */
import { encode } from '../msgpack.ts';
import { upgradeRequest, wsFrame } from '../raw.ts';
import { CONTROL_PROTOCOL_VERSION, req } from '../wire.ts';
import type { Strategy } from './types.ts';

export const slowIdleTcp: Strategy = {
  name: 'slow-idle-tcp', surfaces: ['control', 'migrate'], weight: 1,
  async run(ctx) {
    const sock = await ctx.raw({ localAddress: ctx.otherAddress() });
    ctx.note('idle');
    ctx.park(sock, 'idle-tcp');
  },
};

export const slowTrickleHttp: Strategy = {
  name: 'slow-trickle-http', surfaces: ['control', 'migrate'], weight: 1, deadlineMs: 10_000,
  async run(ctx) {
    const rng = ctx.rng;
    const path = ctx.path();
    const sock = await ctx.raw({ localAddress: ctx.otherAddress() });
    const request = upgradeRequest(path, `${ctx.target.host}:${ctx.target.port}`);
    // Part of the request (never the end of its headers), a byte at a time.
    const stopAt = rng.range(1, request.length - 4);
    const gapMs = rng.pick([5, 20, 100]);
    const budgetMs = rng.pick([200, 500, 1500]);
    const t0 = Date.now();
    let i = 0;
    for (; i < stopAt && Date.now() - t0 < budgetMs && !sock.isClosed(); i++) {
      ctx.write(sock, request.slice(i, i + 1));
      await ctx.sleep(gapMs);
    }
    ctx.note(`sent-${i < 20 ? 'request-line' : 'headers'}`);
    if (!sock.isClosed()) ctx.park(sock, 'trickle-http');
  },
};

export const slowWsNoHello: Strategy = {
  name: 'slow-ws-no-hello', surfaces: ['control', 'migrate'], weight: 2, deadlineMs: 10_000,
  async run(ctx) {
    const rng = ctx.rng;
    const path = ctx.path();
    const variant = rng.weighted([['no-hello', 4], ['partial-frame', 2], ['partial-hello', 1], ['no-read', 1]] as const);
    ctx.note(`${path}:${variant}`);
    if (variant === 'no-hello') {
      const conn = await ctx.connect(path, { localAddress: ctx.otherAddress() });
      ctx.park(conn, 'ws-no-hello');
      return;
    }
    if (variant === 'no-read') {
      // Authenticated, asks for a lot, and stops reading: the host must not buffer without bound.
      const conn = await ctx.connect('/control', { localAddress: ctx.otherAddress() });
      const res = await ctx.hello(conn, '/control', 'valid');
      if (!res.ready) return;
      conn.ws.pause(); // stops reading the socket: the host's answers back up
      const n = rng.range(50, 400);
      for (let i = 0; i < n; i++) conn.send(encode(req(i, rng.pick(['console.attach', 'vm.list', 'host.info']), { name: rng.pick(ctx.target.vms) })));
      await ctx.sleep(rng.pick([500, 1500]));
      return;
    }
    // A frame (or a hello) begun and never finished: the host holds a partial frame.
    const sock = await ctx.raw({ localAddress: ctx.otherAddress() });
    ctx.write(sock, upgradeRequest(path, `${ctx.target.host}:${ctx.target.port}`));
    if (!(await sock.waitFor((b) => b.includes('\r\n\r\n'), 2000))) return;
    const frame = variant === 'partial-hello'
      ? wsFrame({ opcode: 2, payload: encode({ t: 'hello', v: CONTROL_PROTOCOL_VERSION, client: 'slow', nonce: new Uint8Array(32) }) })
      : wsFrame({ opcode: 2, announced: rng.pick([1000, 65_536, 1 << 20]), lengthForm: 64, payload: rng.bytes(8) });
    ctx.write(sock, frame.subarray(0, Math.max(1, rng.int(frame.length))));
    ctx.park(sock, variant);
  },
};
