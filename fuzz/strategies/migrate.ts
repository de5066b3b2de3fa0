/**
 * The migration endpoint as a hostile source: valid messages out of order, type-confused
 * setups, and accepted migrations followed by corrupt page frames and garbage state sections.
 */
import { randomUUID } from 'node:crypto';
import { encode } from '../msgpack.ts';
import { hostileValue, longString } from '../values.ts';
import { CPU_WORDS, idlePage, pageFrame, validDevices, validSetup, validState, type SetupShape } from '../wire.ts';
import { acceptedMigration, destroyVm, idleFrame, mutate, openBulk, sendSetup } from './common.ts';
import { corruptFrame, FRAME_CORRUPTIONS, validFrame } from './pages.ts';
import type { CaseContext, Strategy } from './types.ts';

/** Messages only a destination sends (or nobody), sent by a source. */
function destinationMessage(ctx: CaseContext): Record<string, unknown> {
  const rng = ctx.rng;
  return rng.pick<() => Record<string, unknown>>([
    () => ({ t: 'page-req', page: rng.chance(0.5) ? rng.int(256) : hostileValue(rng) }),
    () => ({ t: 'pushed', bytes: rng.chance(0.5) ? rng.int(1 << 20) : hostileValue(rng) }),
    () => ({ t: 'recv-bitmap', received: rng.bytes(rng.size(1024)), receivedCount: rng.int(1000) }),
    () => ({ t: 'completed', resumedAt: Date.now() }),
    () => ({ t: 'resumed' }),
    () => ({ t: 'setup-ok' }),
    () => ({ t: 'advise-ok' }),
    () => ({ t: 'round-ack', round: rng.int(10), pages: rng.int(100) }),
    () => ({ t: 'refused', code: 'EFUZZ', message: longString(rng) }),
    () => ({ t: 'failed', code: 'EFUZZ', message: longString(rng) }),
    () => ({ t: 'recover' }),
    () => ({ t: 'cancel', reason: rng.chance(0.5) ? longString(rng) : 'fuzz' }),
  ])();
}

/** A message that is valid in some phase but (likely) not this one. */
function outOfPhase(ctx: CaseContext, setup: SetupShape): Record<string, unknown> {
  const rng = ctx.rng;
  return rng.pick<() => Record<string, unknown>>([
    () => validState(setup),
    () => ({ t: 'round-end', round: rng.chance(0.7) ? rng.int(5) : hostileValue(rng) }),
    () => ({ t: 'postcopy-done', pages: rng.int(1000) }),
    () => ({ t: 'postcopy-advise', advice: { missing: new Uint8Array(rng.pick([0, 1, 32, 256])), missingCount: rng.int(10) } }),
    () => ({ ...setup }),
    () => destinationMessage(ctx),
  ])();
}

async function settle(ctx: CaseContext, conn: { nextMsg(ms: number, ...t: string[]): Promise<Record<string, unknown> | undefined>; waitClosed(ms: number): Promise<boolean> }): Promise<void> {
  await conn.nextMsg(1000, 'failed', 'completed', 'round-ack');
  await conn.waitClosed(ctx.rng.pick([0, 200, 1000]));
}

export const migrateOutOfOrder: Strategy = {
  name: 'migrate-out-of-order', surfaces: ['migrate'], weight: 7, deadlineMs: 12_000,
  async run(ctx) {
    const rng = ctx.rng;
    const variant = rng.weighted([
      ['before-setup', 6], ['dest-msgs', 3], ['pages-before-setup', 1], ['prio-unknown-id', 2], ['prio-live-id', 2],
      ['recover-hello', 2], ['bulk-duplicate-id', 1], ['cancel-before-setup', 2],
    ] as const);
    await outOfOrder(ctx, variant);
  },
};

/** Valid messages out of order after an accepted setup: setup twice, state without pages, messages after completion. */
export const migrateAfterSetup: Strategy = {
  name: 'migrate-after-setup', surfaces: ['migrate'], weight: 1.5, deadlineMs: 12_000, heavy: true,
  async run(ctx) {
    await outOfOrder(ctx, ctx.rng.weighted([['setup-twice', 1], ['after-setup', 2], ['after-completed', 1]] as const));
  },
};

type OutOfOrderVariant = 'before-setup' | 'dest-msgs' | 'pages-before-setup' | 'prio-unknown-id' | 'prio-live-id' | 'recover-hello'
  | 'bulk-duplicate-id' | 'cancel-before-setup' | 'setup-twice' | 'after-setup' | 'after-completed';

