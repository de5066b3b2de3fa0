import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import { FerryError } from '../errors.ts';
import { channelBinding, CLOSE_AUTH_FAILED, CLOSE_VERSION, proof, verifyProof } from './auth.ts';
import { packMsg } from './codec.ts';
import { decodeFromHost } from './control-protocol.ts';
import { frameKeysFor, MacSocket } from './frame-mac.ts';
import { closeWith, peerText } from './peer-text.ts';
import type { LinkSocket } from './socket.ts';
import type { TlsTrust } from './tls.ts';


export interface LinkOptions {
  /** ws://HOST:PORT/path */
  url: string;
  /** How to name the host in messages (default: url). */
  display?: string;
  version: number;
  token?: string;
  /** For wss://: whom to trust, and this side's certificate (see tls.ts). */
  tls?: TlsTrust;
  /** Extra fields for our hello (client name, role, migration id). */
  hello: Record<string, unknown>;
  maxPayload: number;
  timeoutMs?: number;
  /**
   * Send unmasked-equivalent frames (an all-zero mask, which ws skips). Masking protects
   * browser-facing proxies from script-made frames; between two Ferry hosts it only costs a
   * pass over every page byte.
   */
  zeroMask?: boolean;
}

/** Opens a link to a host (openLink, or a test's in-memory network). */
export type Dial = (o: LinkOptions) => Promise<{ ws: LinkSocket; host: string; incarnation: string }>;

/** Certificate errors of Node's TLS: the host was reached, and could not be trusted. */
const CERT_ERRORS = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME|UNABLE_TO_GET_ISSUER/;

/** A connection that failed before any hello, as a user should see it. */
function connectError(shown: string, err: NodeJS.ErrnoException): FerryError {
  if (err.code !== undefined && CERT_ERRORS.test(err.code)) {
    return new FerryError('ETLS', `host ${shown} presented a certificate this side does not trust (${err.code}): pass the CA that signed it with --tls-ca F (or NODE_EXTRA_CA_CERTS)`, err.code);
  }
  if (/alert|handshake|certificate/i.test(err.message)) {
    return new FerryError('ETLS', `host ${shown} refused the TLS handshake (${err.message}): it wants a client certificate its CA signed (--tls-cert F --tls-key F)`, err.code);
  }
  return new FerryError('ECONNECT', `cannot reach ferry host at ${shown}: ${err.message}`, err.code);
}

/** Maps a close of the handshake to the error a user should see. */
export function closeError(url: string, code: number, reason: string): FerryError {
  const why = reason ? peerText(reason, 123) : `connection closed (code ${code})`;
  return new FerryError(code === CLOSE_AUTH_FAILED ? 'EAUTH' : code === CLOSE_VERSION ? 'EVERSION' : 'ECLOSED', `host ${url}: ${why}`);
}

/**
 * Opens an authenticated WebSocket to a Ferry host endpoint: waits for the host's hello,
 * answers with ours (plus the HMAC over its challenge when it asks for a token), and checks the
 * host's proof over our nonce. Resolves once ready with the socket, its listeners removed (over
 * plain TCP with a token: wrapped so every message is tagged, see frame-mac.ts).
 */
