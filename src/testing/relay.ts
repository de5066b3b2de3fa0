// A WebSocket relay between a source and a destination host that sees every message and can
// break the link at a chosen one: drop that message, cut both legs (then refuse new connections,
// or accept and ignore them: a silent port), or freeze (forward nothing, answer nothing, close
// nothing: a partition). Pings and pongs are forwarded, never answered by the relay itself, so a
// frozen relay looks to both hosts like a silent network; what a frozen leg was sent, and a close
// of either leg, is delivered in order on `heal()` (as TCP delivers data and a FIN once a
// partition heals). Each leg keeps its direction: `up` is source -> destination, `down` the other way.
// `shape()` gives the link a bandwidth, a one-way delay and a loss rate (see LinkShape).
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { Packr } from 'msgpackr';
import WebSocket, { WebSocketServer } from 'ws';
import { restartablePort } from './ports.ts';

const packr = new Packr({ useRecords: false, moreTypes: true });

export type Direction = 'up' | 'down';

export interface RelayedMessage {
  dir: Direction;
  /** The endpoint path of the connection it travelled on (`/migrate`, `/control`). */
  path: string;
  /** The message type (`t`), or 'page-frame' for a binary page frame, 'other' for anything else. */
  t: string;
  msg: Record<string, unknown> | undefined;
  /** The message's size in bytes (a post-copy fault's page frame is one page; pushed frames are larger). */
  bytes: number;
}

export type RelayAction = 'drop' | 'cut-refuse' | 'cut-silent' | 'freeze' | 'pass';

/**
 * What the relay makes of the link, each direction alike (a message leaves in order, after those
 * before it): `bandwidth` bytes per second (0: unlimited), `delayMs` one way (the RTT is twice it),
 * and `loss`, the share of messages lost once on the way. The relay carries WebSocket messages
 * over TCP, and TCP hides a loss as a delay: a lost message arrives a retransmission timeout
 * late (`retransmitMs`, default max(200 ms, 3 x delayMs), as Linux's minimum RTO), holding up
 * what follows it.
 */
export interface LinkShape {
  bandwidth?: number;
  delayMs?: number;
  loss?: number;
  retransmitMs?: number;
}

export interface RelayRule {
  /** Which message triggers the rule (the first match only, unless `times` says otherwise). */
  match(m: RelayedMessage): boolean;
  /** 'drop' swallows the message; the others forward nothing from then on until `heal()`. */
  action: RelayAction;
  /** Called when the rule fires (after the action), e.g. to SIGKILL a host at that message. */
  then?: (m: RelayedMessage) => void;
  times?: number;
}

export interface MessageRelay {
  /** ws://127.0.0.1:PORT: migrate to this instead of the destination's own URL. */
  url: string;
  port: number;
  seen: RelayedMessage[];
  /** Adds a rule; rules are tried in order on every message. */
  on(rule: RelayRule): void;
  /** Resolves when a message matching `match` has passed (or triggered a rule). */
  waitFor(match: (m: RelayedMessage) => boolean, timeoutMs?: number): Promise<RelayedMessage>;
  /** Cuts every connection; then refuses new ones ('refuse', the default) or holds them open unanswered ('silent'). */
  cut(mode?: 'refuse' | 'silent'): void;
  freeze(): void;
  /** Undoes cut / freeze: the port listens and forwards again (existing frozen links resume). */
  heal(): Promise<void>;
  /** From now on, messages travel as `shape` says (replaces the previous shape; {} is a perfect link). */
  shape(shape: LinkShape): void;
  close(): Promise<void>;
}

interface Pair {
  client: WebSocket;
  server: WebSocket;
  path: string;
}

function describe(data: Buffer, isBinary: boolean, dir: Direction, path: string): RelayedMessage {
  const bytes = data.length;
  if (isBinary && (data[0] === 0x50 || data[0] === 0x51)) return { dir, path, t: 'page-frame', msg: undefined, bytes }; // plain or LZ4
  try {
    const v = packr.unpack(data) as Record<string, unknown>;
    if (v && typeof v === 'object' && typeof v.t === 'string') return { dir, path, t: v.t, msg: v, bytes };
  } catch { /* not msgpack */ }
  return { dir, path, t: 'other', msg: undefined, bytes };
}

