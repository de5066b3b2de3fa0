// The fault matrix: every fault, at every message boundary of every migration mode, ends the way
// src/migration/ownership.ts says it must. A relay between the hosts (message-relay.ts) sees every
// message and breaks the link, or SIGKILLs a host, at the cell's message. Whatever happens:
//
//   - never two copies of the guest run at once (sampled all through the cell);
//   - exactly one copy ends up with the digest of an unmigrated run; or, while the outcome cannot
//     be learned, nothing runs and the source says so (outcome-unknown, or postcopy-paused at a
//     post-copy switch-over), and once the fault heals or the dead host is back, exactly one copy
//     ends with that digest;
//   - a host that really dies holding part of a post-copy VM: the live side says the VM is lost,
//     but only once the dead host answers again as a new incarnation (a refused or unreachable
//     peer is never proof of death), and nothing hangs.
//
// The cells are generated from MATRIX below (the same table as the README's "Fault matrix").
// `npm test` runs the QUICK cells (every fault in every mode, every boundary at least once);
// FERRY_FAULT_MATRIX=full runs them all, both messages of each boundary that has two.
// A failed cell writes its timeline, the relayed messages and both hosts' logs to LOG_DIR (every
// cell does with FERRY_FAULT_MATRIX_LOGS=1).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, it, type ExpectStatic } from 'vitest';
import type { MigrationInfo, MigrationStatus } from '../../src/migration/stats.ts';
import { eventually, MiB, REPO_ROOT, restartablePort, sleep } from '../support/helpers.ts';
import { CellHost, keyLogLines, Monitor, writeCellLog } from '../support/fault-cell.ts';
import { killAllSpawned } from '../support/host-helpers.ts';
import { startMessageRelay, type MessageRelay, type RelayedMessage } from '../support/message-relay.ts';
import { createParams, finalDigest, oracleDigest, waitInstret, type GuestSpec } from '../support/migration-helpers.ts';

type Mode = 'precopy' | 'cold' | 'postcopy' | 'hybrid';
type Boundary = 'setup' | 'round' | 'advice' | 'state' | 'resume-ack' | 'push' | 'recovery';
type Fault = 'cut-refuse' | 'cut-silent' | 'outage' | 'kill-dest' | 'kill-source';
/**
 * What a cell must end with (see OUTCOME_TEXT):
 *   source          fails before the switch-over: the VM runs on at the source, the destination drops its half
 *   unknown>source  outcome-unknown (source paused, nothing runs) until the destination answers it never resumed: the source resumes
 *   unknown>dest    outcome-unknown (source paused) while the destination runs the guest; once it answers: completed
 *   paused>source   post-copy switch-over lost before the destination got it: postcopy-paused (nothing runs), then the destination says it never resumed: the source resumes
 *   recovers        post-copy: postcopy-paused on both sides, recovered over a new link, completed on the destination
 *   lost            a host holding part of a post-copy VM died: the live side waits while the dead one is refused, and says the VM is lost once it answers restarted
 *   dest            the source died after the destination resumed: the destination runs it to the end
 *   gone            the source died while it owned the VM: the VM died with it, the destination drops its half
 */
type Outcome = 'source' | 'unknown>source' | 'unknown>dest' | 'paused>source' | 'recovers' | 'lost' | 'dest' | 'gone';

const FAULTS: readonly Fault[] = ['cut-refuse', 'cut-silent', 'outage', 'kill-dest', 'kill-source'];

/**
 * The matrix, one row per (mode, boundary): the documented outcome of each fault, in FAULTS order
 * (cut-refuse, cut-silent, outage, kill-dest, kill-source). Keep in step with the README table.
 */
