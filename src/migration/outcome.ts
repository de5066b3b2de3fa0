/**
 * Asking a destination how a migration ended, over a fresh link (`query` hello). Used by a source
 * that lost its link after sending the state section: only the destination knows whether it
 * resumed the guest. A host that answers with another incarnation than the one that took the
 * migration was restarted: the process that may have resumed the guest is gone with it.
 */
import { FerryError } from '../errors.ts';
import { openLink, type Dial, type LinkOptions } from '../wire/link.ts';
import { closeWith } from '../wire/peer-text.ts';
import { decodeMsg, encodeMsg } from './protocol.ts';

export type Outcome =
  | { outcome: 'completed' | 'discarded'; why: string }
  | { outcome: 'pending' | 'unreachable'; why: string };

const QUERY_TIMEOUT_MS = 5_000;

export async function queryOutcome(link: Omit<LinkOptions, 'hello'>, id: string, incarnation: string, pages: number, dial: Dial = openLink): Promise<Outcome> {
  let ws;
  try {
    const l = await dial({ ...link, hello: { role: 'query', id }, timeoutMs: QUERY_TIMEOUT_MS });
    ws = l.ws;
    if (l.incarnation !== incarnation) {
      return { outcome: 'discarded', why: `${link.display ?? link.url} is another incarnation of its host (restarted): the guest did not survive there` };
    }
  } catch (e) {
    return { outcome: 'unreachable', why: (e as Error).message };
  }
  const sock = ws;
  try {
    const answer = new Promise<ReturnType<typeof decodeMsg>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new FerryError('ETIMEDOUT', `no answer within ${QUERY_TIMEOUT_MS} ms`)), QUERY_TIMEOUT_MS);
      sock.once('message', (data: Buffer) => {
        clearTimeout(timer);
        try {
          resolve(decodeMsg(data, { pages }));
        } catch (e) {
          reject(e as Error);
        }
      });
      sock.once('close', () => {
        clearTimeout(timer);
        reject(new FerryError('ELINK', 'closed before answering'));
      });
      sock.on('error', () => {});
    });
    sock.send(encodeMsg({ t: 'query' }));
    const m = await answer;
    if (m.t !== 'outcome') return { outcome: 'unreachable', why: `answered "${m.t}" to a query` };
    return { outcome: m.outcome, why: m.message };
  } catch (e) {
    return { outcome: 'unreachable', why: (e as Error).message };
  } finally {
    closeWith(sock, 1000, 'query answered');
  }
}
