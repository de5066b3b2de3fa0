/**
 * Who owns a migrating VM, at every point of every mode: the one place this is decided.
 *
 * A guest may run on one host at a time. The source owns it until the switch-over's commit, the
 * destination from then on; in post-copy they hold it together (the destination runs it, the
 * source holds the pages it has not sent) until every page is there. Failure handling is a
 * function of the phase, never of a guess:
 *
 *   source phase      owner        on a failure (lost link, peer error, timeout)
 *   ---------------   ----------   ----------------------------------------------------------------
 *   setup             source       fail; the guest runs on here (the destination drops its half)
 *   precopy           source       fail; the guest runs on here
 *   advise            source       fail; the guest runs on here (post-copy/hybrid, before the pause)
 *   stop-and-copy     source       fail; the guest is resumed here (the state section has not left)
 *   switching         undecided    the state section has left: the destination may have resumed.
 *                                  Pre-copy/cold: outcome-unknown. Post-copy: postcopy-paused.
 *   outcome-unknown   undecided    the guest stays paused here; the source asks the destination over
 *                                  fresh links until it answers: it resumed (completed: released
 *                                  here) or it never will (failed: resumed here). An operator may
 *                                  decide instead (`migrate resolve`).
 *   postcopy-active   split        postcopy-paused, recovered over a new link
 *   postcopy-paused   split        keep trying; lost only when the destination answers and no
 *                                  longer knows the migration, or is another incarnation of its host
 *                                  (restarted), or the user gives the VM up (vm destroy, or the
 *                                  --give-up-after deadline)
 *   completed         destination  -
 *   failed/cancelled  source       -
 *   lost              nobody       both live sides say the VM is lost
 *
 * What is never evidence of anything: a refused connection, a timeout, an unreachable address (a
 * proxy, a firewall, a restarting listener or a partition look the same as a dead host).
 *
 * The destination's side (IncomingMigration): until it resumes the guest it owns nothing and
 * drops its half on any failure; it resumes only while its link to the source is up, and it
 * remembers how each migration ended (completed, or discarded) for a source that asks later.
 */

export type SourcePhase =
  | 'setup' | 'precopy' | 'advise' | 'stop-and-copy' | 'switching' | 'outcome-unknown'
  | 'postcopy-active' | 'postcopy-paused' | 'completed' | 'failed' | 'cancelled' | 'lost';

export type Owner = 'source' | 'undecided' | 'split' | 'destination' | 'nobody';

export const SOURCE_OWNER: Record<SourcePhase, Owner> = {
  setup: 'source', precopy: 'source', advise: 'source', 'stop-and-copy': 'source',
  switching: 'undecided', 'outcome-unknown': 'undecided',
  'postcopy-active': 'split', 'postcopy-paused': 'split',
  completed: 'destination', failed: 'source', cancelled: 'source', lost: 'nobody',
};

/** The source's transitions; any other is a bug (OutgoingMigration asserts it). */
export const SOURCE_TRANSITIONS: Record<SourcePhase, readonly SourcePhase[]> = {
  setup: ['precopy', 'advise', 'stop-and-copy', 'failed', 'cancelled'],
  precopy: ['advise', 'stop-and-copy', 'failed', 'cancelled'],
  advise: ['stop-and-copy', 'failed', 'cancelled'],
  'stop-and-copy': ['switching', 'failed', 'cancelled'],
  // failed from switching: the destination answered that it never resumed the guest.
  switching: ['completed', 'postcopy-active', 'postcopy-paused', 'outcome-unknown', 'failed'],
  'outcome-unknown': ['completed', 'failed'],
  'postcopy-active': ['postcopy-paused', 'completed', 'lost'],
  'postcopy-paused': ['postcopy-active', 'completed', 'lost', 'failed'],
  completed: [],
  failed: [],
  cancelled: [],
  lost: [],
};

/**
 * The destination's phases, and what its bulk stream may carry in each (`page-frame`: a page
 * frame). Anything else is a protocol error: it fails the migration before the switch-over (the
 * source keeps the guest), or pauses it in post-copy, as a lost link would.
 *
 *   setup -> precopy -> [advised ->] switching -> postcopy -> done
 *                            \----------------> switching -> done   (pre-copy and cold)
 */
export type DestinationPhase = 'setup' | 'precopy' | 'advised' | 'switching' | 'postcopy' | 'done';

const DESTINATION_ACCEPTS: Record<DestinationPhase, readonly string[]> = {
  setup: ['setup'],
  precopy: ['page-frame', 'round-end', 'console', 'state', 'postcopy-advise'],
  advised: ['state'],
  // The restore is running: frames wait in a backlog until it is over.
  switching: [],
  postcopy: ['page-frame', 'postcopy-done'],
  done: [],
};

/** The destination's step: undefined when `message` (a type, or 'page-frame') may arrive in `phase`, else why not. */
export function destinationStep(phase: DestinationPhase, message: string): string | undefined {
  if (DESTINATION_ACCEPTS[phase].includes(message)) return undefined;
  const where = phase === 'setup' ? 'before the setup' : `in phase ${phase}`;
  return message === 'page-frame' ? `a page frame ${where}` : `unexpected "${message}" ${where}`;
}
