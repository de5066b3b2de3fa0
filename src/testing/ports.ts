import { createServer as createNetServer } from 'node:net';

/**
 * A free TCP port on 127.0.0.1 below Linux's ephemeral range (32768-60999), for a host that will be
 * killed and restarted at the same address: a port from the ephemeral range can be taken in
 * between by any process's outgoing connection (CI saw EADDRINUSE on a restart).
 */
export async function restartablePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const srv = createNetServer();
    const ok = await new Promise<boolean>((resolve) => {
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (ok) {
      await new Promise<void>((resolve) => srv.close(() => resolve()));
      return port;
    }
  }
  throw new Error('no free port in 20000-31999 after 200 tries');
}