const MATRIX: readonly [Mode, Boundary, string][] = [
  ['precopy', 'setup', 'source source source source gone'],
  ['precopy', 'round', 'source source source source gone'],
  ['precopy', 'state', 'unknown>source unknown>source unknown>source unknown>source gone'],
  ['precopy', 'resume-ack', 'unknown>dest unknown>dest unknown>dest unknown>source dest'],
  ['precopy', 'recovery', 'unknown>dest unknown>dest unknown>dest unknown>source dest'],
  ['cold', 'setup', 'source source source source gone'],
  ['cold', 'state', 'unknown>source unknown>source unknown>source unknown>source gone'],
  ['cold', 'resume-ack', 'unknown>dest unknown>dest unknown>dest unknown>source dest'],
  ['cold', 'recovery', 'unknown>dest unknown>dest unknown>dest unknown>source dest'],
  ['postcopy', 'setup', 'source source source source gone'],
  ['postcopy', 'advice', 'source source source source gone'],
  ['postcopy', 'state', 'paused>source paused>source paused>source lost gone'],
  ['postcopy', 'resume-ack', 'recovers recovers recovers lost lost'],
  ['postcopy', 'push', 'recovers recovers recovers lost lost'],
  ['postcopy', 'recovery', 'recovers recovers recovers lost lost'],
  ['hybrid', 'setup', 'source source source source gone'],
  ['hybrid', 'round', 'source source source source gone'],
  ['hybrid', 'advice', 'source source source source gone'],
  ['hybrid', 'state', 'paused>source paused>source paused>source lost gone'],
  ['hybrid', 'resume-ack', 'recovers recovers recovers lost lost'],
  ['hybrid', 'push', 'recovers recovers recovers lost lost'],
  ['hybrid', 'recovery', 'recovers recovers recovers lost lost'],
];

/** The cells `npm test` runs: every fault in every mode, every boundary at least once, an 8 s outage per mode. */
const QUICK: readonly [Mode, Boundary, Fault][] = [
  ['precopy', 'round', 'cut-refuse'],
  ['precopy', 'state', 'cut-silent'],
  ['precopy', 'resume-ack', 'outage'],
  ['precopy', 'resume-ack', 'kill-dest'],
  ['precopy', 'resume-ack', 'kill-source'],
  ['cold', 'state', 'cut-refuse'],
  ['cold', 'recovery', 'cut-silent'],
  ['cold', 'setup', 'outage'],
  ['cold', 'state', 'kill-dest'],
  ['cold', 'state', 'kill-source'],
  ['postcopy', 'advice', 'cut-refuse'],
  ['postcopy', 'push', 'cut-silent'],
  ['postcopy', 'resume-ack', 'outage'],
  ['postcopy', 'push', 'kill-dest'],
  ['postcopy', 'recovery', 'kill-source'],
  ['hybrid', 'recovery', 'cut-refuse'],
  ['hybrid', 'state', 'cut-silent'],
  ['hybrid', 'round', 'outage'],
  ['hybrid', 'setup', 'kill-dest'],
  ['hybrid', 'resume-ack', 'kill-source'],
];

/** How long each link fault holds before it heals (ms from the cell's message). */
const HOLD_MS: Record<'cut-refuse' | 'cut-silent' | 'outage', number> = { 'cut-refuse': 3_000, 'cut-silent': 6_000, outage: 8_000 };
/** A SIGKILLed host stays dead this long after the live side has started waiting for it. */
const DEAD_MS = 2_000;

/** A message a cell breaks the link at: its type, its direction (up: source -> destination), and which occurrence. */
interface At {
  /** How the cell title names it. */
  label: string;
  match: (m: RelayedMessage, seen: Seen) => boolean;
}

/** What the relay has seen so far in a cell (for matches like "the 3rd pushed frame"). */
interface Seen {
  state: boolean;
  pushFrames: number;
  /** A recovery cell's first cut (which brings about the recovery) is done. */
  firstCut: boolean;
}

/** A pushed post-copy frame: bigger than a fault's one-page frame (64 KiB to 256 KiB). */
const PUSH_FRAME_MIN_BYTES = 16 * 1024;

const msg = (t: string, dir: 'up' | 'down', label = `${t} ${dir === 'up' ? '↑' : '↓'}`): At => ({ label, match: (m) => m.t === t && m.dir === dir });

