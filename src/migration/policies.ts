/**
 * The two decisions a migration protocol variant most often changes, as interfaces a user
 * implements and passes in: the pre-copy convergence decision (after each round: another round,
 * a throttle, the switch-over, post-copy, or giving up) and the post-copy push order (which
 * missing pages go first; faults still jump the queue). Ferry's own behaviour ships as the
 * defaults, with one alternative each. A host knows its policies by name (built in, registered
 * in code through the API, or loaded at `ferry host start --policy-module F`); a migration picks
 * them by name, so a control client never makes a host load code.
 */
import { RAM_BASE, PAGE_SIZE } from '../memory/layout.ts';
import { decide, expectedDowntimeMs, INITIAL_CONVERGENCE, type ConvergenceParams, type ConvergenceState, type Decision, type RoundResult } from './convergence.ts';

export type { ConvergenceParams, Decision, RoundResult } from './convergence.ts';

/** One migration's convergence decisions (a new one per migration: it may keep state between rounds). */
export interface ConvergencePolicy {
  /** After each pre-copy round, with what it measured: what next. */
  afterRound(r: RoundResult, p: ConvergenceParams): Decision;
}

export interface ConvergencePolicyFactory {
  name: string;
  description: string;
  create(): ConvergencePolicy;
}

/**
 * What a push order may look at, taken while the guest still runs (the order is decided before
 * the switch-over, so it costs no downtime): the pc the vCPU last published, the RAM's size in
 * pages, and in hybrid the pages the last pre-copy round found dirty (what the guest writes now).
 */
export interface PushOrderContext {
  pc: number;
  ramPages: number;
  recentlyDirty?: Uint32Array;
}

export interface PushOrderPolicy {
  name: string;
  description: string;
  /** The missing pages (`pages`, the default order) in the order to push them: the same pages, each once. */
  order(pages: Uint32Array, ctx: PushOrderContext): Uint32Array;
}

/** Ferry's decision (convergence.ts): QEMU's rules, the measured stop-and-copy rate, auto-converge, hybrid's switch. */
export const DEFAULT_CONVERGENCE: ConvergencePolicyFactory = {
  name: 'default',
  description: 'switch over once the expected downtime fits the limit; throttle at max rounds (or with --auto-converge); hybrid switches to post-copy after two rounds that leave half of what they sent dirty',
  create() {
    let state: ConvergenceState = INITIAL_CONVERGENCE;
    return {
      afterRound(r, p) {
        const { decision, state: next } = decide(p, state, r);
        state = next;
        return decision;
      },
    };
  },
};

/**
 * Predicts, from the first round on, how many rounds pre-copy needs: each round sends what the
 * one before left dirty, so the dirty set shrinks by the ratio dirtied ÷ sent per round. If that
 * ratio is 0.8 or more (or the rounds needed to bring the expected downtime under the limit
 * exceed the rounds left), hybrid switches to post-copy at once instead of sending rounds that
 * will not converge; otherwise, and in plain pre-copy, it decides as the default does.
 */
export const PREDICTIVE_CONVERGENCE: ConvergencePolicyFactory = {
  name: 'predictive',
  description: 'hybrid: switch to post-copy as soon as the dirty rate measured in a round predicts that pre-copy will not converge within the rounds left',
  create() {
    const fallback = DEFAULT_CONVERGENCE.create();
    return {
      afterRound(r, p) {
        const base = fallback.afterRound(r, p);
        if (p.mode !== 'hybrid' || r.stopped || r.postcopyRequested || base.next !== 'round' || r.bytes <= 0) return base;
        const ratio = r.dirtyBytes / r.bytes;
        const expected = expectedDowntimeMs(r);
        const roundsLeft = Math.max(0, Math.min(p.maxRounds, p.postcopyAfterRounds) - r.rounds);
        const needed = ratio >= 1 ? Infinity : Math.ceil(Math.log(p.downtimeLimitMs / expected) / Math.log(ratio));
        if (ratio >= 0.8 || needed > roundsLeft) {
          return { next: 'postcopy', reason: `predicted not to converge: round ${r.rounds} left ${Math.round(ratio * 100)} % of what it sent dirty (${needed === Infinity ? 'never' : `${needed} more rounds`} to fit ${p.downtimeLimitMs} ms)` };
        }
        return base;
      },
    };
  },
};