async function outOfOrder(ctx: CaseContext, variant: OutOfOrderVariant): Promise<void> {
  const rng = ctx.rng;
  ctx.note(variant);
  const setup = validSetup(ctx.freshName('vm'), rng.pick(['precopy', 'postcopy', 'hybrid', 'cold'] as const), 1);
  switch (variant) {
    case 'before-setup':
    case 'dest-msgs': {
      const bulk = await openBulk(ctx);
      if (!bulk) return;
      for (let i = rng.range(1, 4); i > 0 && bulk.conn.isOpen; i--) {
        bulk.conn.send(encode(variant === 'dest-msgs' ? destinationMessage(ctx) : outOfPhase(ctx, setup)));
        await bulk.conn.nextMsg(300);
      }
      await settle(ctx, bulk.conn);
      return;
    }
    case 'pages-before-setup': {
      const bulk = await openBulk(ctx);
      if (!bulk) return;
      bulk.conn.send(rng.chance(0.5) ? validFrame(rng, 256) : corruptFrame(rng, 256));
      await settle(ctx, bulk.conn);
      return;
    }
    case 'prio-unknown-id': {
      const conn = await ctx.connect('/migrate');
      const id = rng.pick<unknown>([ctx.freshName('id'), '', randomUUID(), longString(rng), hostileValue(rng), undefined]);
      const res = await ctx.hello(conn, '/migrate', ctx.auth(), { role: 'prio', id });
      if (res.ready) conn.send(rng.chance(0.5) ? corruptFrame(rng, 256) : encode({ t: 'cancel', reason: longString(rng) }));
      await conn.waitClosed(1000);
      return;
    }
    case 'prio-live-id': {
      // An id that is live on the host: another case's migration, or one of ours (bulk open, no setup).
      const live = [...ctx.liveMigrationIds];
      let id: string;
      if (live.length > 0 && rng.chance(0.6)) {
        id = rng.pick(live);
        ctx.note('prio-live-id:other-case');
      } else {
        const bulk = await openBulk(ctx);
        if (!bulk) return;
        id = bulk.id;
      }
      for (let k = rng.range(1, 2); k > 0; k--) {
        const prio = await ctx.connectReady('/migrate', { role: 'prio', id });
        if (!prio) return;
        for (let i = rng.range(1, 4); i > 0 && prio.isOpen; i--) {
          prio.send(rng.pick<() => Uint8Array>([
            () => corruptFrame(rng, 256), () => validFrame(rng, 256), () => encode({ t: 'cancel', reason: rng.chance(0.5) ? longString(rng) : 'x' }),
            () => encode(destinationMessage(ctx)), () => rng.bytes(rng.size(512)),
          ])());
        }
      }
      await ctx.sleep(rng.pick([0, 100, 500]));
      return;
    }
    case 'recover-hello': {
      const live = [...ctx.liveMigrationIds];
      const id = live.length > 0 && rng.chance(0.4) ? rng.pick(live) : rng.chance(0.7) ? ctx.freshName('id') : longString(rng);
      const conn = await ctx.connectReady('/migrate', { role: 'bulk', id, recover: true });
      if (!conn) return;
      conn.send(rng.chance(0.6) ? encode({ t: 'recover' }) : rng.chance(0.5) ? encode(outOfPhase(ctx, setup)) : rng.bytes(rng.size(256)));
      await conn.nextMsg(1000, 'failed', 'completed', 'recv-bitmap');
      await conn.waitClosed(500);
      return;
    }
    case 'bulk-duplicate-id': {
      const first = await openBulk(ctx);
      if (!first) return;
      const again = await ctx.connect('/migrate');
      await ctx.hello(again, '/migrate', ctx.auth(), { role: 'bulk', id: first.id });
      await again.waitClosed(1000);
      return;
    }
    case 'cancel-before-setup': {
      const bulk = await openBulk(ctx);
      if (!bulk) return;
      const prio = await ctx.connectReady('/migrate', { role: 'prio', id: bulk.id });
      if (!prio) return;
      prio.send(encode({ t: 'cancel', reason: rng.chance(0.7) ? longString(rng) : hostileValue(rng) }));
      await settle(ctx, bulk.conn);
      return;
    }
    case 'setup-twice':
    case 'after-setup':
    case 'after-completed': {
      const mig = await acceptedMigration(ctx, rng.pick(['precopy', 'cold', 'postcopy', 'hybrid'] as const), 1);
      if (!mig) return;
      if (variant === 'after-completed') {
        mig.conn.send(idleFrame());
        mig.conn.send(encode(validState(mig.setup)));
        await mig.conn.nextMsg(3000, 'completed', 'failed');
      }
      for (let i = rng.range(1, 3); i > 0 && mig.conn.isOpen; i--) {
        const m = variant === 'setup-twice' ? (rng.chance(0.5) ? mig.setup : validSetup(ctx.freshName('vm'), 'precopy', 1)) : outOfPhase(ctx, mig.setup);
        mig.conn.send(encode(m));
        await mig.conn.nextMsg(500);
      }
      await settle(ctx, mig.conn);
      mig.conn.close(1000);
      await destroyVm(ctx, mig.setup.vm);
      return;
    }
  }
}