/** The messages of each boundary in a mode: the first is the one QUICK cells use; the full matrix uses each. */
function messagesOf(mode: Mode, b: Boundary): At[] {
  const post = mode === 'postcopy' || mode === 'hybrid';
  switch (b) {
    case 'setup': return [msg('setup-ok', 'down'), msg('setup', 'up')];
    case 'round': return [msg('round-ack', 'down'), msg('round-end', 'up')];
    case 'advice': return [msg('advise-ok', 'down'), msg('postcopy-advise', 'up')];
    case 'state': return [msg('state', 'up')];
    case 'resume-ack': return [post ? msg('resumed', 'down') : msg('completed', 'down')];
    case 'push': return [
      { label: '3rd pushed page frame ↑', match: (m, s) => s.state && m.t === 'page-frame' && m.dir === 'up' && m.bytes >= PUSH_FRAME_MIN_BYTES && s.pushFrames === 3 },
      { label: 'pushed ↓', match: (m, s) => s.state && m.t === 'pushed' && m.dir === 'down' },
    ];
    case 'recovery': return post
      ? [{ ...msg('recover', 'up'), match: (m, s) => s.firstCut && m.t === 'recover' && m.dir === 'up' }, { ...msg('recv-bitmap', 'down'), match: (m, s) => s.firstCut && m.t === 'recv-bitmap' && m.dir === 'down' }]
      : [{ ...msg('query', 'up'), match: (m, s) => s.firstCut && m.t === 'query' && m.dir === 'up' }, { ...msg('outcome', 'down'), match: (m, s) => s.firstCut && m.t === 'outcome' && m.dir === 'down' }];
  }
}

/** A recovery cell first cuts the link (refused for 300 ms), so that there is a recovery to break. */
function firstCutOf(mode: Mode): { label: string; match: (m: RelayedMessage, s: Seen) => boolean } {
  return mode === 'postcopy' || mode === 'hybrid'
    ? { label: 'the 2nd pushed page frame', match: (m, s) => s.state && m.t === 'page-frame' && m.dir === 'up' && m.bytes >= PUSH_FRAME_MIN_BYTES && s.pushFrames === 2 }
    : { label: 'completed', match: (m) => m.t === 'completed' && m.dir === 'down' };
}

const OUTCOME_TEXT: Record<Outcome, string> = {
  source: 'fails; the VM runs on at the source, the destination drops its half',
  'unknown>source': 'outcome-unknown with nothing running, then the destination says it never resumed: the source resumes',
  'unknown>dest': 'outcome-unknown with the source paused, then completed: only the destination runs it',
  'paused>source': 'postcopy-paused with nothing running, then the destination says it never resumed: the source resumes',
  recovers: 'postcopy-paused on both sides, recovered, completed on the destination',
  lost: 'the live side waits while the dead host is refused; lost once it answers restarted',
  dest: 'the destination runs it to the end',
  gone: 'the VM dies with its source; the destination drops its half',
};

const FAULT_TEXT: Record<Fault, string> = {
  'cut-refuse': `link cut, port refusing for ${HOLD_MS['cut-refuse'] / 1000} s`,
  'cut-silent': `link cut, port silent for ${HOLD_MS['cut-silent'] / 1000} s`,
  outage: `outage of ${HOLD_MS.outage / 1000} s`,
  'kill-dest': 'destination SIGKILLed, restarted',
  'kill-source': 'source SIGKILLed, restarted',
};

/**
 * Long enough to still run when the migration meets its boundary (about 2.5 s alone: the JIT runs
 * memstress at some 4 * 10^8 instructions a second; longer on a loaded machine).
 */
const GUEST: GuestSpec = { program: 'memstress', memory: 32 * MiB, args: ['ws_mib=8'], insnLimit: 1_000_000_000 };
/** Instructions the guest has run when the migration starts. */
const STARTED_AT = 50_000_000;
const VM = 'fm';