/** The missing pages in page order (what the guest wrote first is no nearer the front than any other). */
export const ASCENDING_PUSH: PushOrderPolicy = {
  name: 'default',
  description: 'page order',
  order: (pages) => pages,
};

/**
 * The pages nearest the guest's pc first (the code it is running, and what sits next to it),
 * then outwards in both directions: a guest resumed in post-copy faults first on what it runs.
 */
export const NEAR_PC_PUSH: PushOrderPolicy = {
  name: 'near-pc',
  description: 'the pages nearest the guest\'s program counter first, then outwards',
  order(pages, ctx) {
    const pcPage = Math.floor(((ctx.pc >>> 0) - RAM_BASE) / PAGE_SIZE);
    // O(n) after a numeric sort: outwards from the pc's place, the nearer side first (it runs in the downtime).
    const sorted = Uint32Array.from(pages).sort();
    let hi = 0;
    while (hi < sorted.length && sorted[hi]! < pcPage) hi++;
    let lo = hi - 1;
    const out = new Uint32Array(sorted.length);
    for (let k = 0; k < out.length; k++) {
      const takeHigh = lo < 0 || (hi < sorted.length && sorted[hi]! - pcPage < pcPage - sorted[lo]!); // a tie: the lower page
      out[k] = takeHigh ? sorted[hi++]! : sorted[lo--]!;
    }
    return out;
  },
};

/** The policies a host can run migrations with, by name. */
export class PolicyRegistry {
  private readonly convergence = new Map<string, ConvergencePolicyFactory>();
  private readonly push = new Map<string, PushOrderPolicy>();

  constructor() {
    for (const c of [DEFAULT_CONVERGENCE, PREDICTIVE_CONVERGENCE]) this.addConvergence(c);
    for (const p of [ASCENDING_PUSH, NEAR_PC_PUSH]) this.addPushOrder(p);
  }

  addConvergence(c: ConvergencePolicyFactory): void {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(c.name)) throw new Error(`a convergence policy needs a name of letters, digits, ".", "_" or "-" (got ${JSON.stringify(c.name)})`);
    this.convergence.set(c.name, c);
  }

  addPushOrder(p: PushOrderPolicy): void {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(p.name)) throw new Error(`a push order needs a name of letters, digits, ".", "_" or "-" (got ${JSON.stringify(p.name)})`);
    this.push.set(p.name, p);
  }

  /** Registers what a policy module exports: `convergencePolicies` and `pushOrders`, arrays of the above. */
  addModule(mod: Record<string, unknown>, where: string): string[] {
    const added: string[] = [];
    const list = (k: string): unknown[] => {
      const v = mod[k];
      if (v === undefined) return [];
      if (!Array.isArray(v)) throw new Error(`${where}: "${k}" must be an array`);
      return v;
    };
    for (const c of list('convergencePolicies')) {
      if (typeof (c as ConvergencePolicyFactory)?.create !== 'function') throw new Error(`${where}: each of convergencePolicies needs a name and create()`);
      this.addConvergence(c as ConvergencePolicyFactory);
      added.push(`convergence ${(c as ConvergencePolicyFactory).name}`);
    }
    for (const p of list('pushOrders')) {
      if (typeof (p as PushOrderPolicy)?.order !== 'function') throw new Error(`${where}: each of pushOrders needs a name and order()`);
      this.addPushOrder(p as PushOrderPolicy);
      added.push(`push order ${(p as PushOrderPolicy).name}`);
    }
    if (added.length === 0) throw new Error(`${where} exports neither convergencePolicies nor pushOrders`);
    return added;
  }

  convergencePolicy(name = 'default'): ConvergencePolicyFactory {
    const c = this.convergence.get(name);
    if (!c) throw new Error(`no convergence policy "${name}" on this host (it has: ${[...this.convergence.keys()].join(', ')})`);
    return c;
  }

  pushOrder(name = 'default'): PushOrderPolicy {
    const p = this.push.get(name);
    if (!p) throw new Error(`no push order "${name}" on this host (it has: ${[...this.push.keys()].join(', ')})`);
    return p;
  }
}
