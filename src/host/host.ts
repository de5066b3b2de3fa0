import type { PolicyRegistry } from '../migration/policies.ts';
import { HostMetrics } from './metrics.ts';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { FerryError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { MIGRATION_MAX_PAYLOAD, MIGRATION_PROTOCOL_VERSION, warmCodec } from '../migration/protocol.ts';
import { keepSpareVcpuThread } from '../vm/vcpu-threads.ts';
import { controlHelloSchema, isLoopback, migrateHelloSchema } from '../wire/auth.ts';
import { CONTROL_MAX_PAYLOAD, CONTROL_PROTOCOL_VERSION } from '../wire/control-protocol.ts';
import { peerCertificateProblem, type HostTls } from '../wire/tls.ts';
import { Admission } from './admission.ts';
import { DashboardFiles } from './dashboard.ts';
import { hostHeaderProblem, originProblem, type OriginPolicy } from './origin.ts';
import { ControlConnection } from './control-server.ts';
import { serverHandshake } from './handshake.ts';
import { DEFAULT_LIMITS, type HostLimits } from './limits.ts';
import { MigrationManager } from './migrations.ts';
import { VmRegistry } from './registry.ts';

export interface HostOptions {
  host: string;
  port: number;
  name: string;
  token?: string;
  maxMemory: number;
  log: Logger;
  /**
   * The control URL other hosts reach this one at, when it is not the listen address (a proxy,
   * NAT); given to destinations so they can check on (and report to) the source.
   */
  advertise?: string;
  /** TLS: serve wss://, ask every peer for a certificate, and present ours to the hosts we dial (see wire/tls.ts). */
  tls?: HostTls;
  /** Pre-authentication and idle limits (default DEFAULT_LIMITS). */
  limits?: HostLimits;
  /** The convergence policies and push orders migrations from here may name (default: the built-in ones). */
  policies?: PolicyRegistry;
}

const HEARTBEAT_MS = 15_000;

/**
 * One Ferry host: an HTTP server carrying the WebSocket endpoints (`/control`, `/migrate`), and
 * the VMs it runs. Every connection passes the Admission (bounded, timed) until its hello is
 * accepted; nothing a peer sends can throw out of its connection's handlers.
 */
export class Host {
  readonly registry: VmRegistry;
  readonly migrations: MigrationManager;
  private readonly http: Server | HttpsServer;
  private readonly control: WebSocketServer;
  private readonly migrate: WebSocketServer;
  private readonly admission: Admission;
  private readonly metrics: HostMetrics;
  private readonly limits: HostLimits;
  private readonly conns = new Set<ControlConnection>();
  private readonly originPolicy: OriginPolicy;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private stopping: Promise<void> | undefined;
  /** New at every start of this process (see ReadyMsg.incarnation). */
  readonly incarnation = randomUUID();

  constructor(private readonly o: HostOptions) {
    if (!isLoopback(o.host) && o.token === undefined && o.tls === undefined) {
      throw new FerryError('ETOKEN', `listening on ${o.host} (not loopback) requires TLS (--tls-cert F --tls-key F --tls-ca F) or a cluster token (--token-file F, or FERRY_TOKEN)`);
    }
    this.log = o.log;
    this.limits = o.limits ?? DEFAULT_LIMITS;
    this.admission = new Admission(this.limits, o.log);
    this.registry = new VmRegistry(o.name, o.maxMemory, o.log);
    const timeouts = { headersTimeout: this.limits.helloTimeoutMs, requestTimeout: this.limits.helloTimeoutMs };
    this.metrics = new HostMetrics(o.name, this.registry);
    const dashboard = new DashboardFiles();
    const notFound = (req: IncomingMessage, res: ServerResponse) => {
      const path = (req.url ?? '').split('?')[0] ?? '';
      if (dashboard.handles(path)) {
        dashboard.serve(req, res, path).catch((e: Error) => {
          this.log.warn({ err: e.message, path }, 'dashboard file failed');
          if (!res.headersSent) res.writeHead(500, { connection: 'close' }).end();
        });
        return;
      }
      if (req.method === 'GET' && path === '/metrics') {
        const misdirected = hostHeaderProblem(req.headers.host, this.originPolicy);
        if (misdirected !== undefined) {
          this.admission.refused('metrics refused', req.socket.remoteAddress ?? '?', misdirected);
          res.writeHead(403, { 'content-type': 'text/plain' }).end(`${misdirected}\n`);
          return;
        }
        this.metrics.serve(req, res, o.token, o.tls !== undefined).then((why) => {
          if (why !== undefined) this.admission.refused('metrics refused', req.socket.remoteAddress ?? '?', why);
        }, (e: Error) => {
          this.log.warn({ err: e.message }, 'metrics failed');
          if (!res.headersSent) res.writeHead(500, { connection: 'close' }).end();
        });
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`ferry host ${o.name}: the dashboard at /, WebSocket endpoints /control and /migrate, and GET /metrics\n`);
    };
    // With TLS every peer is asked for a certificate; whether it must have one is decided per endpoint (onUpgrade).
    this.http = o.tls
      ? createHttpsServer({
        ...timeouts, cert: o.tls.cert, key: o.tls.key, ca: o.tls.ca, requestCert: true, rejectUnauthorized: false,
        handshakeTimeout: this.limits.helloTimeoutMs, minVersion: 'TLSv1.2',
      }, notFound)
      : createServer(timeouts, notFound);
    this.http.on('connection', (socket: Socket) => this.admission.admit(socket));
    // A TLS handshake that fails (a client that does not trust our certificate, a wrong protocol) is a refusal too.
    this.http.on('tlsClientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      this.admission.refused('TLS handshake failed', socket.remoteAddress ?? '?', err.code ?? err.message);
    });
    // Until the hello is accepted a peer may send only small messages (raised in the handshake).
    // Pings are answered by the handshake, only to a peer that reads what it is sent.
    const wsOptions = { noServer: true, perMessageDeflate: false, maxPayload: this.limits.preAuthMaxPayload, autoPong: false };
    this.control = new WebSocketServer(wsOptions);
    this.migrate = new WebSocketServer(wsOptions);
    this.http.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
    this.control.on('connection', (ws, req: IncomingMessage) => this.onControl(ws, req));
    this.migrate.on('connection', (ws, req: IncomingMessage) => this.onMigrate(ws, req));
    const credentials = {
      ...(o.token !== undefined ? { token: o.token } : {}),
      ...(o.tls ? { tls: { ca: o.tls.ca, cert: o.tls.cert, key: o.tls.key } } : {}),
    };
    this.migrations = new MigrationManager(this.registry, credentials, o.log, (vm, info) => {
      this.metrics.observe(info);
      for (const c of this.conns) c.push('migration', vm, info);
    }, this.limits.migrationIdleMs, this.incarnation, o.policies);
    this.originPolicy = { tls: o.tls !== undefined, open: o.tls === undefined && o.token === undefined, peers: () => this.migrations.peers().map((p) => p.url) };
    this.registry.on('vm.state', (name: string, summary: unknown) => {
      for (const c of this.conns) c.push('vm.state', name, summary);
    });
    this.registry.on('console', (name: string, data: Uint8Array) => {
      for (const c of this.conns) if (c.consoles.has(name)) c.push('console', name, data, true);
    });
  }

  /** Starts listening; resolves with the URL clients should use (the real port if 0 was asked). */
  async start(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.o.port, this.o.host, () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    keepSpareVcpuThread(true);
    warmCodec();
    this.heartbeat = setInterval(() => this.ping(), HEARTBEAT_MS);
    this.heartbeat.unref();
    const addr = this.http.address() as AddressInfo;
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    const url = `${this.o.tls ? 'wss' : 'ws'}://${host}:${addr.port}`;
    this.migrations.selfUrl = this.o.advertise ?? url;
    const auth = [this.o.tls ? 'mutual TLS' : undefined, this.o.token !== undefined ? 'cluster token' : undefined].filter(Boolean).join(' + ') || 'none (loopback only)';
    this.log.info({ url, dashboard: `${url.replace(/^ws/, 'http')}/`, auth, tlsAllow: this.o.tls?.allow, limits: this.limits }, 'host listening');
    return url;
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = (req.url ?? '').split('?')[0];
    const wss = path === '/control' ? this.control : path === '/migrate' ? this.migrate : undefined;
    if (wss === undefined) {
      this.admission.refused('upgrade refused', req.socket.remoteAddress ?? '?', `no WebSocket endpoint ${path?.slice(0, 64)}`);
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-type: text/plain\r\n\r\nno such WebSocket endpoint\n');
      return;
    }
    const originRefusal = originProblem(path, req.headers.origin, req.headers.host, this.originPolicy);
    if (originRefusal !== undefined) {
      this.admission.refused('web page refused', req.socket.remoteAddress ?? '?', originRefusal);
      socket.end(`HTTP/1.1 403 Forbidden\r\nconnection: close\r\ncontent-type: text/plain\r\n\r\n${originRefusal}\n`);
      return;
    }
    if (this.o.tls) {
      // Another host must prove itself with a certificate; a control client with one, or with the token.
      const needCert = path === '/migrate' || this.o.token === undefined;
      const problem = peerCertificateProblem(req.socket as TLSSocket, path === '/migrate' ? this.o.tls.allow : []);
      if (needCert && problem !== undefined) {
        this.admission.refused('TLS peer refused', req.socket.remoteAddress ?? '?', `${path}: ${problem}`);
        socket.end(`HTTP/1.1 403 Forbidden\r\nconnection: close\r\ncontent-type: text/plain\r\n\r\n${path} needs a client certificate signed by this host's CA: ${problem}\n`);
        return;
      }
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  }

  private peerOf(req: IncomingMessage): string {
    return `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
  }

  private onControl(ws: WebSocket, req: IncomingMessage): void {
    const alive = { v: true };
    (ws as WebSocket & { ferryAlive?: { v: boolean } }).ferryAlive = alive;
    ws.on('pong', () => { alive.v = true; });
    const log = this.log.child({ conn: 'control' });
    serverHandshake(ws, {
      endpoint: '/control', version: CONTROL_PROTOCOL_VERSION, hostName: this.o.name, incarnation: this.incarnation, token: this.o.token, schema: controlHelloSchema,
      maxPayload: CONTROL_MAX_PAYLOAD, admission: this.admission, socket: req.socket, peer: this.peerOf(req), log,
      onReady: (hello, link) => {
        const conn = new ControlConnection(link, this.registry, this.migrations, log);
        this.conns.add(conn);
        ws.on('close', () => this.conns.delete(conn));
        log.info({ client: hello.client, peer: this.peerOf(req) }, 'control client connected');
      },
    });
  }

  /** `/migrate`: the same hello and HMAC as /control, then the connection belongs to a migration. */
  private onMigrate(ws: WebSocket, req: IncomingMessage): void {
    const peer = this.peerOf(req);
    serverHandshake(ws, {
      endpoint: '/migrate', version: MIGRATION_PROTOCOL_VERSION, hostName: this.o.name, incarnation: this.incarnation, token: this.o.token, schema: migrateHelloSchema,
      maxPayload: MIGRATION_MAX_PAYLOAD, admission: this.admission, socket: req.socket, peer, log: this.log,
      onReady: (hello, link) => this.migrations.accept(link, hello, peer),
    });
  }

  private ping(): void {
    for (const ws of this.control.clients) {
      const alive = (ws as WebSocket & { ferryAlive?: { v: boolean } }).ferryAlive;
      if (alive && !alive.v) {
        ws.terminate();
        continue;
      }
      if (alive) alive.v = false;
      ws.ping();
    }
  }

  /** Stops every VM (no worker left behind), closes connections and the listener. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('host stopping');
      if (this.heartbeat) clearInterval(this.heartbeat);
      await this.migrations.cancelAll();
      keepSpareVcpuThread(false);
      for (const ws of this.migrate.clients) ws.close(1001, 'host shutting down');
      for (const ws of this.control.clients) ws.close(1001, 'host shutting down');
      await this.registry.destroyAll();
      const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
      this.http.closeAllConnections();
      for (const ws of [...this.control.clients, ...this.migrate.clients]) ws.terminate();
      await closed;
      this.log.info('host stopped');
    })();
    return this.stopping;
  }
}
