/** Helpers the strategies share: sample messages per endpoint, field mutation, migration openings. */
import type { FuzzConn } from '../conn.ts';
import { Raw } from '../msgpack.ts';
import type { Rng } from '../rng.ts';
import { hostileValue } from '../values.ts';
import {
  controlHello, idlePage, migrateHello, MiB, pageFrame, req, validSetup, validState, type Path, type SetupShape,
} from '../wire.ts';
import type { CaseContext } from './types.ts';

/** A valid-looking message for `path` (any phase), as an object to mutate or truncate. */
export function sampleMessage(ctx: CaseContext, path: Path): Record<string, unknown> {
  const rng = ctx.rng;
  if (path === '/control') {
    return rng.pick<() => Record<string, unknown>>([
      () => controlHello(),
      () => req(rng.int(1000), 'host.info', {}),
      () => req(rng.int(1000), 'vm.info', { name: rng.pick(ctx.target.vms) }),
      () => req(rng.int(1000), 'vm.list', {}),
      () => req(rng.int(1000), 'console.attach', { name: rng.pick(ctx.target.vms), follow: true }),
      () => req(rng.int(1000), 'vm.create', { name: ctx.freshName(), program: 'hello', memory: MiB }),
    ])();
  }
  const setup = validSetup(ctx.freshName('vm'), 'precopy', 1);
  return rng.pick<() => Record<string, unknown>>([
    () => migrateHello('bulk', ctx.freshName('id')),
    () => migrateHello('prio', ctx.freshName('id')),
    () => ({ ...setup }),
    () => ({ t: 'round-end', round: rng.int(5) }),
    () => validState(setup),
    () => ({ t: 'postcopy-advise', advice: { missing: new Uint8Array(32), missingCount: 1 } }),
    () => ({ t: 'postcopy-done', pages: rng.int(100) }),
    () => ({ t: 'cancel', reason: 'fuzz' }),
    () => ({ t: 'recover' }),
  ])();
}

/** Key paths (one or two levels) of a message, for replacing one field. */
function keyPaths(msg: Record<string, unknown>): string[][] {
  const out: string[][] = [];
  for (const [k, v] of Object.entries(msg)) {
    out.push([k]);
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) && Object.getPrototypeOf(v) === Object.prototype) {
      for (const k2 of Object.keys(v as Record<string, unknown>)) out.push([k, k2]);
    }
  }
  return out;
}

/** A copy of `msg` with one field (maybe nested) set to `value` (or deleted when `value` is `DELETE`). */
export const DELETE = Symbol('delete');
export function setField(msg: Record<string, unknown>, rng: Rng, value: unknown, prefer?: readonly string[]): Record<string, unknown> {
  const copy = structuredCopy(msg);
  const paths = keyPaths(copy);
  const preferred = prefer ? paths.filter((p) => prefer.includes(p[p.length - 1]!)) : [];
  const path = preferred.length > 0 && rng.chance(0.7) ? rng.pick(preferred) : paths.length > 0 ? rng.pick(paths) : ['x'];
  let obj = copy;
  for (let i = 0; i < path.length - 1; i++) obj = obj[path[i]!] as Record<string, unknown>;
  const last = path[path.length - 1]!;
  if (value === DELETE) delete obj[last];
  else obj[last] = value;
  return copy;
}

/** Up to `n` fields replaced by hostile values, deleted, or added. */
export function mutate(msg: Record<string, unknown>, rng: Rng, n: number, prefer?: readonly string[]): Record<string, unknown> {
  let m = msg;
  for (let i = 0; i < n; i++) {
    const r = rng.int(10);
    if (r < 7) m = setField(m, rng, hostileValue(rng), prefer);
    else if (r < 9) m = setField(m, rng, DELETE, prefer);
    else m = { ...m, [rng.pick(['extra', 'proto', '__proto__', 'constructor', 'x'.repeat(200)])]: hostileValue(rng) };
  }
  return m;
}

