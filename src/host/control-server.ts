import { fmtBytes } from '../units.ts';
import type { LinkSocket } from '../wire/socket.ts';
import { z } from 'zod';
import { FerryError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { MAX_RAM_SIZE } from '../memory/layout.ts';
import { VM_NAME_RE } from '../vm/state-schema.ts';
import { FERRY_VERSION } from '../version.ts';
import { CONTROL_PROTOCOL_VERSION, decodeFromClient, encode, errorBody, requestSchema, type ServerMsg } from '../wire/control-protocol.ts';
import { closeWith, peerText } from '../wire/peer-text.ts';
import type { MigrationManager } from './migrations.ts';
import type { VmRegistry } from './registry.ts';

/** Console output beyond this much unsent data is dropped for that client (it is too slow). */
const MAX_BUFFERED = 8 * 1024 * 1024;
/** Replies a client has not read, at most: beyond, it is disconnected (it sends requests but reads nothing). */
const MAX_UNREAD = 64 * 1024 * 1024;
/** Console input per request (the CLI sends what it reads from a terminal, a chunk at a time). */
const MAX_CONSOLE_INPUT = 64 * 1024;

// Parameter types, with the messages a client sees ('parameter "name" must be ...').
const nonEmpty = 'must be a non-empty string';
/** Text a reply may quote back: no control characters (no terminal escapes in a client's error line). */
const printable = (max: number) => z.string({ error: nonEmpty }).min(1, nonEmpty).max(max, `is longer than ${max} characters`)
  .regex(/^[^\u0000-\u001f\u007f-\u009f]*$/, 'must not hold control characters');
const name = z.string({ error: nonEmpty }).min(1, nonEmpty).regex(VM_NAME_RE, "must be a VM name: letters, digits, '.', '_' or '-' (at most 63)");
const count = (max = Number.MAX_SAFE_INTEGER) => z.number({ error: 'must be a non-negative integer' })
  .int('must be a non-negative integer').min(0, 'must be a non-negative integer').max(max, `must be at most ${max}`)
  .nullish().transform((v) => v ?? undefined);
const encodingMode = z.enum(['auto', 'on', 'off'], { error: 'must be one of auto, on, off' });
const flag = z.boolean({ error: 'must be a boolean' }).nullish().transform((v) => v ?? undefined);
const bytes = (max: number) => z.custom<Uint8Array>((v) => v instanceof Uint8Array, 'must be bytes').refine((b) => b.length <= max, `must be at most ${max} bytes`);
const named = z.strictObject({ name });

/** A control method: its parameters' schema, and what it does with them. */
interface Method<S extends z.ZodType> {
  params: S;
  run(p: z.infer<S>, conn: ControlConnection): unknown;
}

function method<S extends z.ZodType>(params: S, run: (p: z.infer<S>, conn: ControlConnection) => unknown): Method<S> {
  return { params, run };
}

/** Drops the keys whose value is undefined (the registry's options are exact optional types). */
function defined<T extends Record<string, unknown>>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}