export function openLink(o: LinkOptions): Promise<{ ws: LinkSocket; host: string; incarnation: string }> {
  const ws = new WebSocket(o.url, {
    perMessageDeflate: false, maxPayload: o.maxPayload,
    // Messages are delivered as they are read (ws's default): one per event-loop turn held a
    // post-copy source's fault requests behind its own page sends, 2.3 ms at p50 on the
    // datacenter bed. Those that come right behind `ready` are held for the caller (holdEarly).
    allowSynchronousEvents: true,
    ...(o.zeroMask ? { generateMask: (mask: Buffer) => { mask.fill(0); } } : {}),
    ...(o.tls?.ca ? { ca: o.tls.ca } : {}),
    ...(o.tls?.cert ? { cert: o.tls.cert, key: o.tls.key } : {}),
  });
  const nonce = new Uint8Array(randomBytes(32));
  const endpoint = new URL(o.url).pathname;
  // Over TLS, proofs are bound to this session (see auth.ts proof).
  let binding: Uint8Array = new Uint8Array(0);
  let challenge: Uint8Array | undefined;
  const shown = o.display ?? o.url;
  return new Promise((resolve, reject) => {
    const timeoutMs = o.timeoutMs ?? 10_000;
    const timer = setTimeout(() => fail(new FerryError('ETIMEDOUT', `no answer from ${shown} within ${timeoutMs} ms`)), timeoutMs);
    let settled = false;
    const fail = (e: FerryError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.removeAllListeners();
      ws.on('error', () => {});
      ws.terminate();
      reject(e);
    };
    ws.on('error', (err: NodeJS.ErrnoException) => fail(connectError(shown, err)));
    ws.on('upgrade', (res) => {
      try {
        binding = channelBinding(res.socket);
      } catch (e) {
        // A TLS session gone before its keying material could be read: no link (nothing escapes this handler).
        fail(new FerryError('ECONNECT', `cannot reach ferry host at ${shown}: ${(e as Error).message}`));
      }
    });
    ws.on('unexpected-response', (_req, res) => {
      // A host that refuses says why in the body (403: the certificate it wants); read a line of it.
      let body = '';
      const done = () => fail(new FerryError(res.statusCode === 403 ? 'EAUTH' : 'ECONNECT', `host ${shown} refused the connection (HTTP ${res.statusCode})${body ? `: ${peerText(body.trim(), 200)}` : ''}`));
      res.setEncoding('utf8');
      res.on('data', (d: string) => { if (body.length < 300) body += d; });
      res.on('end', done);
      res.on('error', done);
      setTimeout(done, 1000).unref();
    });
    ws.on('close', (code, reason) => fail(closeError(shown, code, reason.toString())));
    ws.on('message', (data: Buffer) => {
      let msg: Record<string, unknown>;
      try {
        msg = decodeFromHost(data);
      } catch {
        fail(new FerryError('EPROTO', `host ${shown} sent a malformed message during hello`));
        return;
      }
      if (msg.t === 'hello') {
        if (msg.v !== o.version) {
          fail(new FerryError('EVERSION', `host ${shown} speaks protocol ${peerText(msg.v, 16)}; this side speaks ${o.version}`));
          return;
        }
        challenge = msg.challenge instanceof Uint8Array ? msg.challenge : undefined;
        if (challenge !== undefined && o.token === undefined) {
          // Say hello anyway (without a proof): the host refuses it, and logs who was refused.
          ws.send(packMsg({ t: 'hello', v: o.version, nonce, ...o.hello }), () => {
            fail(new FerryError('EAUTH', `host ${shown} requires a cluster token: pass --token-file F or set FERRY_TOKEN`));
          });
          return;
        }
        if (o.token !== undefined && challenge === undefined) {
          // Mutual: a side that holds the token trusts only a host that proves it holds it too.
          fail(new FerryError('EAUTH', `host ${shown} asks for no cluster token, so it cannot prove it holds ours: refused (is it the host you meant? drop --token-file / FERRY_TOKEN to talk to a host without one)`));
          return;
        }
        ws.send(packMsg({
          t: 'hello', v: o.version, nonce, ...o.hello,
          ...(challenge !== undefined && o.token !== undefined ? { mac: proof(o.token, 'client', endpoint, challenge, binding) } : {}),
        }));
        return;
      }
      if (msg.t === 'ready') {
        if (o.token !== undefined && !verifyProof(o.token, 'host', endpoint, nonce, msg.proof, binding)) {
          fail(new FerryError('EAUTH', `host ${shown} could not prove it holds the cluster token`));
          return;
        }
        settled = true;
        clearTimeout(timer);
        ws.removeAllListeners();
        const keys = frameKeysFor(o.token, 'client', endpoint, challenge, nonce, binding);
        const link = keys ? new MacSocket(ws, keys) : ws;
        holdEarly(link);
        resolve({ ws: link, host: peerText(msg.host, 64), incarnation: peerText(msg.incarnation, 64) });
        return;
      }
      fail(new FerryError('EPROTO', `unexpected "${peerText(msg.t, 32)}" from host ${shown} during hello`));
    });
  });
}

/**
 * Keeps the messages `socket` emits before anyone listens (the rest of the chunk that held
 * `ready`) and hands them, in order, to the listeners the caller attaches: on the next macrotask
 * after its first 'message' listener, as the caller may attach more in the microtasks between, or
 * before the next message if one comes first. Afterwards messages go straight to the listeners.
 */
function holdEarly(socket: EventEmitter): void {
  const early: [Buffer, boolean][] = [];
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    socket.off('message', hold);
    for (const [data, isBinary] of early.splice(0)) socket.emit('message', data, isBinary);
  };
  // Registered first, so it runs ahead of the caller's listeners for the message that ends the hold.
  function hold(data: Buffer, isBinary: boolean): void {
    if (socket.listenerCount('message') > 1) release(); // the current message then reaches them after the held ones
    else early.push([data, isBinary]);
  }
  const onListener = (event: string | symbol) => {
    if (event !== 'message') return;
    socket.off('newListener', onListener);
    setImmediate(release);
  };
  socket.on('message', hold);
  socket.on('newListener', onListener);
}

/**
 * Gives sockets up: nothing that still arrives on them is heard. Without `close` they are cut at
 * once (a link given up for a new one); with it they are closed with that code and reason, so
 * what was sent before (a `failed` message) still reaches the peer.
 */
export function dropSockets(sockets: readonly (LinkSocket | undefined)[], close?: { code: number; reason: string }): void {
  for (const ws of sockets) {
    if (!ws) continue;
    ws.removeAllListeners('message');
    ws.on('error', () => {});
    if (close) closeWith(ws, close.code, close.reason);
    else ws.terminate();
  }
}