/** Plain objects and arrays copied; typed arrays, Raw and other values shared. */
function structuredCopy<T>(v: T): T {
  if (Array.isArray(v)) return v.map((x: unknown) => structuredCopy(x)) as T;
  if (v !== null && typeof v === 'object' && !(v instanceof Raw) && Object.getPrototypeOf(v) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = structuredCopy(x);
    return out as T;
  }
  return v;
}

/** After control frames: does the connection still answer (or has it been closed)? A wedged one is noted. */
export async function probeControl(ctx: CaseContext, conn: FuzzConn): Promise<void> {
  if (!conn.isOpen) return;
  const id = 900_000_000 + ctx.rng.int(1000);
  conn.sendMsg(req(id, 'host.info', {}));
  const res = await conn.next(3000, (m) => m.msg?.t === 'res' && m.msg.id === id);
  if (!res && conn.isOpen) ctx.note('!control-connection-unresponsive');
}

/** A bulk migration stream after its hello (with the right mac), its id registered as live while open. */
export async function openBulk(ctx: CaseContext, id = ctx.freshName('mig'), extra: Record<string, unknown> = {}): Promise<{ conn: FuzzConn; id: string } | undefined> {
  const conn = await ctx.connectReady('/migrate', { role: 'bulk', id, ...extra });
  if (!conn) return undefined;
  ctx.liveMigrationIds.add(id);
  void conn.closed.then(() => ctx.liveMigrationIds.delete(id));
  return { conn, id };
}

export type SetupAnswer = 'setup-ok' | 'refused' | 'failed' | 'closed' | 'timeout';

/** Sends a setup (object or raw bytes) and waits for the host's verdict. */
export async function sendSetup(conn: FuzzConn, setup: Record<string, unknown> | Uint8Array, timeoutMs = 5000): Promise<SetupAnswer> {
  if (setup instanceof Uint8Array) conn.send(setup);
  else conn.sendMsg(setup);
  const m = await conn.nextMsg(timeoutMs, 'setup-ok', 'refused', 'failed');
  if (m) return m.t as SetupAnswer;
  return conn.closedWith ? 'closed' : 'timeout';
}

/** A migration accepted by the host: bulk stream + setup-ok (takes the heavy slot: the host starts a vCPU thread). */
export async function acceptedMigration(
  ctx: CaseContext, mode: 'precopy' | 'postcopy' | 'hybrid' | 'cold', ramMiB: number, source?: string,
): Promise<{ conn: FuzzConn; id: string; setup: SetupShape } | undefined> {
  await ctx.heavy();
  const bulk = await openBulk(ctx);
  if (!bulk) return undefined;
  const setup = validSetup(ctx.freshName('vm'), mode, ramMiB, source);
  const answer = await sendSetup(bulk.conn, setup as unknown as Record<string, unknown>);
  ctx.note(`setup:${answer}`);
  if (answer !== 'setup-ok') return undefined;
  return { ...bulk, setup };
}

/** A frame with page 0 = an idle guest (wfi loop), so a restored VM sleeps instead of spinning. */
export function idleFrame(): Uint8Array {
  return pageFrame([{ page: 0, data: idlePage() }]);
}

/** Destroys a VM this case made the host create (via a fresh control connection); best effort. */
export async function destroyVm(ctx: CaseContext, name: string): Promise<void> {
  if (ctx.target.vms.includes(name)) return;
  const c = await ctx.connectReady('/control').catch(() => undefined);
  if (!c) return;
  c.sendMsg(req(1, 'vm.destroy', { name }));
  await c.nextMsg(3000, 'res');
  c.close(1000);
}

/** A name that is never one of the fixture's VMs (for destructive methods). */
export function notFixture(ctx: CaseContext, v: unknown): unknown {
  return typeof v === 'string' && ctx.target.vms.includes(v) ? ctx.freshName() : v;
}

export { Raw };