function migrateParams(mode: Mode, b: Boundary): Record<string, unknown> {
  // The push starts soon where the cell's message is in it; otherwise a little later, so the guest demand-pages first.
  const pushDelayMs = b === 'push' || b === 'recovery' ? 100 : 300;
  switch (mode) {
    // Two rounds, then the switch-over whatever the downtime: the guest (8 MiB written over and over)
    // would not converge on a loaded machine before it halts, and a halted guest tests nothing.
    // Page encoding forced on: every pre-copy cell's rounds and stop-and-copy carry XBZRLE deltas
    // in LZ4 frames, so each fault also meets a half-sent encoded stream (plain frames: the other
    // modes, and migration-failure.test.ts).
    case 'precopy': return { maxRounds: 2, switchoverAtMaxRounds: true, xbzrle: 'on', compress: 'on' };
    case 'cold': return { mode: 'cold' };
    case 'postcopy': return { mode: 'postcopy', pushDelayMs };
    case 'hybrid': return { mode: 'hybrid', postcopyAfterRounds: 1, downtimeLimitMs: 1, pushDelayMs };
  }
}

interface Cell {
  mode: Mode;
  boundary: Boundary;
  at: At;
  fault: Fault;
  outcome: Outcome;
  slug: string;
  /** A `lost` cell whose user gives the VM up (`vm destroy` on the live side) instead of restarting the dead host. */
  giveUp?: boolean;
}

const FULL = process.env.FERRY_FAULT_MATRIX === 'full';

function cells(): Cell[] {
  const out: Cell[] = [];
  for (const [mode, boundary, row] of MATRIX) {
    const outcomes = row.split(' ') as Outcome[];
    if (outcomes.length !== FAULTS.length) throw new Error(`MATRIX row ${mode}/${boundary} has ${outcomes.length} outcomes`);
    FAULTS.forEach((fault, i) => {
      const quick = QUICK.some(([m, b, f]) => m === mode && b === boundary && f === fault);
      if (!FULL && !quick) return;
      const ats = FULL ? messagesOf(mode, boundary) : messagesOf(mode, boundary).slice(0, 1);
      for (const at of ats) {
        const msgSlug = at.label.replace('↑', 'up').replace('↓', 'down').replace(/[^a-z0-9-]+/gi, '-');
        const slug = `${mode}-${boundary}-${msgSlug}-${fault}`;
        out.push({ mode, boundary, at, fault, outcome: outcomes[i]!, slug });
      }
    });
  }
  return out;
}

// ---- running a cell ----

/** Cells run a few at a time (they mostly wait for timeouts and outages). */
const JOBS = Math.max(1, Number(process.env.FERRY_FAULT_MATRIX_JOBS ?? 3));
let active = 0;
const queue: (() => void)[] = [];
async function slot<T>(f: () => Promise<T>): Promise<T> {
  if (active >= JOBS) await new Promise<void>((resolve) => queue.push(resolve));
  active++;
  try {
    return await f();
  } finally {
    active--;
    queue.shift()?.();
  }
}

const FINAL: readonly MigrationStatus[] = ['completed', 'failed', 'cancelled'];

