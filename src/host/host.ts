import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { FerryError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { MIGRATION_MAX_PAYLOAD, MIGRATION_PROTOCOL_VERSION, warmCodec } from '../migration/protocol.ts';
import { checkHello, CLOSE_PROTOCOL, isLoopback, newChallenge } from './auth.ts';
import { CONTROL_MAX_PAYLOAD, decode, encode } from './control-protocol.ts';
import { ControlConnection } from './control-server.ts';
import { MigrationManager } from './migrations.ts';
import { VmRegistry } from './registry.ts';
import { keepSpareVcpuThread } from '../vm/vcpu-threads.ts';

export interface HostOptions {
  host: string;
  port: number;
  name: string;
  token?: string;
  maxMemory: number;
  log: Logger;
}

const HEARTBEAT_MS = 15_000;

/**
 * One Ferry host: an HTTP server carrying the WebSocket endpoints (`/control` now, `/migrate`
 * with migration), and the VMs it runs.
 */
export class Host {
  readonly registry: VmRegistry;
  readonly migrations: MigrationManager;
  private readonly http: Server;
  private readonly control: WebSocketServer;
  private readonly migrate: WebSocketServer;
  private readonly conns = new Set<ControlConnection>();
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private stopping: Promise<void> | undefined;

  constructor(private readonly o: HostOptions) {
    if (!isLoopback(o.host) && o.token === undefined) {
      throw new FerryError('ETOKEN', `listening on ${o.host} (not loopback) requires a cluster token: pass --token-file F or set FERRY_TOKEN`);
    }
    this.log = o.log;
    this.registry = new VmRegistry(o.name, o.maxMemory, o.log);
    this.http = createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`ferry host ${o.name}: WebSocket endpoints only (/control, /migrate)\n`);
    });
    this.control = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: CONTROL_MAX_PAYLOAD });
    this.migrate = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: MIGRATION_MAX_PAYLOAD });
    this.http.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
    this.control.on('connection', (ws) => this.onControl(ws));
    this.migrate.on('connection', (ws, req: IncomingMessage) => this.onMigrate(ws, req));
    this.migrations = new MigrationManager(this.registry, o.token, o.log, (vm, info) => {
      for (const c of this.conns) c.push('migration', vm, info);
    });
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
    const url = `ws://${host}:${addr.port}`;
    this.migrations.selfUrl = url;
    this.log.info({ url, auth: this.o.token !== undefined }, 'host listening');
    return url;
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = (req.url ?? '').split('?')[0];
    if (path === '/control') {
      this.control.handleUpgrade(req, socket, head, (ws) => this.control.emit('connection', ws, req));
      return;
    }
    if (path === '/migrate') {
      this.migrate.handleUpgrade(req, socket, head, (ws) => this.migrate.emit('connection', ws, req));
      return;
    }
    this.log.warn({ path }, 'upgrade to an unknown endpoint refused');
    socket.end(`HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-type: text/plain\r\n\r\nno WebSocket endpoint ${path}\n`);
  }

  private onControl(ws: WebSocket): void {
    const alive = { v: true };
    (ws as WebSocket & { ferryAlive?: { v: boolean } }).ferryAlive = alive;
    ws.on('pong', () => { alive.v = true; });
    const conn = new ControlConnection(ws, this.registry, this.migrations, this.o.token, this.log.child({ conn: 'control' }));
    this.conns.add(conn);
    ws.on('close', () => this.conns.delete(conn));
    ws.on('error', (err) => this.log.warn({ err: err.message }, 'control connection error'));
  }

  /** `/migrate`: the same hello and HMAC as /control, then the connection belongs to a migration. */
  private onMigrate(ws: WebSocket, req: IncomingMessage): void {
    const peer = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    const challenge = this.o.token === undefined ? undefined : newChallenge();
    ws.on('error', (err) => this.log.warn({ err: err.message, peer }, 'migration connection error'));
    ws.send(encode({ t: 'hello', v: MIGRATION_PROTOCOL_VERSION, host: this.o.name, ...(challenge ? { challenge } : {}) }));
    ws.once('message', (data: Buffer) => {
      let msg: Record<string, unknown>;
      try {
        msg = decode(data);
      } catch (e) {
        ws.close(CLOSE_PROTOCOL, (e as Error).message.slice(0, 120));
        return;
      }
      const verdict = checkHello(msg, MIGRATION_PROTOCOL_VERSION, this.o.name, this.o.token, challenge);
      if ('close' in verdict) {
        this.log.warn({ peer, reason: verdict.close[1] }, 'migration hello refused');
        ws.close(...verdict.close);
        return;
      }
      ws.send(encode(verdict.ready));
      this.migrations.accept(ws, msg, peer);
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
