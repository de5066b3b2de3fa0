import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { FerryError } from '../errors.ts';

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

/** HMAC-SHA256(token, role | challenge); the role keeps a reflected mac from being accepted. */
export function proof(token: string, role: 'client' | 'host', challenge: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac('sha256', token).update(role).update(challenge).digest());
}

export function verifyProof(token: string, role: 'client' | 'host', challenge: Uint8Array, mac: unknown): boolean {
  if (!(mac instanceof Uint8Array) || mac.length !== 32) return false;
  return timingSafeEqual(proof(token, role, challenge), mac);
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** What a host answers a client's hello with: the ready message, or why it closes (code, reason). */
export type HelloVerdict =
  | { ready: { t: 'ready'; v: number; host: string; proof?: Uint8Array } }
  | { close: [number, string] };

export const CLOSE_AUTH_FAILED = 4001;
export const CLOSE_VERSION = 4002;
export const CLOSE_PROTOCOL = 1002;

/**
 * The host side of the hello exchange shared by /control and /migrate: the right message
 * type, the protocol version, and (when a token is set) the client's HMAC over our challenge.
 */
export function checkHello(
  msg: Record<string, unknown>, version: number, hostName: string, token: string | undefined, challenge: Uint8Array | undefined,
): HelloVerdict {
  if (msg.t !== 'hello') return { close: [CLOSE_PROTOCOL, `expected hello, got "${String(msg.t)}"`] };
  if (msg.v !== version) {
    return { close: [CLOSE_VERSION, `protocol version ${String(msg.v)} is not supported; this host speaks ${version}`] };
  }
  if (token !== undefined && !verifyProof(token, 'client', challenge!, msg.mac)) {
    return { close: [CLOSE_AUTH_FAILED, 'authentication failed: wrong or missing cluster token'] };
  }
  const nonce = msg.nonce;
  const hostProof = token !== undefined && nonce instanceof Uint8Array ? proof(token, 'host', nonce) : undefined;
  return { ready: { t: 'ready', v: version, host: hostName, ...(hostProof ? { proof: hostProof } : {}) } };
}
