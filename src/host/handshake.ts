/**
 * The host's side of the hello exchange, the same on /control and /migrate: our hello (with a
 * challenge when a token is set), then the peer's first message, checked by `checkHello`. Until
 * it is accepted the connection is pending in the Admission (timed, counted per address) and
 * may send messages of a few kilobytes only; once accepted it gets the endpoint's own limit and
 * is handed to `onReady`. Whatever the peer sends, this closes only this connection.
 */
import type { Socket } from 'node:net';
import type WebSocket from 'ws';
import type { z } from 'zod';
import { FerryError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { TLSSocket } from 'node:tls';
import { channelBinding, checkHello, CLOSE_PROTOCOL, newChallenge } from '../wire/auth.ts';
import { peerCertificateProblem } from '../wire/tls.ts';
import { decodeFromClient, encode } from '../wire/control-protocol.ts';
import { frameKeysFor, MacSocket } from '../wire/frame-mac.ts';
import { closeWith } from '../wire/peer-text.ts';
import type { LinkSocket } from '../wire/socket.ts';
import { setMaxPayload } from '../wire/ws-limits.ts';
import type { Admission } from './admission.ts';

export interface HandshakeOptions<T> {
  endpoint: string;
  version: number;
  hostName: string;
  incarnation: string;
  token: string | undefined;
  schema: z.ZodType<T>;
  /** The endpoint's message size limit, granted once the hello is accepted. */
  maxPayload: number;
  admission: Admission;
  socket: Socket;
  peer: string;
  log: Logger;
  /** The accepted connection: `ws` itself, or over plain TCP with a token, `ws` with every message tagged (frame-mac.ts). */
  onReady(hello: T, link: LinkSocket): void;
}

/**
 * Data a peer has not read beyond which its pings go unanswered: a peer that pings without
 * reading would otherwise make the host queue pongs for it without bound.
 */
const PONG_BACKLOG = 64 * 1024;

export function serverHandshake<T>(ws: WebSocket, o: HandshakeOptions<T>): void {
  const challenge = o.token === undefined ? undefined : newChallenge();
  ws.on('error', (err) => o.log.debug({ peer: o.peer, err: err.message }, `${o.endpoint} connection error`));
  ws.on('ping', (data: Buffer) => {
    if (ws.readyState === ws.OPEN && ws.bufferedAmount < PONG_BACKLOG) ws.pong(data);
  });
  ws.send(encode({ t: 'hello', v: o.version, host: o.hostName, ...(challenge ? { challenge } : {}) }));
  ws.once('message', (data: Buffer, isBinary: boolean) => {
    try {
      if (!isBinary) throw new FerryError('EPROTO', 'text frames are not part of the protocol; send msgpack in binary frames');
      const binding = channelBinding(o.socket);
      const certified = o.endpoint === '/control' && binding.length > 0 && peerCertificateProblem(o.socket as TLSSocket, []) === undefined;
      const verdict = checkHello(decodeFromClient(data), o.schema, o.version, { name: o.hostName, incarnation: o.incarnation }, o.token, o.endpoint, challenge, binding,
        certified);
      if ('close' in verdict) {
        o.admission.refused(`${o.endpoint} hello refused`, o.peer, verdict.close[1]);
        closeWith(ws, ...verdict.close);
        return;
      }
      o.admission.authenticated(o.socket);
      setMaxPayload(ws, o.maxPayload);
      ws.send(encode(verdict.ready));
      const keys = frameKeysFor(o.token, 'host', o.endpoint, challenge, verdict.nonce, binding);
      let link: LinkSocket = ws;
      if (keys) {
        const tagged = new MacSocket(ws, keys);
        link = tagged;
        tagged.on('frame-auth-failed', () => o.log.warn({ peer: o.peer }, `${o.endpoint} message failed authentication (altered, injected or replayed on the path?): connection closed`));
      }
      o.onReady(verdict.hello, link);
    } catch (e) {
      const why = e instanceof FerryError ? e.message : `internal error: ${(e as Error).message}`;
      if (!(e instanceof FerryError)) o.log.error({ err: e, peer: o.peer }, `${o.endpoint} hello failed unexpectedly`);
      else o.admission.refused(`${o.endpoint} hello refused`, o.peer, why);
      closeWith(ws, CLOSE_PROTOCOL, why);
    }
  });
}