/** Setups with type-confused fields; the host should refuse each before anything changes. */
export const migrateSetupConfused: Strategy = {
  name: 'migrate-setup-confused', surfaces: ['migrate'], weight: 2, deadlineMs: 10_000, heavy: true,
  async run(ctx) {
    const rng = ctx.rng;
    const setup = validSetup(ctx.freshName('vm'), rng.pick(['precopy', 'postcopy', 'hybrid', 'cold'] as const), rng.pick([1, 2, 4]));
    const variant = rng.weighted([['fields', 6], ['echo-long', 2], ['name-taken', 1], ['ram', 2], ['raw-field', 1]] as const);
    ctx.note(variant);
    let msg: Record<string, unknown> | Uint8Array;
    switch (variant) {
      case 'fields':
        msg = mutate(setup as unknown as Record<string, unknown>, rng, rng.range(1, 3), ['vm', 'program', 'mode', 'config', 'ramSize', 'clock', 'tohost', 'insnLimit', 'pageSize', 'isa', 'devices', 'source']);
        break;
      case 'echo-long':
        msg = { ...setup, [rng.pick(['vm', 'program', 'isa', 'mode', 'source'])]: longString(rng), ...(rng.chance(0.3) ? { devices: [longString(rng)] } : {}) };
        break;
      case 'name-taken':
        msg = { ...setup, vm: rng.pick(ctx.target.vms) };
        break;
      case 'ram':
        msg = { ...setup, config: { ...setup.config, ramSize: rng.pick([0, 4095, 1024 * 1024 + 1, 2 ** 31, 2 ** 32, 2 ** 53, 3 * 2 ** 30, -4096, 1e300, 512 * 1024 * 1024]) } };
        break;
      case 'raw-field':
        msg = encode({ ...setup, config: { ...setup.config, ramSize: hostileValue(rng) }, devices: hostileValue(rng) });
        break;
    }
    // A mutation may leave the setup acceptable: then the host starts a vCPU thread for it.
    await ctx.heavy();
    const bulk = await openBulk(ctx);
    if (!bulk) return;
    const answer = await sendSetup(bulk.conn, msg);
    ctx.note(`setup:${answer}`);
    if (answer === 'setup-ok') {
      bulk.conn.close(1000);
      const name = (msg as Record<string, unknown>).vm;
      if (typeof name === 'string') await destroyVm(ctx, name);
    }
  },
};

