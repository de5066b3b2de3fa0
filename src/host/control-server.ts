import type { WebSocket } from 'ws';
import { FerryError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { checkHello, CLOSE_PROTOCOL, newChallenge } from './auth.ts';
import {
  CONTROL_PROTOCOL_VERSION, decode, encode, errorBody, type ServerMsg,
} from './control-protocol.ts';
import type { MigrationManager } from './migrations.ts';
import type { VmRegistry } from './registry.ts';


/** Console output beyond this much unsent data is dropped for that client (it is too slow). */
const MAX_BUFFERED = 8 * 1024 * 1024;

type Handler = (params: Record<string, unknown>, conn: ControlConnection) => unknown;

function str(p: Record<string, unknown>, key: string): string {
  const v = p[key];
  if (typeof v !== 'string' || v === '') throw new FerryError('EINVAL', `parameter "${key}" must be a non-empty string`);
  return v;
}

function optNum(p: Record<string, unknown>, key: string): number | undefined {
  const v = p[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new FerryError('EINVAL', `parameter "${key}" must be a non-negative integer`);
  return v;
}

function optBool(p: Record<string, unknown>, key: string): boolean | undefined {
  const v = p[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new FerryError('EINVAL', `parameter "${key}" must be a boolean`);
  return v;
}

function optStrings(p: Record<string, unknown>, key: string): string[] | undefined {
  const v = p[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new FerryError('EINVAL', `parameter "${key}" must be a list of strings`);
  return v as string[];
}

/** The control methods, by name. Each validates its own parameters. */
export const METHODS: Record<string, Handler> = {
  'host.info': (_p, c) => ({
    name: c.registry.hostName, version: CONTROL_PROTOCOL_VERSION, vms: c.registry.names().length,
    memoryUsed: c.registry.usedMemory(), memoryLimit: c.registry.maxMemory,
  }),
  'vm.list': (_p, c) => c.registry.list(),
  'vm.info': (p, c) => c.registry.info(str(p, 'name')),
  'vm.create': (p, c) => {
    const elf = p.elf;
    if (elf !== undefined && !(elf instanceof Uint8Array)) throw new FerryError('EINVAL', 'parameter "elf" must be bytes');
    const program = p.program === undefined ? undefined : str(p, 'program');
    const memory = optNum(p, 'memory');
    const icount = optBool(p, 'icount');
    const insnLimit = optNum(p, 'insnLimit');
    const args = optStrings(p, 'args');
    const start = optBool(p, 'start');
    const elfName = p.elfName === undefined ? undefined : str(p, 'elfName');
    return c.registry.create({
      name: str(p, 'name'),
      ...(program !== undefined ? { program } : {}),
      ...(elf !== undefined ? { elf } : {}),
      ...(elfName !== undefined ? { elfName } : {}),
      ...(memory !== undefined ? { memory } : {}),
      ...(icount !== undefined ? { icount } : {}),
      ...(insnLimit !== undefined ? { insnLimit } : {}),
      ...(args !== undefined ? { args } : {}),
      ...(start !== undefined ? { start } : {}),
    });
  },
  'vm.start': (p, c) => c.registry.start(str(p, 'name')),
  'vm.pause': (p, c) => c.registry.pause(str(p, 'name')),
  'vm.resume': (p, c) => c.registry.resume(str(p, 'name')),
  'vm.stop': (p, c) => c.registry.stop(str(p, 'name')),
  'vm.destroy': async (p, c) => {
    const name = str(p, 'name');
    // A post-copy that lost its link holds the VM on both hosts; destroying it gives the guest up.
    const abandoned = c.migrations.abandonPaused(name);
    if (abandoned === undefined) return c.registry.destroy(name);
    await abandoned;
    return { name };
  },
  'vm.digest': (p, c) => c.registry.digest(str(p, 'name')),
  'vm.registers': (p, c) => c.registry.registers(str(p, 'name')),
  'console.attach': (p, c) => {
    const name = str(p, 'name');
    // follow: also for a VM not here (yet): its output shows up once it arrives by migration.
    const follow = optBool(p, 'follow') ?? false;
    const history = follow && !c.registry.names().includes(name) ? new Uint8Array(0) : c.registry.consoleHistory(name);
    c.consoles.add(name);
    return { name, history };
  },
  'console.detach': (p, c) => {
    c.consoles.delete(str(p, 'name'));
    return {};
  },
  'console.input': (p, c) => c.registry.input(str(p, 'name'), p.data),
  'migrate.start': (p, c) => {
    const mode = p.mode === undefined ? undefined : str(p, 'mode');
    if (mode !== undefined && mode !== 'precopy' && mode !== 'cold' && mode !== 'postcopy' && mode !== 'hybrid') {
      throw new FerryError('EINVAL', `migration mode "${mode}" is not one of precopy, postcopy, hybrid, cold`);
    }
    const postcopyAfterRounds = optNum(p, 'postcopyAfterRounds');
    const pushDelayMs = optNum(p, 'pushDelayMs');
    const downtimeLimitMs = optNum(p, 'downtimeLimitMs');
    const maxBandwidth = optNum(p, 'maxBandwidth');
    const maxRounds = optNum(p, 'maxRounds');
    const autoConverge = optBool(p, 'autoConverge');
    const autoRecover = optBool(p, 'autoRecover');
    return c.migrations.start({
      name: str(p, 'name'), to: str(p, 'to'),
      ...(mode !== undefined ? { mode } : {}),
      ...(downtimeLimitMs !== undefined ? { downtimeLimitMs } : {}),
      ...(maxBandwidth !== undefined ? { maxBandwidth } : {}),
      ...(maxRounds !== undefined ? { maxRounds } : {}),
      ...(autoConverge !== undefined ? { autoConverge } : {}),
      ...(postcopyAfterRounds !== undefined ? { postcopyAfterRounds } : {}),
      ...(pushDelayMs !== undefined ? { pushDelayMs } : {}),
      ...(autoRecover !== undefined ? { autoRecover } : {}),
    });
  },
  'migrate.start-postcopy': (p, c) => c.migrations.startPostcopy(str(p, 'name')),
  'migrate.status': (p, c) => c.migrations.status(str(p, 'name')),
  'migrate.cancel': (p, c) => c.migrations.cancel(str(p, 'name')),
  'migrate.recover': (p, c) => c.migrations.recover(str(p, 'name')),
  'migrate.pause': (p, c) => c.migrations.pause(str(p, 'name')),
};

/**
 * One client on `/control`: the hello/authentication exchange, then requests and pushed events.
 * A bad frame never takes the host down: it is answered, or this one connection is closed.
 */
export class ControlConnection {
  readonly consoles = new Set<string>();
  private phase: 'hello' | 'ready' = 'hello';
  private readonly challenge: Uint8Array | undefined;
  private droppedConsole = 0;

  constructor(
    private readonly ws: WebSocket,
    readonly registry: VmRegistry,
    readonly migrations: MigrationManager,
    private readonly token: string | undefined,
    private readonly log: Logger,
  ) {
    this.challenge = token === undefined ? undefined : newChallenge();
    this.send({ t: 'hello', v: CONTROL_PROTOCOL_VERSION, host: registry.hostName, ...(this.challenge ? { challenge: this.challenge } : {}) });
    ws.on('message', (data, isBinary) => void this.onFrame(data as Buffer, isBinary));
  }

  get ready(): boolean {
    return this.phase === 'ready';
  }

  send(msg: ServerMsg): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(encode(msg));
  }

  /** A pushed event; console output is dropped for a client that cannot keep up. */
  push(event: string, vm: string, data: unknown, droppable = false): void {
    if (!this.ready) return;
    if (droppable && this.ws.bufferedAmount > MAX_BUFFERED) {
      if (this.droppedConsole++ === 0) this.log.warn({ vm }, 'client is not reading: dropping console output');
      return;
    }
    this.send({ t: 'event', event, vm, data });
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason.slice(0, 120));
  }

  private async onFrame(data: Buffer, isBinary: boolean): Promise<void> {
    let msg: Record<string, unknown>;
    try {
      if (!isBinary) throw new FerryError('EPROTO', 'text frames are not part of the protocol; send msgpack in binary frames');
      msg = decode(data);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'bad control frame');
      if (this.phase === 'hello') this.close(CLOSE_PROTOCOL, (e as Error).message);
      else this.send({ t: 'error', error: errorBody(e) });
      return;
    }
    if (this.phase === 'hello') {
      this.onHello(msg);
      return;
    }
    if (msg.t !== 'req') {
      this.send({ t: 'error', error: { code: 'EPROTO', message: `unexpected message type "${String(msg.t)}"` } });
      return;
    }
    const id = msg.id;
    if (typeof id !== 'number' || !Number.isSafeInteger(id)) {
      this.send({ t: 'error', error: { code: 'EPROTO', message: 'request without an integer "id"' } });
      return;
    }
    const method = msg.method;
    const params = msg.params ?? {};
    try {
      if (typeof method !== 'string') throw new FerryError('EPROTO', 'request without a "method"');
      const handler = Object.hasOwn(METHODS, method) ? METHODS[method] : undefined;
      if (handler === undefined) throw new FerryError('ENOMETHOD', `unknown method "${method}"`);
      if (params === null || typeof params !== 'object' || Array.isArray(params)) throw new FerryError('EINVAL', '"params" must be a map');
      const result = await handler(params as Record<string, unknown>, this);
      this.send({ t: 'res', id, ok: true, result: result ?? null });
    } catch (e) {
      if (!(e instanceof FerryError)) this.log.error({ err: e, method }, 'request failed unexpectedly');
      this.send({ t: 'res', id, ok: false, error: errorBody(e) });
    }
  }

  private onHello(msg: Record<string, unknown>): void {
    const verdict = checkHello(msg, CONTROL_PROTOCOL_VERSION, this.registry.hostName, this.token, this.challenge);
    if ('close' in verdict) {
      this.log.warn({ client: msg.client, reason: verdict.close[1] }, 'control hello refused');
      this.close(...verdict.close);
      return;
    }
    this.phase = 'ready';
    this.send(verdict.ready);
    this.log.info({ client: msg.client }, 'control client connected');
  }
}
