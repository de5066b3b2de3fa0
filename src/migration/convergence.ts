/**
 * Pre-copy convergence: after each round, whether to send another, throttle the vCPU, stop the
 * guest for the switch-over, or (hybrid) switch to post-copy. A pure function of the rounds so
 * far and the user's parameters, so it is tested without a VM or a link.
 *
 * The promise: the switch-over never happens above the downtime limit unless the user allowed it.
 * A pre-copy that reaches --max-rounds without converging throttles the vCPU (QEMU's
 * auto-converge steps) and goes on until it converges; hybrid switches to post-copy instead;
 * --switchover-at-max-rounds switches over at max rounds whatever the expected downtime. One that
 * still does not converge after ROUNDS_AT_MAX_THROTTLE rounds at the highest throttle gives up:
 * the migration fails and the guest runs on at the source (a wait that could never end, else).
 */
import { mib, round2 } from './stats.ts';

/** Auto-converge as QEMU: trigger when dirtying outpaces 50 % of sending twice, 20 % then +10 %, cap 99 %. */
export const THROTTLE_TRIGGER = 0.5;
export const THROTTLE_INITIAL = 20;
export const THROTTLE_STEP = 10;
export const THROTTLE_MAX = 99;
export const ROUNDS_AT_MAX_THROTTLE = 5;

export interface ConvergenceParams {
  mode: 'precopy' | 'hybrid';
  downtimeLimitMs: number;
  maxRounds: number;
  autoConverge: boolean;
  postcopyAfterRounds: number;
  /** Switch over at max rounds even above the downtime limit (else keep converging). */
  switchoverAtMaxRounds: boolean;
}

/** What one round measured. */
export interface RoundResult {
  /** Rounds done so far, this one included. */
  rounds: number;
  /** Bytes this round sent, and how long it took (from its first frame to the destination's acknowledgement). */
  bytes: number;
  ms: number;
  /** The link's round-trip time, as measured so far (0: not known). */
  rttMs?: number;
  /** The state section the switch-over will send besides the pages (an estimate; 0: not counted). */
  stateBytes?: number;
  /** Bytes dirtied while it ran (left for the next round). */
  dirtyBytes: number;
  /** The guest no longer runs (it halted, or was paused): nothing more will be dirtied. */
  stopped: boolean;
  /** `migrate start-postcopy` was asked for. */
  postcopyRequested: boolean;
  /** The stop-and-copy as measured in earlier switch-overs to this destination (switchover-history.ts), if any. */
  switchover?: { rate: number; fixedMs: number };
}

export type Decision =
  /** `notConverging`: pre-copy is plainly not converging by itself (said as early as that is known: QEMU's trigger, two rounds in a row). */
  | { next: 'round'; throttle: number; notConverging?: string }
  | { next: 'stop-and-copy'; reason: string }
  | { next: 'postcopy'; reason: string }
  | { next: 'give-up'; reason: string };

/** The policy's memory between rounds. */
export interface ConvergenceState {
  /** QEMU's dirty_rate_high_cnt: rounds that left more than THROTTLE_TRIGGER of what they sent dirty; reset at each throttle step. */
  hot: number;
  /** Such rounds in a row (hybrid's switch to post-copy). */
  inARow: number;
  throttle: number;
  /** Rounds run at THROTTLE_MAX so far. */
  atMax: number;
}

export const INITIAL_CONVERGENCE: ConvergenceState = { hot: 0, inARow: 0, throttle: 0, atMax: 0 };

/**
 * Expected downtime of switching over now: what is dirty and the state section, sent at the
 * stop-and-copy rate measured in earlier switch-overs to this destination, after their pause and
 * harvest, and never less than a round trip (the acknowledgement). With no such measurement, sent
 * as this round sent its bytes, and never less than the round trip of the state section's
 * acknowledgement plus their sending time alone. The first is what a round of that size took,
 * latency and TCP's window included (on a 20 ms link a few dozen kilobytes take two round trips
 * after a small round); the second keeps a switch-over that sends little from being counted as
 * nearly free when the round trip is most of it. Sending time is the round's duration less the
 * round trip of its own acknowledgement.
 */
