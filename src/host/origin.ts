/**
 * Which web pages may open a WebSocket to this host. A browser sends an Origin header with every
 * WebSocket it opens, and lets any page open one to any address, the user's loopback included; a
 * host that accepted them all could be driven by any site its user visits (cross-site WebSocket
 * hijacking: a page on the web destroying VMs on a token-less loopback host). Programs (the CLI,
 * other hosts, the library) send no Origin and are not concerned.
 *
 * A page may connect when it is this host's own dashboard, or a dashboard of a host this one has
 * migrated with (a console follows its VM there). Own means: the Origin's host is the Host the
 * request was sent to, with the scheme this host serves. A host without a token or TLS listens on
 * loopback only and also requires that Host be a loopback name, so a page whose name was made to
 * resolve to 127.0.0.1 (DNS rebinding) is not taken for its own dashboard. Nothing browsers send
 * to `/migrate` is ever accepted.
 */
import { isLoopback } from '../wire/auth.ts';

export interface OriginPolicy {
  tls: boolean;
  /** True when the host has neither a token nor TLS (loopback only): the Origin is all that stands between a page and the host. */
  open: boolean;
  /** The control URLs (ws:// or wss://) of the hosts this one has migrated with. */
  peers(): string[];
}

/** Why a browser page may not open this WebSocket, or undefined if it may (or it is no browser). */
export function originProblem(endpoint: string, origin: string | undefined, hostHeader: string | undefined, policy: OriginPolicy): string | undefined {
  if (origin === undefined) return undefined;
  if (endpoint !== '/control') return `a web page may not open ${endpoint}`;
  let o: URL;
  try {
    o = new URL(origin);
  } catch {
    return `origin ${JSON.stringify(origin.slice(0, 100))} is not a URL`;
  }
  const scheme = policy.tls ? 'https:' : 'http:';
  if (o.protocol === scheme && hostHeader !== undefined && o.host === hostHeader.toLowerCase()) {
    if (!policy.open || isLoopback(o.hostname)) return undefined;
    return `page ${o.origin} is not a loopback address, and this host (no token, no TLS) serves its own machine only`;
  }
  for (const url of policy.peers()) {
    try {
      const p = new URL(url);
      if (`${p.protocol === 'wss:' ? 'https:' : 'http:'}//${p.host}` === o.origin) return undefined;
    } catch {
      // a peer URL that does not parse matches no page
    }
  }
  return `page ${o.origin} is neither this host's dashboard nor one of a host it has migrated with`;
}

/**
 * Why a plain HTTP request (GET /metrics) may not be answered: on a host without a token or TLS,
 * a request addressed by a name that is not loopback came through a name rebound to 127.0.0.1
 * (a page on another site reading the host's metrics through the user's browser).
 */
export function hostHeaderProblem(hostHeader: string | undefined, policy: OriginPolicy): string | undefined {
  if (!policy.open) return undefined;
  let name: string;
  try {
    name = new URL(`http://${hostHeader ?? ''}`).hostname;
  } catch {
    return 'a request without a valid Host';
  }
  return isLoopback(name) ? undefined : `Host ${JSON.stringify(name.slice(0, 100))} is not a loopback address, and this host (no token, no TLS) serves its own machine only`;
}