async function runCell(cell: Cell, expect: ExpectStatic): Promise<void> {
  const { mode, boundary, fault, outcome } = cell;
  const oracle = oracleDigest(GUEST);
  const hosts: CellHost[] = [];
  let relay: MessageRelay | undefined;
  let back: MessageRelay | undefined;
  let monitor: Monitor | undefined;
  /** Set once the cell is over: a timer still pending must not bring its relay back. */
  let over = false;
  try {
    // Other hosts reach the source through a relay of its own (`back`), so a partition cuts both
    // ways: the destination can neither check on the source nor tell it an outcome across it.
    const backPort = await restartablePort(); // the back relay may refuse, then listen on it again
    const a = await CellHost.start('a', fault === 'kill-source', `ws://127.0.0.1:${backPort}`);
    hosts.push(a);
    back = await startMessageRelay(a.url, { port: backPort });
    const backRelay = back;
    const b = await CellHost.start('b', fault === 'kill-dest');
    hosts.push(b);
    await a.c.request('vm.create', createParams(VM, GUEST));
    await waitInstret(a.c, VM, STARTED_AT);
    if (mode === 'cold') await a.c.request('vm.pause', { name: VM });
    relay = await startMessageRelay(b.url);
    const r = relay;
    monitor = new Monitor(a, b, VM);
    const mon = monitor;

    // The relay: an observer first (it never matches), then a recovery cell's first cut, then the cell's fault.
    const seen: Seen = { state: false, pushFrames: 0, firstCut: boundary !== 'recovery' };
    r.on({
      match: (m) => {
        if (m.t === 'state' && m.dir === 'up') seen.state = true;
        if (seen.state && m.t === 'page-frame' && m.dir === 'up' && m.bytes >= PUSH_FRAME_MIN_BYTES) seen.pushFrames++;
        return false;
      },
      action: 'pass',
    });
    if (boundary === 'recovery') {
      const first = firstCutOf(mode);
      r.on({
        match: (m) => first.match(m, seen),
        action: 'cut-refuse',
        then: () => {
          // The way back stays cut until the cell's fault heals: the recovery is the source's to make.
          backRelay.cut('refuse');
          mon.note(`relay: first cut at ${first.label} (refused for 300 ms; the way back until the cell heals)`);
          setTimeout(() => void (over ? Promise.reject(new Error('cell over')) : r.heal()).then(() => {
            seen.firstCut = true;
            mon.note('relay: first cut healed');
          }, () => undefined), 300);
        },
      });
    }
    const dead = fault === 'kill-dest' ? b : fault === 'kill-source' ? a : undefined;
    let firedAt = 0;
    let atFire: string[] | undefined;
    const fired = new Promise<void>((resolve) => {
      r.on({
        match: (m) => cell.at.match(m, seen),
        action: fault === 'cut-refuse' ? 'cut-refuse' : fault === 'cut-silent' ? 'cut-silent' : fault === 'outage' ? 'freeze' : 'drop',
        then: () => {
          firedAt = Date.now();
          atFire = mon.latest.a;
          if (dead) dead.kill();
          else if (fault === 'outage') backRelay.freeze();
          else if (boundary !== 'recovery') backRelay.cut(fault === 'cut-refuse' ? 'refuse' : 'silent');
          mon.note(`relay: ${fault} at ${cell.at.label}`);
          resolve();
        },
      });
    });

    await a.c.request('migrate.start', { name: VM, to: r.url, ...migrateParams(mode, boundary) });
    // The boundary must come: a migration that ends first never met it.
    const ended = (async () => {
      while (!firedAt) {
        const s = await a.status(VM).catch(() => undefined);
        if (s && FINAL.includes(s.status)) return s;
        await sleep(50);
      }
      return undefined;
    })();
    const first = await Promise.race([fired.then(() => undefined), ended]);
    if (first !== undefined) throw new Error(`the migration ended (${first.status}: ${first['error-desc'] ?? ''}) before ${cell.at.label}: the boundary was never reached`);
    // A guest that halted before the boundary would make the cell test nothing.
    if (mode !== 'cold') expect(atFire, 'the guest still ran (or was paused for the switch-over) at the boundary').not.toContain('halted');

    const live = fault === 'kill-dest' ? a : b;
    if (dead) {
      // ---- a host died: the live side waits, as long as the dead one only refuses ----
      if (outcome === 'lost') {
        await eventually(async () => (await live.status(VM))?.status === 'postcopy-paused', `${live.name} to pause the post-copy`, 20_000);
        await sleep(DEAD_MS);
        const s = await live.status(VM);
        expect(s?.status, `${live.name} must keep waiting while ${dead.name} is refused: ${s?.['error-desc']}`).toBe('postcopy-paused');
        if (live === a) expect(await a.copies(VM), 'the source keeps its copy paused in post-copy').toEqual(['paused']);
      } else if (outcome === 'unknown>source') {
        await expectUnknown(expect, a, b, 'nothing-running');
        await sleep(DEAD_MS);
        await expectUnknown(expect, a, b, 'nothing-running');
      } else {
        await sleep(1_000);
      }
      if (cell.giveUp) {
        // The user gives the VM up: the live side says it is lost at once, without the dead host.
        await live.c.request('vm.destroy', { name: VM });
        mon.note(`vm destroy on ${live.name}`);
        const s = await finalStatus(live, 5_000);
        expect(s.status).toBe('failed');
        expect(s['error-desc']).toMatch(/VM is lost.*given up by the user/);
        expect(await live.copies(VM)).toEqual([]);
      }
      await dead.restart();
      await backRelay.heal(); // cut since a recovery cell's first cut
      mon.note(`${dead.name} restarted on port ${dead.port}`);
    } else {
      // ---- a link fault: what holds while it lasts ----
      const hold = HOLD_MS[fault as keyof typeof HOLD_MS];
      const healAt = firedAt + hold;
      const checkBy = healAt - 300;
      await interim(expect, cell, a, b, checkBy);
      await sleep(Math.max(0, healAt - Date.now()));
      await r.heal();
      await backRelay.heal();
      mon.note('relay: healed (both ways)');
    }

    await final(expect, cell, a, b, oracle);
    await mon.stop();
    expect(mon.violations, 'two copies of the guest ran at once').toEqual([]);
    if (process.env.FERRY_FAULT_MATRIX_LOGS) writeCellLog(cell.slug, { monitor: mon, relay: r, hosts, error: 'none: the cell passed' });
  } catch (e) {
    await monitor?.stop();
    const file = writeCellLog(cell.slug, { monitor, relay, hosts, error: e });
    const tail = [...(monitor?.timeline.slice(-14) ?? []), ...hosts.flatMap((h) => keyLogLines(h, 8))];
    const err = e instanceof Error ? e : new Error(String(e));
    err.message = `${err.message}\n--- timeline and key log lines (full log: ${file}) ---\n${tail.join('\n')}`;
    throw err;
  } finally {
    over = true;
    await monitor?.stop();
    await relay?.close().catch(() => undefined);
    await back?.close().catch(() => undefined);
    await Promise.all(hosts.map((h) => h.stop()));
  }
}

