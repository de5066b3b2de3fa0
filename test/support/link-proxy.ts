// A TCP proxy between two hosts that a test can cut: every connection through it is destroyed at
// once (both hosts see the link drop), and while it is down new connections are accepted and
// dropped, as a broken network path does, so a reconnecting source keeps retrying.
import net from 'node:net';

export interface LinkProxy {
  /** ws://127.0.0.1:PORT, to migrate to instead of the destination's own URL. */
  url: string;
  /** Connections opened through the proxy so far. */
  connections: number;
  /** Bytes forwarded from client to server so far. */
  bytesUp: number;
  /** With `capture`: every byte forwarded from client to server, in order (what a tap on the wire sees). */
  captured(): Buffer;
  /** Destroys every open connection; with `down`, also drops new ones until `up()`. */
  cut(o?: { down?: boolean }): void;
  /** Stops forwarding on every open connection without closing it (a partition: no FIN, no RST). */
  freeze(): void;
  /** An attacker on the path: writes `bytes` into every open connection, client to server, between what it forwards. */
  inject(bytes: Buffer): void;
  up(): void;
  close(): Promise<void>;
}

export interface LinkProxyOptions {
  /** Keep every byte forwarded from client to server (see `captured`). */
  capture?: boolean;
  /** An attacker on the path: flips the bits of `xor` in the byte at `offset` of each connection's client-to-server stream. */
  flip?: { offset: number; xor: number };
}

export async function startLinkProxy(target: string, o: LinkProxyOptions = {}): Promise<LinkProxy> {
  const t = new URL(target);
  const chunks: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const toServer = new Set<net.Socket>();
  let down = false;
  const server = net.createServer((client) => {
    proxy.connections++;
    if (down) {
      client.resetAndDestroy();
      return;
    }
    const server = net.connect(Number(t.port), t.hostname);
    toServer.add(server);
    server.on('close', () => toServer.delete(server));
    for (const s of [client, server]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        server.destroy();
      });
    }
    let upstream = 0;
    client.on('data', (d: Buffer) => {
      const flip = o.flip;
      if (flip && flip.offset >= upstream && flip.offset < upstream + d.length) d[flip.offset - upstream]! ^= flip.xor;
      upstream += d.length;
      proxy.bytesUp += d.length;
      if (o.capture) chunks.push(d);
    });
    client.pipe(server);
    server.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const proxy: LinkProxy = {
    url: `${t.protocol}//127.0.0.1:${port}`,
    connections: 0,
    bytesUp: 0,
    captured: () => Buffer.concat(chunks),
    cut(o = {}) {
      if (o.down) down = true;
      for (const s of sockets) s.resetAndDestroy();
    },
    up() {
      down = false;
    },
    inject(bytes: Buffer) {
      for (const s of toServer) s.write(bytes);
    },
    freeze() {
      for (const s of sockets) {
        s.unpipe();
        s.pause();
      }
    },
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
  return proxy;
}
