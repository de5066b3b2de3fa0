import { createServer as createNetServer } from 'node:net';

const FIRST = 20_000;
const SPAN = 12_000;
/** Test files that run side by side (vitest's pool slots) draw from ranges of their own. */
const SLOTS = 4;

/**
 * The ports this process draws from. A killed host's port is free until it restarts, and any
 * listener may take it meanwhile: under vitest, parallel test files each draw from their own
 * range (VITEST_POOL_ID), or one file's relay could take another's dead host's port and answer
 * for it (CI: a source asked a dead destination's address and heard "another incarnation").
 */
function range(): { first: number; span: number } {
  const slot = Number(process.env.VITEST_POOL_ID);
  if (!Number.isInteger(slot) || slot < 1) return { first: FIRST, span: SPAN };
  const span = SPAN / SLOTS;
  return { first: FIRST + ((slot - 1) % SLOTS) * span, span };
}

/**
 * A free TCP port on 127.0.0.1 below Linux's ephemeral range (32768-60999), for a host that will be
 * killed and restarted at the same address: a port from the ephemeral range can be taken in
 * between by any process's outgoing connection (CI saw EADDRINUSE on a restart).
 */
export async function restartablePort(): Promise<number> {
  const { first, span } = range();
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = first + Math.floor(Math.random() * span);
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
  throw new Error(`no free port in ${first}-${first + span - 1} after 200 tries`);
}