/** The source is in outcome-unknown with its copy paused; with `nothing-running`, the destination runs no copy either. */
async function expectUnknown(expect: ExpectStatic, a: CellHost, b: CellHost, also?: 'nothing-running', byMs = 20_000): Promise<void> {
  const s = await eventually(async () => {
    const st = await a.status(VM);
    return st && st.status !== 'active' && st.status !== 'device' && st.status !== 'setup' ? st : undefined;
  }, 'the source to leave the switch-over', byMs);
  expect(s.status, s['error-desc']).toBe('outcome-unknown');
  expect(await a.copies(VM), 'the source keeps its copy paused while the outcome is unknown').toEqual(['paused']);
  if (also === 'nothing-running') expect(await b.copies(VM), 'nothing runs at the destination').not.toContain('running');
}

/** What must hold while a link fault lasts (checked until `byTime`, just before it heals). */
async function interim(expect: ExpectStatic, cell: Cell, a: CellHost, b: CellHost, byTime: number): Promise<void> {
  const left = () => Math.max(200, byTime - Date.now());
  const statusOf = async (h: CellHost, want: MigrationStatus, what: string) => {
    try {
      return await eventually(async () => {
        const s = await h.status(VM);
        return s?.status === want ? s : undefined;
      }, what, left());
    } catch {
      const s = await h.status(VM);
      expect(s?.status, `${what} before the fault healed (${s?.['error-desc'] ?? ''})`).toBe(want);
      return s!;
    }
  };
  switch (cell.outcome) {
    case 'source': {
      await statusOf(a, 'failed', 'the source to give the migration up');
      const here = await a.copies(VM);
      expect(here.length, 'one copy at the source').toBe(1);
      expect(cell.mode === 'cold' ? ['paused'] : ['running', 'halted']).toContain(here[0]);
      return;
    }
    case 'unknown>source':
      await statusOf(a, 'outcome-unknown', 'outcome-unknown at the source');
      return expectUnknown(expect, a, b, 'nothing-running', left());
    case 'unknown>dest':
      await statusOf(a, 'outcome-unknown', 'outcome-unknown at the source');
      return expectUnknown(expect, a, b, undefined, left());
    case 'paused>source':
      await statusOf(a, 'postcopy-paused', 'postcopy-paused at the source');
      expect(await a.copies(VM), 'the source keeps its copy paused').toEqual(['paused']);
      expect(await b.copies(VM), 'nothing runs at the destination yet').not.toContain('running');
      return;
    case 'recovers':
      await statusOf(a, 'postcopy-paused', 'postcopy-paused at the source');
      await statusOf(b, 'postcopy-paused', 'postcopy-paused at the destination');
      expect(await a.copies(VM), 'the source keeps its copy paused in post-copy').toEqual(['paused']);
      return;
    default:
      throw new Error(`outcome ${cell.outcome} is not one of a link fault`);
  }
}