/** The control methods, by name; each request's parameters are checked against its schema first. */
export const METHODS: Record<string, Method<z.ZodType>> = {
  'host.info': method(z.strictObject({}), (_p, c) => ({
    name: c.registry.hostName, version: CONTROL_PROTOCOL_VERSION, vms: c.registry.names().length,
    memoryUsed: c.registry.usedMemory(), memoryLimit: c.registry.maxMemory,
    url: c.migrations.selfUrl ?? null, ferry: FERRY_VERSION, peers: c.migrations.peers(),
  })),
  'vm.list': method(z.strictObject({}), (_p, c) => c.registry.list()),
  'vm.info': method(named, (p, c) => c.registry.info(p.name)),
  'vm.create': method(z.strictObject({
    name,
    program: printable(256).optional(),
    elf: bytes(64 * 1024 * 1024).optional(),
    elfName: printable(256).optional(),
    memory: z.number({ error: 'must be a number of bytes' }).int('must be a whole number of bytes').min(0, 'must be a number of bytes')
      .max(MAX_RAM_SIZE, `must be at most ${fmtBytes(MAX_RAM_SIZE)}`).nullish().transform((v) => v ?? undefined),
    icount: flag,
    insnLimit: count(),
    args: z.array(z.string({ error: 'must be a list of strings' }).max(4096), { error: 'must be a list of strings' }).max(256, 'must hold at most 256 arguments').optional(),
    start: flag,
  }), (p, c) => c.registry.create(defined(p))),
  'vm.start': method(named, (p, c) => c.registry.start(p.name)),
  'vm.pause': method(named, (p, c) => c.registry.pause(p.name)),
  'vm.resume': method(named, (p, c) => c.registry.resume(p.name)),
  'vm.stop': method(named, (p, c) => c.registry.stop(p.name)),
  'vm.destroy': method(named, async (p, c) => {
    // A VM a migration holds (arriving, or a paused post-copy) is given up through it.
    const given = c.migrations.releaseForDestroy(p.name);
    if (given === undefined) return c.registry.destroy(p.name);
    await given;
    return { name: p.name };
  }),
  'vm.digest': method(named, (p, c) => c.registry.digest(p.name)),
  'vm.pagemap': method(z.strictObject({ name, runs: flag }), (p, c) => c.registry.pageMap(p.name, c.migrations.pageMarks(p.name), p.runs === true)),
  'vm.registers': method(named, (p, c) => c.registry.registers(p.name)),
  'console.attach': method(z.strictObject({ name, follow: flag }), (p, c) => {
    // follow: also for a VM not here (yet): its output shows up once it arrives by migration.
    const history = p.follow && !c.registry.names().includes(p.name) ? new Uint8Array(0) : c.registry.consoleHistory(p.name);
    c.consoles.add(p.name);
    return { name: p.name, history };
  }),
  'console.detach': method(named, (p, c) => {
    c.consoles.delete(p.name);
    return {};
  }),
  'console.input': method(z.strictObject({ name, data: bytes(MAX_CONSOLE_INPUT) }), (p, c) => c.registry.input(p.name, p.data)),
  'migrate.start': method(z.strictObject({
    name,
    to: printable(2048),
    as: name.optional(),
    convergencePolicy: printable(64).optional(),
    pushOrder: printable(64).optional(),
    mode: z.enum(['precopy', 'postcopy', 'hybrid', 'cold'], { error: 'must be one of precopy, postcopy, hybrid, cold' }).optional(),
    downtimeLimitMs: count(2_000_000),
    maxBandwidth: count(),
    maxRounds: count(1_000_000),
    autoConverge: flag,
    postcopyAfterRounds: count(1_000_000),
    pushDelayMs: count(24 * 3600 * 1000),
    autoRecover: flag,
    switchoverAtMaxRounds: flag,
    giveUpAfterMs: count(),
    xbzrle: encodingMode.optional(),
    compress: encodingMode.optional(),
    xbzrleCacheBytes: count(),
  }), (p, c) => c.migrations.start(defined(p))),
  'migrate.start-postcopy': method(named, (p, c) => c.migrations.startPostcopy(p.name)),
  'migrate.status': method(named, (p, c) => c.migrations.status(p.name)),
  'migrate.cancel': method(named, (p, c) => c.migrations.cancel(p.name)),
  'migrate.recover': method(named, (p, c) => c.migrations.recover(p.name)),
  'migrate.pause': method(named, (p, c) => c.migrations.pause(p.name)),
  'migrate.resolve': method(z.strictObject({
    name, decision: z.enum(['resume', 'release'], { error: 'must be resume (the guest runs here) or release (it runs on the destination)' }),
  }), (p, c) => c.migrations.resolve(p.name, p.decision)),
  // From a destination host: the guest of the migration `id` resumed there.
  'migrate.outcome': method(z.strictObject({
    name, id: z.string().min(1).max(64), outcome: z.literal('completed'),
  }), (p, c) => c.migrations.outcomeFromDestination(p.name, p.id)),
};

