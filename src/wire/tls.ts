/**
 * TLS for hosts and their clients. A host that has a certificate serves `wss://` and asks every
 * peer for one (mutual TLS): another host must present a certificate its CA signed (and, with an
 * allow list, one of the names on it, like QEMU's tls-authz); a control client may present one
 * too, or authenticate with the cluster token alone. Clients verify the host's certificate
 * against the CA they are given, or the system's CAs and NODE_EXTRA_CA_CERTS.
 */
import { readFileSync } from 'node:fs';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { FerryError } from '../errors.ts';

/** What a client (a CLI, or a host dialling another) presents and trusts. */
export interface TlsTrust {
  /** The CA the peer's certificate must chain to (default: the system's CAs). */
  ca?: Buffer;
  /** This side's own certificate and key (a host's; a CLI's if it has one). */
  cert?: Buffer;
  key?: Buffer;
}

/** A host's TLS: its certificate and key, the CA its peers' certificates must chain to, whom it lets migrate. */
export interface HostTls {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
  /** Certificate names (CN or DNS/IP SAN) of hosts allowed on /migrate; empty: any the CA signed. */
  allow: string[];
}

/** How a host (or a CLI) proves itself to a peer: the cluster token, a certificate, or both. */
export interface PeerCredentials {
  token?: string;
  tls?: TlsTrust;
}

function readPem(file: string, what: string): Buffer {
  let b: Buffer;
  try {
    b = readFileSync(file);
  } catch (e) {
    throw new FerryError('EINVAL', `cannot read the ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!b.toString('latin1').includes('-----BEGIN ')) throw new FerryError('EINVAL', `the ${what} ${file} is not a PEM file`);
  return b;
}

/** A host's TLS from its files: all three, or none. */
export function loadHostTls(o: { cert?: string; key?: string; ca?: string; allow?: string[] }): HostTls | undefined {
  const given = [o.cert, o.key, o.ca].filter((f) => f !== undefined).length;
  if (given === 0) return undefined;
  if (given !== 3) throw new FerryError('EINVAL', 'TLS needs all of --tls-cert, --tls-key and --tls-ca (the CA that signed the other hosts\' certificates)');
  return { cert: readPem(o.cert!, 'certificate'), key: readPem(o.key!, 'private key'), ca: readPem(o.ca!, 'CA certificate'), allow: o.allow ?? [] };
}

/** A client's trust from its files (each optional; a certificate needs its key). */
export function loadClientTls(o: { ca?: string; cert?: string; key?: string }): TlsTrust | undefined {
  if ((o.cert === undefined) !== (o.key === undefined)) throw new FerryError('EINVAL', 'a client certificate needs both --tls-cert and --tls-key');
  if (o.ca === undefined && o.cert === undefined) return undefined;
  return {
    ...(o.ca !== undefined ? { ca: readPem(o.ca, 'CA certificate') } : {}),
    ...(o.cert !== undefined ? { cert: readPem(o.cert, 'certificate'), key: readPem(o.key!, 'private key') } : {}),
  };
}

/** The names a peer's certificate carries: its CN and its DNS and IP subject alternative names. */
export function certificateNames(c: PeerCertificate): string[] {
  const names: string[] = [];
  if (typeof c.subject?.CN === 'string') names.push(c.subject.CN);
  for (const part of (c.subjectaltname ?? '').split(',')) {
    const m = /^\s*(?:DNS|IP Address):(.+)$/.exec(part);
    if (m) names.push(m[1]!.trim());
  }
  return names;
}

/**
 * Whether the peer on `socket` presented a certificate the host's CA signed (and, for an allow
 * list, one with an allowed name); undefined if so, else why not.
 */
export function peerCertificateProblem(socket: TLSSocket, allow: readonly string[]): string | undefined {
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return 'no client certificate';
  if (!socket.authorized) return `its certificate is not trusted (${String(socket.authorizationError)})`;
  if (allow.length > 0) {
    const names = certificateNames(cert);
    if (!names.some((n) => allow.includes(n))) return `its certificate (${names.join(', ') || 'no name'}) is not on the allow list`;
  }
  return undefined;
}