export function expectedDowntimeMs(r: RoundResult): number {
  const toSend = r.dirtyBytes + (r.stateBytes ?? 0);
  const rtt = Math.min(r.rttMs ?? 0, r.ms);
  if (r.switchover !== undefined) return r.switchover.fixedMs + Math.max(toSend / r.switchover.rate, rtt);
  if (r.bytes <= 0) return toSend > 0 ? Infinity : 0;
  const asThisRound = (toSend * r.ms) / r.bytes;
  const sendingMs = Math.max(r.ms - rtt, r.ms / 10, 0.001);
  return Math.max(asThisRound, rtt + (toSend * sendingMs) / r.bytes);
}

export function decide(p: ConvergenceParams, s: ConvergenceState, r: RoundResult): { decision: Decision; state: ConvergenceState } {
  const expected = expectedDowntimeMs(r);
  const high = r.bytes > 0 && r.dirtyBytes > THROTTLE_TRIGGER * r.bytes;
  const next: ConvergenceState = { hot: high ? s.hot + 1 : s.hot, inARow: high ? s.inARow + 1 : 0, throttle: s.throttle, atMax: s.throttle === THROTTLE_MAX ? s.atMax + 1 : 0 };
  if (r.stopped) return { decision: { next: 'stop-and-copy', reason: 'the guest is not running' }, state: next };
  if (expected <= p.downtimeLimitMs) {
    return { decision: { next: 'stop-and-copy', reason: `converged: expected downtime ${round2(expected)} ms, limit ${p.downtimeLimitMs} ms` }, state: next };
  }
  if (p.mode === 'hybrid') {
    // Two rounds in a row leaving more than half of what they sent dirty again: dirtying keeps
    // up with the link, so pre-copy will not converge (QEMU's convergence trigger).
    const why = r.postcopyRequested ? 'requested'
      : r.rounds >= p.postcopyAfterRounds ? `after ${r.rounds} rounds`
        : next.inARow >= 2 ? 'pre-copy is not converging'
          : r.rounds >= p.maxRounds ? `max rounds (${r.rounds})` : undefined;
    if (why !== undefined) return { decision: { next: 'postcopy', reason: why }, state: next };
  }
  if (r.rounds >= p.maxRounds && p.switchoverAtMaxRounds) {
    return { decision: { next: 'stop-and-copy', reason: `max rounds (${r.rounds}), allowed above the limit: expected downtime ${round2(expected)} ms` }, state: next };
  }
  // Throttle as QEMU's auto-converge does when asked to, and always once max rounds are reached
  // without converging: that is how pre-copy keeps its downtime promise.
  const mustConverge = r.rounds >= p.maxRounds;
  if (mustConverge && next.atMax >= ROUNDS_AT_MAX_THROTTLE) {
    return {
      decision: {
        next: 'give-up',
        reason: `pre-copy cannot converge: expected downtime ${round2(expected)} ms against a limit of ${p.downtimeLimitMs} ms after ${r.rounds} rounds, `
          + `${next.atMax} of them with the vCPU throttled ${THROTTLE_MAX} %; raise --downtime-limit, use --mode hybrid, or allow --switchover-at-max-rounds`,
      },
      state: next,
    };
  }
  if ((p.autoConverge && next.hot >= 2) || mustConverge) {
    next.throttle = s.throttle === 0 ? THROTTLE_INITIAL : Math.min(THROTTLE_MAX, s.throttle + THROTTLE_STEP);
    next.hot = 0;
  }
  if (next.inARow < 2) return { decision: { next: 'round', throttle: next.throttle }, state: next };
  const what = next.throttle > 0 ? `the vCPU is throttled ${next.throttle} %`
    : `it throttles the vCPU from round ${p.maxRounds} (--max-rounds); --auto-converge throttles sooner, --mode hybrid switches to post-copy`;
  const notConverging = `pre-copy is not converging: round ${r.rounds} left ${mib(r.dirtyBytes)} dirty of ${mib(r.bytes)} sent (the guest dirties memory `
    + `about as fast as the link sends it), expected downtime ${round2(expected)} ms against a limit of ${p.downtimeLimitMs} ms; ${what}`;
  return { decision: { next: 'round', throttle: next.throttle, notConverging }, state: next };
}
