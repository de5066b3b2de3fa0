// @ts-check
/**
 * The dashboard's control client: the same `/control` protocol and handshake as the CLI
 * (src/wire/link.ts, auth.ts, frame-mac.ts), in the browser. With a cluster token each side
 * proves it holds it by HMAC over the other's challenge (the token never crosses the wire), and
 * over plain ws:// every message after the hello carries a 16-byte ChaCha20-Poly1305 tag keyed
 * per connection and direction. The crypto is @noble's (pure JavaScript), so it also works on a
 * plain-http page reached by a non-loopback address, where browsers withhold WebCrypto.
 */
import { Packr } from 'msgpackr';
import { chacha20poly1305 } from '@noble/ciphers/chacha';
import { hmac } from '@noble/hashes/hmac';
import { hkdf } from '@noble/hashes/hkdf';
import { sha256 } from '@noble/hashes/sha2';

/** Must match CONTROL_PROTOCOL_VERSION (src/wire/control-protocol.ts). */
export const CONTROL_PROTOCOL_VERSION = 2;
const ENDPOINT = '/control';
const TAG_BYTES = 16;
/** How long a request waits for its answer (a migration's start answers at once; it is followed by events). */
const REQUEST_TIMEOUT_MS = 30_000;

const packr = new Packr({ useRecords: false, moreTypes: true });
const utf8 = new TextEncoder();

/** @param {Uint8Array[]} parts */
function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * HMAC-SHA256(token, role | endpoint | challenge) as auth.ts `proof` (no TLS binding: a browser cannot export it).
 * @param {string} token @param {'client' | 'host'} role @param {Uint8Array} challenge
 */
function proof(token, role, challenge) {
  return hmac(sha256, utf8.encode(token), concat(utf8.encode(`${role} ${ENDPOINT}\0`), challenge));
}