/** Runs the one remaining copy to its end (a cold one is resumed first) and returns its digest. */
async function digestOf(h: CellHost, mode: Mode): Promise<string> {
  const [state] = await h.copies(VM);
  if (mode === 'cold' && state === 'paused') await h.c.request('vm.resume', { name: VM });
  return finalDigest(h.c, VM, 60_000);
}

async function finalStatus(h: CellHost, timeoutMs = 40_000): Promise<MigrationInfo> {
  return eventually(async () => {
    const s = await h.status(VM);
    return s && FINAL.includes(s.status) ? s : undefined;
  }, `the migration to end on ${h.name}`, timeoutMs, 50);
}

async function noCopy(h: CellHost, what: string): Promise<void> {
  await eventually(async () => (await h.copies(VM)).length === 0, what, 40_000, 50);
}

/** How the cell ends. */
async function final(expect: ExpectStatic, cell: Cell, a: CellHost, b: CellHost, oracle: Promise<string>): Promise<void> {
  const { mode, outcome } = cell;
  switch (outcome) {
    case 'source':
    case 'unknown>source':
    case 'paused>source': {
      const out = await finalStatus(a);
      expect(out.status, out['error-desc']).toBe('failed');
      if (outcome === 'unknown>source') expect(out['error-code']).toBe('ENOTRESUMED');
      // A dead destination decided it only by answering again, restarted (refused proves nothing).
      if (outcome === 'unknown>source' && cell.fault === 'kill-dest') expect(out['error-desc']).toMatch(/another incarnation|restarted/);
      await noCopy(b, 'the destination to drop its half');
      const inc = await b.status(VM);
      if (inc) expect(['failed', 'cancelled'], `the destination: ${inc['error-desc']}`).toContain(inc.status);
      expect((await a.copies(VM)).length).toBe(1);
      expect(await digestOf(a, mode)).toBe(await oracle);
      return;
    }
    case 'unknown>dest':
    case 'recovers': {
      const out = await finalStatus(a);
      expect(out.status, out['error-desc']).toBe('completed');
      if (outcome === 'recovers') expect(out['postcopy-recoveries']).toBeGreaterThanOrEqual(1);
      const inc = await finalStatus(b);
      expect(inc.status, inc['error-desc']).toBe('completed');
      if (outcome === 'recovers') expect(inc['postcopy-recoveries']).toBeGreaterThanOrEqual(1);
      // As QEMU's query-migrate: a migration that completed reports no error (what went wrong on the way is in the log).
      expect(out['error-desc'], 'the source reports a completed migration with an error').toBeUndefined();
      expect(inc['error-desc'], 'the destination reports a completed migration with an error').toBeUndefined();
      if (outcome === 'recovers' && mode === 'postcopy') expect(inc['pages-sent'], 'every missing page filled once').toBe(out['touched-pages']);
      await noCopy(a, 'the source to drop its copy');
      expect((await b.copies(VM)).length).toBe(1);
      expect(await digestOf(b, mode)).toBe(await oracle);
      return;
    }
    case 'lost': {
      const live = cell.fault === 'kill-dest' ? a : b;
      const dead = live === a ? b : a;
      const s = await finalStatus(live);
      expect(s.status).toBe('failed');
      expect(s['error-desc']).toMatch(/VM is lost/);
      // Proof of death is the restarted host answering, never a refusal.
      if (!cell.giveUp) expect(s['error-desc']).toMatch(/restarted/);
      await noCopy(live, `${live.name} to drop its half`);
      expect(await dead.copies(VM), 'the restarted host knows nothing of it').toEqual([]);
      return;
    }
    case 'dest': {
      const inc = await finalStatus(b);
      expect(inc.status, inc['error-desc']).toBe('completed');
      expect(inc['error-desc'], 'the destination reports a completed migration with an error').toBeUndefined();
      expect(await a.copies(VM), 'the restarted source knows nothing of it').toEqual([]);
      expect((await b.copies(VM)).length).toBe(1);
      expect(await digestOf(b, mode)).toBe(await oracle);
      return;
    }
    case 'gone': {
      await noCopy(b, 'the destination to drop its half');
      const inc = await b.status(VM);
      if (inc) expect(['failed', 'cancelled'], `the destination: ${inc['error-desc']}`).toContain(inc.status);
      expect(await a.copies(VM), 'the restarted source knows nothing of it').toEqual([]);
      return;
    }
  }
}

