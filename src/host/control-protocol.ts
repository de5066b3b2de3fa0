/**
 * The control protocol between `ferry` clients and a host (`/control`), msgpackr-encoded, one
 * message per WebSocket frame.
 *
 *   client                                   host
 *     |  <------ hello {v, host, challenge?} --- |   on connect; challenge when a token is required
 *     |  --- hello {v, client, nonce, mac?} ---> |   mac = HMAC(token, "client" | challenge)
 *     |  <------ ready {v, proof?} ------------- |   proof = HMAC(token, "host" | nonce): the host knows it too
 *     |  --- req {id, method, params} ---------> |
 *     |  <------ res {id, ok, result | error} -- |   error = {code, message}
 *     |  <------ event {event, vm?, data} ------ |   pushed: VM state changes, console output
 *
 * A version the host does not speak, a bad mac, or a request before `ready` closes the
 * connection with a reason; a malformed or unknown request gets an error reply.
 */
import { Packr } from 'msgpackr';
import { FerryError } from '../errors.ts';

export const CONTROL_PROTOCOL_VERSION = 1;
/** Largest control frame a host accepts (an uploaded ELF travels in one). */
export const CONTROL_MAX_PAYLOAD = 32 * 1024 * 1024;

export interface ErrorBody {
  code: string;
  message: string;
}

export type ServerMsg =
  | { t: 'hello'; v: number; host: string; challenge?: Uint8Array }
  | { t: 'ready'; v: number; host: string; proof?: Uint8Array }
  | { t: 'res'; id: number; ok: true; result: unknown }
  | { t: 'res'; id: number; ok: false; error: ErrorBody }
  | { t: 'event'; event: string; vm?: string; data: unknown }
  | { t: 'error'; error: ErrorBody };

export type ClientMsg =
  | { t: 'hello'; v: number; client: string; nonce: Uint8Array; mac?: Uint8Array }
  | { t: 'req'; id: number; method: string; params?: Record<string, unknown> };

const packr = new Packr({ useRecords: false, moreTypes: true });

export function encode(msg: ServerMsg | ClientMsg): Buffer {
  return packr.pack(msg);
}

/** Decodes one frame; throws FerryError EPROTO for anything that is not a message object. */
export function decode(frame: Uint8Array): Record<string, unknown> {
  let v: unknown;
  try {
    v = packr.unpack(frame);
  } catch (e) {
    throw new FerryError('EPROTO', `malformed message: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v) || typeof (v as { t?: unknown }).t !== 'string') {
    throw new FerryError('EPROTO', 'malformed message: expected a map with a string "t" field');
  }
  return v as Record<string, unknown>;
}

export function errorBody(e: unknown): ErrorBody {
  if (e instanceof FerryError) return { code: e.code, message: e.message };
  return { code: 'EINTERNAL', message: e instanceof Error ? e.message : String(e) };
}