/** A schema's first complaint about request parameters, as the client sees it. */
function paramsError(e: z.ZodError): FerryError {
  const i = e.issues[0];
  if (i?.code === 'unrecognized_keys') return new FerryError('EINVAL', `unknown parameter "${peerText(i.keys[0], 64)}"`);
  const key = i?.path.map(String).join('.') ?? '';
  return new FerryError('EINVAL', key ? `parameter "${peerText(key, 64)}" ${i!.message}` : `"params" ${i?.message ?? 'are invalid'}`);
}

/**
 * One authenticated client on `/control`: requests and pushed events. A bad frame never takes
 * the host down: it is answered with an error, and the connection goes on.
 */
export class ControlConnection {
  readonly consoles = new Set<string>();
  private droppedConsole = 0;

  constructor(
    private readonly ws: LinkSocket,
    readonly registry: VmRegistry,
    readonly migrations: MigrationManager,
    private readonly log: Logger,
  ) {
    ws.on('message', (data, isBinary) => void this.onFrame(data as Buffer, isBinary));
  }

  send(msg: ServerMsg): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (this.ws.bufferedAmount > MAX_UNREAD) {
      this.log.warn({ unread: this.ws.bufferedAmount }, 'client is not reading its replies: closing its connection');
      closeWith(this.ws, 1008, 'not reading replies');
      return;
    }
    this.ws.send(encode(msg));
  }

  /** A pushed event; console output is dropped for a client that cannot keep up. */
  push(event: string, vm: string, data: unknown, droppable = false): void {
    if (droppable && this.ws.bufferedAmount > MAX_BUFFERED) {
      if (this.droppedConsole++ === 0) this.log.warn({ vm }, 'client is not reading: dropping console output');
      return;
    }
    this.send({ t: 'event', event, vm, data });
  }

  private async onFrame(data: Buffer, isBinary: boolean): Promise<void> {
    let req: z.infer<typeof requestSchema>;
    try {
      if (!isBinary) throw new FerryError('EPROTO', 'text frames are not part of the protocol; send msgpack in binary frames');
      const msg = decodeFromClient(data);
      if (msg.t !== 'req') throw new FerryError('EPROTO', `unexpected message type "${peerText(msg.t, 32)}"`);
      const id = msg.id;
      if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) throw new FerryError('EPROTO', 'request without an integer "id"');
      const r = requestSchema.safeParse(msg);
      if (!r.success) {
        const i = r.error.issues[0];
        this.send({ t: 'res', id, ok: false, error: { code: 'EPROTO', message: `malformed request: ${peerText(`${i?.path.map(String).join('.') ?? ''}: ${i?.message ?? ''}`, 200)}` } });
        return;
      }
      req = r.data;
    } catch (e) {
      this.log.debug({ err: (e as Error).message }, 'bad control frame');
      this.send({ t: 'error', error: errorBody(e) });
      return;
    }
    const { id, method: name } = req;
    try {
      const m = Object.hasOwn(METHODS, name) ? METHODS[name] : undefined;
      if (m === undefined) throw new FerryError('ENOMETHOD', `unknown method "${peerText(name, 64)}"`);
      const params = req.params ?? {};
      if (params === null || typeof params !== 'object' || Array.isArray(params) || params instanceof Uint8Array) throw new FerryError('EINVAL', '"params" must be a map');
      const p = m.params.safeParse(params);
      if (!p.success) throw paramsError(p.error);
      const result = await m.run(p.data, this);
      this.send({ t: 'res', id, ok: true, result: result ?? null });
    } catch (e) {
      if (!(e instanceof FerryError)) this.log.error({ err: e, method: name }, 'request failed unexpectedly');
      this.send({ t: 'res', id, ok: false, error: errorBody(e) });
    }
  }
}