// Each cell stops its own hosts; whatever a cell cut short by its timeout left running goes here.
afterAll(async () => {
  await killAllSpawned();
});

describe('the fault matrix table', () => {
  it("is the README's (Live migration, Fault matrix), quick cells marked *", ({ expect }) => {
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('### Fault matrix'));
    const rows: [string, string, string][] = [];
    const quick: string[] = [];
    for (const line of section.slice(0, section.indexOf('\n#', 1)).split('\n')) {
      const cols = line.split('|').slice(1, -1).map((c) => c.trim());
      if (cols.length !== 7 || !['precopy', 'cold', 'postcopy', 'hybrid'].includes(cols[0]!)) continue;
      const [mode, boundary, ...outcomes] = cols as [string, string, ...string[]];
      const b = boundary.split(' ')[0]!;
      rows.push([mode, b, outcomes.map((o) => o.replace(/\*$/, '')).join(' ')]);
      outcomes.forEach((o, i) => {
        if (o.endsWith('*')) quick.push(`${mode} ${b} ${FAULTS[i]}`);
      });
    }
    expect(rows).toEqual(MATRIX);
    expect(quick.sort()).toEqual(QUICK.map((q) => q.join(' ')).sort());
  });
});

/** Full matrix only: `lost` cells where the user gives the VM up (`vm destroy`) instead of restarting the dead host. */
function giveUpCells(): Cell[] {
  if (!FULL) return [];
  const pick = (mode: Mode, boundary: Boundary, fault: Fault): Cell => {
    const at = messagesOf(mode, boundary)[0]!;
    return { mode, boundary, at, fault, outcome: 'lost', giveUp: true, slug: `${mode}-${boundary}-${fault}-vm-destroy` };
  };
  return [pick('postcopy', 'push', 'kill-dest'), pick('postcopy', 'push', 'kill-source'), pick('hybrid', 'resume-ack', 'kill-dest'), pick('hybrid', 'resume-ack', 'kill-source')];
}

describe.concurrent(`fault matrix (${FULL ? 'full' : 'quick: FERRY_FAULT_MATRIX=full for every cell'})`, () => {
  for (const cell of [...cells(), ...giveUpCells()]) {
    const fault = cell.giveUp ? `${FAULT_TEXT[cell.fault].replace(', restarted', '')}, the VM given up with vm destroy` : FAULT_TEXT[cell.fault];
    const outcome = cell.giveUp ? 'lost at once on the live side; the restarted host knows nothing of it' : OUTCOME_TEXT[cell.outcome];
    const title = `${cell.mode} · ${cell.boundary} (${cell.at.label}) · ${fault} → ${outcome}`;
    it(title, ({ expect }) => slot(() => runCell(cell, expect)), 240_000);
  }
});