export async function startMessageRelay(target: string, o: { port?: number } = {}): Promise<MessageRelay> {
  const targetOrigin = new URL(target).origin;
  const rules: { rule: RelayRule; left: number }[] = [];
  const waiters: { match: (m: RelayedMessage) => boolean; resolve: (m: RelayedMessage) => void }[] = [];
  const pairs = new Set<Pair>();
  const silentSockets = new Set<Socket>();
  let mode: 'open' | 'frozen' | 'silent' | 'refusing' = 'open';
  let held: (() => void)[] = [];
  let shape: LinkShape = {};
  /**
   * Per direction: when the wire is free again, and the messages on their way, in order (one
   * timer per direction, for the head of its queue: timers of their own could fire out of order).
   */
  const lanes: Record<Direction, { free: number; last: number; queue: { at: number; deliver: () => void }[]; timer: NodeJS.Timeout | undefined }> = {
    up: { free: 0, last: 0, queue: [], timer: undefined },
    down: { free: 0, last: 0, queue: [], timer: undefined },
  };

  function pump(dir: Direction): void {
    const lane = lanes[dir];
    lane.timer = undefined;
    const now = performance.now();
    while (lane.queue.length > 0 && lane.queue[0]!.at <= now) lane.queue.shift()!.deliver();
    if (lane.queue.length > 0) lane.timer = setTimeout(() => pump(dir), Math.max(1, lane.queue[0]!.at - now));
  }

  /** Runs `deliver` when a message of `bytes` sent now would arrive over the shaped link (at once on a perfect one). */
  function travel(dir: Direction, bytes: number, deliver: () => void): void {
    const lane = lanes[dir];
    const now = performance.now();
    const shaped = (shape.bandwidth ?? 0) > 0 || (shape.delayMs ?? 0) > 0 || (shape.loss ?? 0) > 0;
    if (!shaped && lane.queue.length === 0) {
      deliver();
      return;
    }
    const start = Math.max(now, lane.free);
    lane.free = start + ((shape.bandwidth ?? 0) > 0 ? (bytes / shape.bandwidth!) * 1000 : 0);
    const delay = shape.delayMs ?? 0;
    const lost = (shape.loss ?? 0) > 0 && Math.random() < shape.loss! ? shape.retransmitMs ?? Math.max(200, 3 * delay) : 0;
    const at = Math.max(lane.free + delay + lost, lane.last); // TCP delivers in order
    lane.last = at;
    lane.queue.push({ at, deliver });
    if (lane.timer === undefined) lane.timer = setTimeout(() => pump(dir), Math.max(1, at - now));
  }

  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 0, autoPong: false });
  const http: Server = createServer();
  http.on('connection', (s: Socket) => {
    if (mode === 'silent') {
      silentSockets.add(s);
      s.on('close', () => silentSockets.delete(s));
      s.pause();
    }
  });
  http.on('upgrade', (req, socket, head) => {
    if (mode === 'silent' || mode === 'refusing') return; // held open, or about to be refused
    wss.handleUpgrade(req, socket, head, (ws) => onClient(ws, req.url ?? '/'));
  });

  const relay: MessageRelay = {
    url: '',
    port: 0,
    seen: [],
    on(rule) {
      rules.push({ rule, left: rule.times ?? 1 });
    },
    waitFor(match, timeoutMs = 20_000) {
      const hit = relay.seen.find(match);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`relay: no such message within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({ match, resolve: (m) => { clearTimeout(t); resolve(m); } });
      });
    },
    cut(how = 'refuse') {
      for (const p of pairs) {
        p.client.terminate();
        p.server.terminate();
      }
      pairs.clear();
      if (how === 'refuse') {
        mode = 'refusing';
        http.close();
        http.closeAllConnections();
      } else {
        mode = 'silent';
      }
    },
    freeze() {
      mode = 'frozen';
    },
    shape(next) {
      shape = { ...next };
    },
    async heal() {
      if (mode === 'refusing') await listen(relay.port);
      for (const s of silentSockets) s.destroy();
      silentSockets.clear();
      mode = 'open';
      const h = held;
      held = [];
      for (const f of h) f();
    },
    async close() {
      for (const lane of Object.values(lanes)) {
        clearTimeout(lane.timer);
        lane.queue = [];
      }
      for (const p of pairs) {
        p.client.terminate();
        p.server.terminate();
      }
      for (const s of silentSockets) s.destroy();
      mode = 'refusing';
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
    },
  };

  function fire(m: RelayedMessage): RelayAction {
    relay.seen.push(m);
    let action: RelayAction = 'pass';
    let then: RelayRule['then'];
    for (const r of rules) {
      if (r.left === 0 || !r.rule.match(m)) continue;
      r.left--;
      action = r.rule.action;
      then = r.rule.then;
      break;
    }
    for (const w of waiters.splice(0)) {
      if (w.match(m)) w.resolve(m);
      else waiters.push(w);
    }
    if (action === 'cut-refuse') relay.cut('refuse');
    else if (action === 'cut-silent') relay.cut('silent');
    else if (action === 'freeze') relay.freeze();
    then?.(m);
    return action;
  }

  function forward(from: WebSocket, to: WebSocket, dir: Direction, path: string): void {
    from.on('message', (data: Buffer, isBinary: boolean) => {
      const send = () => {
        const m = describe(data, isBinary, dir, path);
        const action = fire(m);
        if (action === 'pass') travel(dir, data.length, () => { if (to.readyState === WebSocket.OPEN) to.send(data, { binary: isBinary }); });
      };
      if (mode === 'frozen') held.push(send);
      else if (mode === 'open') send();
    });
    from.on('ping', (d: Buffer) => {
      if (mode === 'open') travel(dir, d.length, () => { if (to.readyState === WebSocket.OPEN) to.ping(d); });
    });
    from.on('pong', (d: Buffer) => {
      if (mode === 'open') travel(dir, d.length, () => { if (to.readyState === WebSocket.OPEN) to.pong(d); });
    });
    from.on('close', (code) => {
      const pass = () => {
        if (to.readyState === WebSocket.OPEN) to.close(code === 1005 || code === 1006 ? 1000 : code);
        else to.terminate();
      };
      // Frozen: the close follows what was held, on heal. Cut: both legs are gone already.
      if (mode === 'frozen') held.push(pass);
      else if (mode === 'open') travel(dir, 0, pass); // after the messages before it
    });
    from.on('error', () => {});
  }

  function onClient(ws: WebSocket, path: string): void {
    const upstream = new WebSocket(`${targetOrigin}${path}`, { perMessageDeflate: false, maxPayload: 0, autoPong: false });
    const pair: Pair = { client: ws, server: upstream, path };
    pairs.add(pair);
    ws.on('close', () => pairs.delete(pair));
    upstream.on('error', () => ws.terminate());
    // Messages from the source wait until the destination leg is open.
    const early: [Buffer, boolean][] = [];
    ws.on('message', (d: Buffer, b: boolean) => {
      if (upstream.readyState === WebSocket.CONNECTING) early.push([d, b]);
    });
    upstream.once('open', () => {
      forward(upstream, ws, 'down', path);
      forward(ws, upstream, 'up', path);
      for (const [d, b] of early.splice(0)) {
        const m = describe(d, b, 'up', path);
        if (fire(m) === 'pass') travel('up', d.length, () => { if (upstream.readyState === WebSocket.OPEN) upstream.send(d, { binary: b }); });
      }
    });
  }

  async function listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(port, '127.0.0.1', () => {
        http.off('error', reject);
        resolve();
      });
    });
  }

  // A relay that refuses closes its port and listens on it again later: not an ephemeral port,
  // which some client connection could take as its source port meanwhile (EADDRINUSE).
  await listen(o.port ?? await restartablePort());
  relay.port = (http.address() as { port: number }).port;
  relay.url = `ws://127.0.0.1:${relay.port}`;
  return relay;
}
