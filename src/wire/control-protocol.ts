/**
 * The control protocol between `ferry` clients and a host (`/control`), msgpackr-encoded, one
 * message per WebSocket frame.
 *
 *   client                                   host
 *     |  <------ hello {v, host, challenge?} --- |   on connect; challenge when a token is required
 *     |  --- hello {v, client, nonce, mac?} ---> |   mac = HMAC(token, "client /control" | challenge | binding)
 *     |  <------ ready {v, proof?} ------------- |   proof = HMAC(token, "host /control" | nonce | binding): the host knows it too
 *     |        (with a token over plain TCP, every message from here on carries a tag: frame-mac.ts)
 *     |  --- req {id, method, params} ---------> |
 *     |  <------ res {id, ok, result | error} -- |   error = {code, message}
 *     |  <------ event {event, vm?, data} ------ |   pushed: VM state changes, console output
 *
 * A version the host does not speak, a bad mac, or a request before `ready` closes the
 * connection with a reason; a malformed or unknown request gets an error reply.
 */
import { z } from 'zod';
import { FerryError } from '../errors.ts';
import { packMsg, unpackChecked, type MsgpackLimits } from './codec.ts';
import { peerText } from './peer-text.ts';

/** 2: token proofs name their endpoint, and messages after the hello carry tags over plain TCP (frame-mac.ts). */
export const CONTROL_PROTOCOL_VERSION = 2;
/** Largest control frame a host accepts once a client is authenticated (an uploaded ELF travels in one). */
export const CONTROL_MAX_PAYLOAD = 32 * 1024 * 1024;

export interface ErrorBody {
  code: string;
  message: string;
}

export type ServerMsg =
  | { t: 'hello'; v: number; host: string; challenge?: Uint8Array }
  | { t: 'ready'; v: number; host: string; incarnation: string; proof?: Uint8Array }
  | { t: 'res'; id: number; ok: true; result: unknown }
  | { t: 'res'; id: number; ok: false; error: ErrorBody }
  | { t: 'event'; event: string; vm?: string; data: unknown }
  | { t: 'error'; error: ErrorBody };

export type ClientMsg =
  | { t: 'hello'; v: number; client: string; nonce: Uint8Array; mac?: Uint8Array }
  | { t: 'req'; id: number; method: string; params?: Record<string, unknown> };

/** What a host decodes from a client: small and flat, except an uploaded ELF (a binary). */
const FROM_CLIENT: MsgpackLimits = { maxDepth: 4, maxString: 64 * 1024, maxBinary: CONTROL_MAX_PAYLOAD, maxItems: 4096 };
/** What a client decodes from a host: VM lists, statistics with their rounds, console output. */
const FROM_HOST: MsgpackLimits = { maxDepth: 16, maxString: 1024 * 1024, maxBinary: CONTROL_MAX_PAYLOAD, maxItems: 1_000_000 };

export function encode(msg: ServerMsg | ClientMsg): Buffer {
  return packMsg(msg);
}

/** Decodes one frame from a client; throws FerryError EPROTO for anything that is not a message map. */
export function decodeFromClient(frame: Uint8Array): Record<string, unknown> {
  return asMessage(unpackChecked(frame, FROM_CLIENT));
}

/** Decodes one frame from a host (see decodeFromClient). */
export function decodeFromHost(frame: Uint8Array): Record<string, unknown> {
  return asMessage(unpackChecked(frame, FROM_HOST));
}

function asMessage(v: unknown): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array || typeof (v as { t?: unknown }).t !== 'string') {
    throw new FerryError('EPROTO', 'malformed message: expected a map with a string "t" field');
  }
  return v as Record<string, unknown>;
}

/** A request from a client, as the host checks it: its id first, so that every other error can be answered to it. */
export const requestSchema = z.strictObject({
  t: z.literal('req'),
  id: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  method: z.string().max(64),
  /** Checked against the method's own schema (a map of its parameters). */
  params: z.unknown().optional(),
});

/** What a client accepts from a host after the hello. */
const errorBodySchema = z.object({ code: z.string().max(64), message: z.string().max(64 * 1024) });
export const hostMsgSchema = z.union([
  z.object({ t: z.literal('res'), id: z.number(), ok: z.literal(true), result: z.unknown() }),
  z.object({ t: z.literal('res'), id: z.number(), ok: z.literal(false), error: errorBodySchema }),
  z.object({ t: z.literal('event'), event: z.string().max(64), vm: z.string().max(64).optional(), data: z.unknown() }),
  z.object({ t: z.literal('error'), error: errorBodySchema }),
]);
export type HostMsg = z.infer<typeof hostMsgSchema>;

export function errorBody(e: unknown): ErrorBody {
  if (e instanceof FerryError) return { code: e.code, message: e.message };
  return { code: 'EINTERNAL', message: e instanceof Error ? peerText(e.message, 1000) : 'internal error' };
}
