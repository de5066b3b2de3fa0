/**
 * A whole hostile post-copy source: setup (postcopy or hybrid) -> postcopy-advise with a
 * wrong-size or a right bitmap -> a state section, valid or garbage, with late pages in or out
 * of range -> answers to the guest's page requests on the priority channel that are beyond RAM,
 * short, or carry trailing bytes; sometimes no priority channel at all; then the link goes.
 */
import type { FuzzConn } from '../conn.ts';
import { encode } from '../msgpack.ts';
import { hostileValue } from '../values.ts';
import { idlePage, PAGE_SIZE, pageFrame, validState } from '../wire.ts';
import { acceptedMigration, destroyVm, mutate } from './common.ts';
import { corruptFrame, FRAME_CORRUPTIONS, validFrame } from './pages.ts';
import type { Strategy } from './types.ts';

export const postcopyHostile: Strategy = {
  name: 'postcopy-hostile', surfaces: ['migrate'], weight: 3, deadlineMs: 15_000, heavy: true,
  async run(ctx) {
    const rng = ctx.rng;
    const ramMiB = rng.pick([1, 2, 4]);
    const pages = (ramMiB * 1024 * 1024) / PAGE_SIZE;
    // Where a paused destination would check on its source: nowhere, a dead port, host A, garbage.
    const source = rng.pick<string | undefined>([undefined, 'ws://127.0.0.1:1', ctx.target.sourceUrl, 'ws://[::1', 'ws://0.0.0.0:1']);
    const mig = await acceptedMigration(ctx, rng.chance(0.8) ? 'postcopy' : 'hybrid', ramMiB, source);
    if (!mig) return;
    const { conn: bulk, id, setup } = mig;
    let prio: FuzzConn | undefined;
    if (rng.chance(0.8)) prio = await ctx.connectReady('/migrate', { role: 'prio', id });
    else ctx.note('no-prio');
    if (setup.mode === 'hybrid' && rng.chance(0.5)) {
      bulk.send(validFrame(rng, pages));
      bulk.send(encode({ t: 'round-end', round: 0 }));
    }

    // The advice: which pages the destination must fetch.
    const rightSize = Math.ceil(pages / 8);
    const size = rng.chance(0.85) ? rightSize : rng.pick([0, rightSize - 1, rightSize + 1, 1 << 16]);
    const missing = new Uint8Array(Math.max(0, size));
    const density = rng.pick([0, 0.01, 0.5, 1]);
    for (let p = 0; p < Math.min(pages, missing.length * 8); p++) if (rng.chance(density)) missing[p >>> 3]! |= 1 << (p & 7);
    if (rng.chance(0.5) && missing.length > 0) missing[0]! |= 1; // page 0 (where the guest runs) missing: an immediate fault
    let missingCount = 0;
    for (const b of missing) for (let i = 0; i < 8; i++) missingCount += (b >>> i) & 1;
    ctx.note(size === rightSize ? 'advise:right-size' : 'advise:wrong-size');
    bulk.send(encode({ t: 'postcopy-advise', advice: { missing, missingCount: rng.chance(0.8) ? missingCount : hostileValue(rng) } }));
    const adviseOk = await bulk.nextMsg(3000, 'advise-ok', 'failed');
    if (adviseOk?.t !== 'advise-ok') {
      await destroyVm(ctx, setup.vm);
      return;
    }

    // The switch-over: the state section, with late pages (maybe out of range).
    const late = new Uint32Array(rng.range(0, 8));
    for (let i = 0; i < late.length; i++) late[i] = rng.chance(0.8) ? rng.int(pages) : rng.pick([pages, pages + 1, 0xffff_ffff, 0x8000_0000]);
    const state: Record<string, unknown> = validState(setup, { postcopy: { late, missingCount: missingCount + late.length } });
    const garbage = rng.chance(0.35);
    ctx.note(garbage ? 'state:garbage' : 'state:valid');
    bulk.send(encode(garbage ? mutate(state, rng, rng.range(1, 2), ['postcopy', 'late', 'missingCount', 'cpu', 'devices', 'run', 'state']) : state));
    const resumed = await bulk.nextMsg(3000, 'resumed', 'failed');
    ctx.note(`switch:${String(resumed?.t ?? 'none')}`);

    // Serve (or mangle) the guest's page requests, and push frames of our own.
    const until = Date.now() + rng.pick([200, 500, 1000]);
    while (Date.now() < until && bulk.isOpen && !ctx.cancelled) {
      const reqMsg = prio ? await prio.nextMsg(50, 'page-req') : undefined;
      const r = rng.int(10);
      const target = prio && prio.isOpen && rng.chance(0.8) ? prio : bulk;
      if (reqMsg && typeof reqMsg.page === 'number' && r < 4) {
        target.send(pageFrame([{ page: reqMsg.page, ...(reqMsg.page === 0 ? { data: idlePage() } : rng.chance(0.5) ? {} : { data: rng.bytes(PAGE_SIZE) }) }]));
        ctx.note('answer:valid');
      } else if (r < 8) {
        const kind = rng.pick(FRAME_CORRUPTIONS);
        ctx.note(`frame:${target === prio ? 'prio' : 'bulk'}:${kind}`);
        target.send(corruptFrame(rng, pages, kind));
      } else if (r < 9) {
        bulk.send(encode({ t: 'postcopy-done', pages: rng.chance(0.7) ? rng.int(pages * 2) : hostileValue(rng) }));
      } else {
        target.send(encode(rng.chance(0.5) ? { t: 'cancel', reason: 'fuzz' } : { t: rng.pick(['pushed', 'page-req', 'recover', 'state']), x: hostileValue(rng) }));
      }
      await ctx.sleep(rng.pick([0, 5, 20]));
    }

    // The link goes (one channel, or both), the way a crashed or partitioned source's would.
    const end = rng.int(4);
    if (end === 0) prio?.terminate();
    else if (end === 1) bulk.terminate();
    else {
      bulk.terminate();
      prio?.terminate();
    }
    await ctx.sleep(200);
    await destroyVm(ctx, setup.vm);
  },
};