/** @param {Uint8Array} a @param {unknown} b */
function sameBytes(a, b) {
  if (!(b instanceof Uint8Array) || a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

/** One direction's tags (frame-mac.ts TagStream). */
class TagStream {
  /** @param {Uint8Array} key */
  constructor(key) {
    this.key = key;
    this.seq = 0n;
  }

  /** @param {Uint8Array} message */
  tag(message) {
    const nonce = new Uint8Array(12);
    new DataView(nonce.buffer).setBigUint64(4, this.seq++);
    return chacha20poly1305(this.key, nonce, message).encrypt(new Uint8Array(0));
  }
}

/**
 * @typedef {{ code: string, message: string }} HostError
 * @typedef {{ t: 'res', id: number, ok: boolean, result?: unknown, error?: HostError }
 *   | { t: 'event', event: string, vm?: string, data: unknown }
 *   | { t: 'error', error: HostError }} HostMsg
 */

export class FerryRequestError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/**
 * An authenticated connection to one host's /control. Dispatches 'event' (detail: {event, vm,
 * data}) and 'close' (detail: {code, reason}).
 */
export class HostConnection extends EventTarget {
  /**
   * @param {WebSocket} ws
   * @param {string} url
   * @param {string} host
   * @param {{ send: TagStream, receive: TagStream } | undefined} tags
   */
  constructor(ws, url, host, tags) {
    super();
    this.ws = ws;
    this.url = url;
    this.host = host;
    this.tags = tags;
    this.nextId = 1;
    /** @type {Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>} */
    this.pending = new Map();
    this.closed = false;
    ws.onmessage = (e) => this.onMessage(new Uint8Array(/** @type {ArrayBuffer} */ (e.data)));
    ws.onclose = (e) => this.onClose(e.code, e.reason);
  }

  /**
   * Opens `url` (ws:// or wss://, its /control endpoint). Rejects with why it could not: no
   * answer, a token needed, a wrong token, a host that could not prove it holds ours.
   * @param {string} url
   * @param {{ token?: string, timeoutMs?: number }} [o]
   * @returns {Promise<HostConnection>}
   */
  static open(url, o = {}) {
    const u = new URL(url);
    u.pathname = ENDPOINT;
    const ws = new WebSocket(u.href);
    ws.binaryType = 'arraybuffer';
    const nonce = crypto.getRandomValues(new Uint8Array(32));
    const token = o.token === '' ? undefined : o.token;
    return new Promise((resolve, reject) => {
      /** @type {Uint8Array | undefined} */
      let challenge;
      let settled = false;
      /** @param {FerryRequestError} e */
      const fail = (e) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ws.onclose = null;
        ws.onmessage = null;
        ws.close();
        reject(e);
      };
      const timer = setTimeout(() => fail(new FerryRequestError('ETIMEDOUT', `no answer from ${url}`)), o.timeoutMs ?? 10_000);
      // A browser does not say why a WebSocket failed; over wss:// the likely reason is the certificate the host asks for.
      const hint = u.protocol === 'wss:' ? ' (over wss:// the host asks this browser for a client certificate its CA signed: import one)' : '';
      ws.onerror = () => fail(new FerryRequestError('ECONNECT', `cannot reach the host at ${url}${hint}`));
      ws.onclose = (e) => fail(e.code === 4001
        ? new FerryRequestError(/certificate/.test(e.reason) ? 'ECERT' : 'EAUTH', e.reason ? `${url}: ${e.reason}` : 'wrong cluster token')
        : new FerryRequestError('ECONNECT', `${url} closed the connection${e.reason ? `: ${e.reason}` : ''}`));
      ws.onmessage = (e) => {
        /** @type {Record<string, unknown>} */
        let msg;
        try {
          msg = packr.unpack(new Uint8Array(/** @type {ArrayBuffer} */ (e.data)));
        } catch {
          fail(new FerryRequestError('EPROTO', `${url} sent a malformed message`));
          return;
        }
        if (msg.t === 'hello') {
          if (msg.v !== CONTROL_PROTOCOL_VERSION) {
            fail(new FerryRequestError('EVERSION', `${url} speaks protocol ${String(msg.v)}; this page speaks ${CONTROL_PROTOCOL_VERSION}`));
            return;
          }
          challenge = msg.challenge instanceof Uint8Array ? msg.challenge : undefined;
          if (challenge !== undefined && token === undefined) {
            fail(new FerryRequestError('ENEEDTOKEN', `host ${String(msg.host)} requires the cluster token`));
            return;
          }
          if (challenge === undefined && token !== undefined) {
            fail(new FerryRequestError('EAUTH', `${url} asks for no cluster token, so it cannot prove it holds this one: refused`));
            return;
          }
          const hello = { t: 'hello', v: CONTROL_PROTOCOL_VERSION, nonce, client: 'ferry-dashboard', ...(challenge && token !== undefined ? { mac: proof(token, 'client', challenge) } : {}) };
          ws.send(packr.pack(hello));
          return;
        }
        if (msg.t === 'ready') {
          if (token !== undefined && !sameBytes(proof(token, 'host', nonce), msg.proof)) {
            fail(new FerryRequestError('EAUTH', `${url} could not prove it holds the cluster token`));
            return;
          }
          settled = true;
          clearTimeout(timer);
          ws.onerror = null;
          // Over wss:// TLS authenticates every record; over ws:// with a token every message is tagged (frame-mac.ts).
          let tags;
          if (token !== undefined && challenge !== undefined && u.protocol === 'ws:') {
            const salt = concat(challenge, nonce);
            const key = (/** @type {string} */ dir) => hkdf(sha256, utf8.encode(token), salt, `ferry frames ${ENDPOINT} ${dir}`, 32);
            tags = { send: new TagStream(key('client->host')), receive: new TagStream(key('host->client')) };
          }
          resolve(new HostConnection(ws, url, String(msg.host), tags));
          return;
        }
        fail(new FerryRequestError('EPROTO', `unexpected "${String(msg.t)}" from ${url} during hello`));
      };
    });
  }

  /** @param {Uint8Array} frame */
  onMessage(frame) {
    let message = frame;
    if (this.tags) {
      message = frame.subarray(0, frame.length - TAG_BYTES);
      if (frame.length < TAG_BYTES || !sameBytes(this.tags.receive.tag(message), frame.subarray(frame.length - TAG_BYTES))) {
        this.ws.close(4003, 'message authentication failed');
        this.onClose(4003, 'a message from the host failed authentication');
        return;
      }
    }
    /** @type {HostMsg} */
    let msg;
    try {
      msg = packr.unpack(message);
    } catch {
      this.ws.close(1002, 'malformed message');
      return;
    }
    if (msg.t === 'res') {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new FerryRequestError(msg.error?.code ?? 'EFAIL', msg.error?.message ?? 'failed'));
    } else if (msg.t === 'event') {
      this.dispatchEvent(new CustomEvent('event', { detail: { event: msg.event, vm: msg.vm, data: msg.data } }));
    }
  }

  /** @param {number} code @param {string} reason */
  onClose(code, reason) {
    if (this.closed) return;
    this.closed = true;
    const e = new FerryRequestError('ECLOSED', `connection to ${this.host} closed${reason ? `: ${reason}` : ` (${code})`}`);
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.dispatchEvent(new CustomEvent('close', { detail: { code, reason } }));
  }

  /**
   * @template [T=any]
   * @param {string} method
   * @param {Record<string, unknown>} [params]
   * @param {number} [timeoutMs] a host that does not answer within it fails the request (ETIMEDOUT)
   * @returns {Promise<T>}
   */
  request(method, params = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
    if (this.closed) return Promise.reject(new FerryRequestError('ECLOSED', `not connected to ${this.host}`));
    const id = this.nextId++;
    const body = packr.pack({ t: 'req', id, method, params });
    this.ws.send(this.tags ? concat(body, this.tags.send.tag(body)) : body);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.delete(id)) reject(new FerryRequestError('ETIMEDOUT', `${this.host} did not answer ${method} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => { clearTimeout(timer); /** @type {(v: unknown) => void} */ (resolve)(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
    });
  }

  close() {
    this.ws.close(1000, 'bye');
  }
}

/** @param {string} wsUrl the dashboard page of the host at a control URL */
export function dashboardUrl(wsUrl) {
  const u = new URL(wsUrl);
  return `${u.protocol === 'wss:' ? 'https:' : 'http:'}//${u.host}/`;
}
