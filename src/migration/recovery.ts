/**
 * What every recovery after a lost link shares, on both sides: how soon to try again (a backoff,
 * doubling from a first delay to a ceiling), how long the user allows a paused post-copy
 * (`--give-up-after`), and which answers end it. Who retries what:
 *   - the source reconnects a paused post-copy (`recover`) and asks about a switch-over whose
 *     answer it lost (`query`), see outgoing.ts;
 *   - a paused post-copy destination checks on its source's control API, see incoming.ts;
 *   - a destination that resumed a pre-copy guest tells a source that has not heard (host layer).
 * None of them ever takes a refusal, a timeout or an unreachable address as an answer.
 */

export class Backoff {
  private delayMs: number;

  constructor(firstMs: number, private readonly maxMs: number) {
    this.delayMs = firstMs;
  }

  /** The delay before the next attempt; the one after doubles, up to the ceiling. */
  next(): number {
    const d = this.delayMs;
    this.delayMs = Math.min(this.maxMs, this.delayMs * 2);
    return d;
  }

  /** The delay next() will return. */
  peek(): number {
    return this.delayMs;
  }
}

/** How long a paused post-copy has left before `--give-up-after` ends it (Infinity without a deadline). */
export function giveUpLeftMs(pausedAt: number, giveUpAfterMs: number | undefined, now: number): number {
  return giveUpAfterMs === undefined || giveUpAfterMs <= 0 ? Infinity : pausedAt + giveUpAfterMs - now;
}

/**
 * A failed post-copy recovery attempt ends the migration only on an answer from a peer that is
 * there and cannot go on: it knows no such migration (ENOMIGRATION), it had the guest and lost it
 * (ELOST), or it is another incarnation of its host (EHOSTGONE). Anything else (refused, timed
 * out, reset, a protocol error on the new link) says nothing about the host: try again.
 */
export function recoveryAttemptIsFinal(code: string): boolean {
  return code === 'ENOMIGRATION' || code === 'ELOST' || code === 'EHOSTGONE';
}