/** A garbage machine-state section (CPU words, devices, config, halt info) for `setup`. */
function garbageState(ctx: CaseContext, setup: SetupShape): Record<string, unknown> {
  const rng = ctx.rng;
  const state = validState(setup, rng.chance(0.2) ? { postcopy: { late: new Uint32Array([rng.u32()]), missingCount: rng.int(10) } } : {});
  const inner = state.state as Record<string, unknown>;
  const variant = rng.weighted([['cpu', 4], ['devices', 4], ['config', 2], ['halted', 1], ['run', 1], ['console', 1], ['fields', 3]] as const);
  ctx.note(`state:${variant}`);
  switch (variant) {
    case 'cpu':
      inner.cpu = rng.pick<() => unknown>([
        () => new Array<number>(rng.pick([0, 1, CPU_WORDS - 1, CPU_WORDS + 1, 1000])).fill(1),
        () => new Array<unknown>(CPU_WORDS).fill(0).map(() => hostileValue(rng)),
        () => 'x'.repeat(CPU_WORDS),
        () => new Uint8Array(CPU_WORDS),
        () => new Float64Array(CPU_WORDS).fill(NaN),
        () => ({ length: CPU_WORDS }),
        () => new Array<number>(CPU_WORDS).fill(2 ** 40),
        () => null,
      ])();
      break;
    case 'devices':
      inner.devices = rng.pick<() => unknown>([
        () => undefined, () => null, () => hostileValue(rng), () => ({}),
        () => ({ ...validDevices(), uart: hostileValue(rng) }),
        () => ({ ...validDevices(), clint: { msip: NaN, mtimecmpLo: 'x', mtimecmpHi: Infinity } }),
        () => ({ ...validDevices(), clock: { mode: hostileValue(rng), mtime: rng.pick([NaN, -1, Infinity, 2 ** 64]) } }),
        () => ({ ...validDevices(), uart: { ...(validDevices().uart as object), rx: new Array<number>(rng.pick([1000, 100_000])).fill(0x41) } }),
        () => ({ ...validDevices(), plic: mutate(validDevices().plic as Record<string, unknown>, rng, rng.range(1, 3)) }),
        () => ({ ...validDevices(), plic: { ...(validDevices().plic as object), priority: new Array<number>(rng.pick([0, 96, 98, 100_000])).fill(7) } }),
        () => ({ ...validDevices(), rtc: mutate(validDevices().rtc as Record<string, unknown>, rng, rng.range(1, 3)) }),
        () => ({ ...validDevices(), rtc: { ...(validDevices().rtc as object), offsetHi: rng.pick([2 ** 31, -(2 ** 31) - 1, NaN, 1.5]) } }),
        () => mutate(validDevices(), rng, rng.range(1, 3)),
      ])();
      break;
    case 'config':
      inner.config = rng.chance(0.5) ? hostileValue(rng) : mutate({ ...(inner.config as object) }, rng, 1);
      if (rng.chance(0.3)) inner.version = hostileValue(rng);
      if (rng.chance(0.3)) inner.insnLimit = hostileValue(rng);
      break;
    case 'halted':
      inner.halted = rng.chance(0.5) ? { exitCode: hostileValue(rng), reason: longString(rng) } : hostileValue(rng);
      break;
    case 'run':
      state.run = hostileValue(rng);
      break;
    case 'console':
      state.console = rng.chance(0.5) ? hostileValue(rng) : new Uint8Array(rng.pick([65_536, 1 << 20]));
      break;
    case 'fields':
      return mutate(state, rng, rng.range(1, 3), ['state', 'cpu', 'devices', 'config', 'run', 'console', 'postcopy', 'version']);
  }
  return state;
}

/** Accepted setups, then corrupt page frames (count mismatches, pages beyond RAM, short, trailing) and garbage state. */
export const migrateCorruptPages: Strategy = {
  name: 'migrate-corrupt-pages', surfaces: ['migrate'], weight: 2, deadlineMs: 12_000, heavy: true,
  async run(ctx) {
    const rng = ctx.rng;
    const ramMiB = rng.pick([1, 2]);
    const mig = await acceptedMigration(ctx, rng.pick(['precopy', 'cold', 'hybrid'] as const), ramMiB);
    if (!mig) return;
    const pages = (ramMiB * 1024 * 1024) / 4096;
    const n = rng.range(1, 6);
    for (let i = 0; i < n && mig.conn.isOpen; i++) {
      if (rng.chance(0.3)) mig.conn.send(validFrame(rng, pages));
      else {
        const kind = rng.pick(FRAME_CORRUPTIONS);
        ctx.note(`frame:${kind}`);
        mig.conn.send(corruptFrame(rng, pages, kind));
      }
      if (rng.chance(0.3)) mig.conn.send(encode({ t: 'round-end', round: i }));
    }
    if (rng.chance(0.7) && mig.conn.isOpen) {
      mig.conn.send(pageFrame([{ page: 0, data: idlePage() }]));
      mig.conn.send(encode(rng.chance(0.6) ? garbageState(ctx, mig.setup) : validState(mig.setup)));
    }
    const end = await mig.conn.nextMsg(3000, 'completed', 'failed');
    ctx.note(`end:${String(end?.t ?? 'none')}`);
    mig.conn.close(1000);
    await destroyVm(ctx, mig.setup.vm);
  },
};

/** Accepted setups, valid pages, then a garbage state section. */
export const migrateGarbageState: Strategy = {
  name: 'migrate-garbage-state', surfaces: ['migrate'], weight: 2, deadlineMs: 12_000, heavy: true,
  async run(ctx) {
    const rng = ctx.rng;
    const mig = await acceptedMigration(ctx, rng.pick(['precopy', 'cold'] as const), 1);
    if (!mig) return;
    mig.conn.send(idleFrame());
    if (rng.chance(0.5)) mig.conn.send(encode({ t: 'round-end', round: 0 }));
    mig.conn.send(encode(garbageState(ctx, mig.setup)));
    const end = await mig.conn.nextMsg(3000, 'completed', 'failed');
    ctx.note(`end:${String(end?.t ?? 'none')}`);
    if (end?.t === 'completed' && rng.chance(0.5)) mig.conn.send(encode(garbageState(ctx, mig.setup)));
    mig.conn.close(1000);
    await destroyVm(ctx, mig.setup.vm);
  },
};

