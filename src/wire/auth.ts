import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { FerryError } from '../errors.ts';
import { peerText } from './peer-text.ts';

export const MIN_TOKEN_LENGTH = 16;

/**
 * The cluster token: from a file (first line, trimmed) or FERRY_TOKEN. It never crosses the
 * wire; peers prove they hold it by HMAC over a fresh challenge (control and migration alike).
 */
export function loadToken(file: string | undefined, env = process.env.FERRY_TOKEN): string | undefined {
  let token: string | undefined;
  if (file !== undefined) {
    try {
      token = readFileSync(file, 'utf8').split(/\r?\n/)[0]!.trim();
    } catch (e) {
      throw new FerryError('ETOKEN', `cannot read token file ${file}: ${(e as Error).message}`);
    }
    // As ssh does with a private key: a secret others can read is not a secret.
    if ((statSync(file).mode & 0o077) !== 0) {
      throw new FerryError('ETOKEN', `token file ${file} is readable by other users: chmod 600 ${file}`);
    }
  } else if (env !== undefined && env !== '') {
    token = env.trim();
  }
  if (token !== undefined && token.length < MIN_TOKEN_LENGTH) {
    throw new FerryError('ETOKEN', `the cluster token must be at least ${MIN_TOKEN_LENGTH} characters`);
  }
  return token;
}

export function newChallenge(): Uint8Array {
  return new Uint8Array(randomBytes(32));
}

/**
 * HMAC-SHA256(token, role | endpoint | challenge | binding). The role keeps a reflected mac from
 * being accepted; the endpoint (/control, /migrate) keeps a proof asked for one purpose from
 * opening the other; the binding (over TLS: keying material exported from this TLS session, the same on
 * both ends of it and on no other connection) keeps a proof relayed from another connection, by
 * an endpoint in the middle, from being accepted on this one.
 */
export function proof(token: string, role: 'client' | 'host', endpoint: string, challenge: Uint8Array, binding: Uint8Array = NO_BINDING): Uint8Array {
  return new Uint8Array(createHmac('sha256', token).update(`${role} ${endpoint}\0`).update(challenge).update(binding).digest());
}

export function verifyProof(token: string, role: 'client' | 'host', endpoint: string, challenge: Uint8Array, mac: unknown, binding: Uint8Array = NO_BINDING): boolean {
  if (!(mac instanceof Uint8Array) || mac.length !== 32) return false;
  return timingSafeEqual(proof(token, role, endpoint, challenge, binding), mac);
}

export const NO_BINDING = new Uint8Array(0);
const BINDING_LABEL = 'EXPORTER-ferry-token-proof';

/** What a token proof is bound to on `socket`: its TLS session's exported keying material, or nothing over plain TCP. */
export function channelBinding(socket: unknown): Uint8Array {
  const tls = socket as { encrypted?: boolean; exportKeyingMaterial?: (length: number, label: string) => Buffer } | undefined;
  if (!tls?.encrypted || typeof tls.exportKeyingMaterial !== 'function') return NO_BINDING;
  return new Uint8Array(tls.exportKeyingMaterial(32, BINDING_LABEL));
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export interface ReadyMsg {
  t: 'ready';
  v: number;
  host: string;
  /**
   * This host process's incarnation: random, new at every start. A peer that finds another
   * incarnation at the same address knows the process it dealt with is gone (and its VMs with it).
   */
  incarnation: string;
  proof?: Uint8Array;
}

/** What a host answers a client's hello with: the ready message and the checked hello, or why it closes (code, reason). */
export type HelloVerdict<T> = { ready: ReadyMsg; hello: T; nonce: Uint8Array } | { close: [number, string] };

export const CLOSE_AUTH_FAILED = 4001;
export const CLOSE_VERSION = 4002;
export const CLOSE_PROTOCOL = 1002;

const bytes = (min: number, max: number) => z.custom<Uint8Array>((v) => v instanceof Uint8Array && v.length >= min && v.length <= max, `expected ${min}-${max} bytes`);

/** The fields every client hello has; each endpoint adds its own (`extra`). */
const helloBase = {
  t: z.literal('hello'),
  v: z.number(),
  nonce: bytes(16, 64),
  mac: z.unknown().optional(),
};

/** A `/control` client's hello. */
export const controlHelloSchema = z.strictObject({ ...helloBase, client: z.string().max(64).optional() });

/** A `/migrate` source's hello: which channel of which migration (and whether it recovers one). */
export const migrateHelloSchema = z.strictObject({
  ...helloBase,
  /** bulk and prio carry a migration; query asks how one ended (a source that lost its link at the switch-over). */
  role: z.enum(['bulk', 'prio', 'query']),
  id: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'a migration id is 1-64 letters, digits or dashes'),
  recover: z.boolean().optional(),
});

/**
 * The host side of the hello exchange shared by /control and /migrate, in the order a peer
 * learns most from: the message type, the protocol version, (when a token is set) the client's
 * HMAC over our challenge, and only then the rest of the hello against `schema`. Peer text in a
 * reason is bounded (see closeReason), so no close can throw.
 */
export function checkHello<T>(
  msg: Record<string, unknown>, schema: z.ZodType<T>, version: number, host: { name: string; incarnation: string }, token: string | undefined,
  endpoint: string,
  challenge: Uint8Array | undefined,
  binding?: Uint8Array,
  /** The client presented a certificate the host's CA signed (over TLS): its proof may then be unbound. */
  certified = false,
): HelloVerdict<T> {
  if (msg.t !== 'hello') return { close: [CLOSE_PROTOCOL, `expected hello, got "${peerText(msg.t, 32)}"`] };
  if (msg.v !== version) {
    return { close: [CLOSE_VERSION, `protocol version ${peerText(msg.v, 16)} is not supported; this host speaks ${version}`] };
  }
  // The binding the client's proof was made with: this TLS session's, or (unbound) none, which
  // is accepted only from a client whose certificate this host's CA signed (a browser cannot
  // export keying material; a relaying endpoint would need such a certificate of its own).
  let proven = binding;
  if (token !== undefined && !verifyProof(token, 'client', endpoint, challenge!, msg.mac, binding)) {
    const unbound = binding !== undefined && binding.length > 0 && verifyProof(token, 'client', endpoint, challenge!, msg.mac, NO_BINDING);
    if (!unbound) return { close: [CLOSE_AUTH_FAILED, 'authentication failed: wrong or missing cluster token'] };
    if (!certified) return { close: [CLOSE_AUTH_FAILED, 'authentication failed: an unbound token proof (a browser\'s) needs a client certificate from this host\'s CA'] };
    proven = NO_BINDING;
  }
  const parsed = schema.safeParse(msg);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    return { close: [CLOSE_PROTOCOL, `malformed hello: ${i ? `${i.path.map(String).join('.')}: ${i.message}` : 'invalid'}`] };
  }
  const nonce = msg.nonce as Uint8Array;
  const hostProof = token !== undefined ? proof(token, 'host', endpoint, nonce, proven) : undefined;
  return { ready: { t: 'ready', v: version, host: host.name, incarnation: host.incarnation, ...(hostProof ? { proof: hostProof } : {}) }, hello: parsed.data, nonce };
}
