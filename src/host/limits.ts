/**
 * What a host grants a peer before it has authenticated, and how long it waits for a peer that
 * says nothing (nginx's limit_conn and client_header_timeout, for Ferry's two endpoints).
 */
import { FerryError } from '../errors.ts';

export interface HostLimits {
  /** From the TCP connection to an accepted hello: the WebSocket upgrade and the hello must fit in this. */
  helloTimeoutMs: number;
  /** Connections not yet authenticated, from all addresses together. */
  maxPending: number;
  /** Connections not yet authenticated, from one remote address. */
  maxPendingPerAddress: number;
  /** The largest WebSocket message before the hello is accepted (a hello is a few hundred bytes). */
  preAuthMaxPayload: number;
  /** Before its switch-over, an incoming migration whose source says nothing for this long is given up. */
  migrationIdleMs: number;
}

export const DEFAULT_LIMITS: HostLimits = {
  helloTimeoutMs: 5_000,
  maxPending: 256,
  maxPendingPerAddress: 32,
  preAuthMaxPayload: 4 * 1024,
  migrationIdleMs: 30_000,
};

/** Environment overrides (for tests and tuning): FERRY_HELLO_TIMEOUT_MS, FERRY_MAX_PENDING, ... */
const ENV: Record<keyof HostLimits, string> = {
  helloTimeoutMs: 'FERRY_HELLO_TIMEOUT_MS',
  maxPending: 'FERRY_MAX_PENDING',
  maxPendingPerAddress: 'FERRY_MAX_PENDING_PER_ADDRESS',
  preAuthMaxPayload: 'FERRY_PREAUTH_MAX_PAYLOAD',
  migrationIdleMs: 'FERRY_MIGRATION_IDLE_MS',
};

/** The default limits with FERRY_* overrides applied; a bad value is a usage error naming the variable. */
export function limitsFromEnv(env: NodeJS.ProcessEnv = process.env): HostLimits {
  const limits = { ...DEFAULT_LIMITS };
  for (const key of Object.keys(ENV) as (keyof HostLimits)[]) {
    const text = env[ENV[key]];
    if (text === undefined || text === '') continue;
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < 1) throw new FerryError('EUSAGE', `${ENV[key]}=${text}: expected a positive integer`);
    limits[key] = n;
  }
  return limits;
}
