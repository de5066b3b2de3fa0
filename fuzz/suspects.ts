/**
 * Who crashed the host: the cases in flight when it died and those that had just ended, most
 * likely first. A host usually dies of the frame it has just read, but its exit is seen a little
 * later, while other cases keep sending; the stack trace's src/ paths say which endpoint it was.
 */
import type { CaseRef } from './report.ts';

export interface CaseActivity extends CaseRef {
  /** When it last sent a frame (ms epoch). */
  lastSendAt: number;
  /** Endpoints it spoke to ('/control', '/migrate', 'raw'). */
  endpoints: ReadonlySet<string>;
}

/** Which endpoint a crash's stack trace points at, if it says (the host's src/ paths). */
export function endpointHint(stderr: string): '/control' | '/migrate' | undefined {
  const own = stderr.split('\n').filter((l) => /^\s+at .*\/src\//.test(l)).join('\n');
  if (/\/migration\/|migrations\.ts|onMigrate/.test(own)) return '/migrate';
  if (/control-server|onControl/.test(own)) return '/control';
  return undefined;
}

/** The cases ranked: those that spoke to `hint` first (raw TCP ones next), then by their last frame. */
export function rankSuspects(cases: readonly CaseActivity[], hint: '/control' | '/migrate' | undefined): CaseRef[] {
  const rank = (e: ReadonlySet<string>) => (hint === undefined ? 0 : e.has(hint) ? 0 : e.has('raw') ? 1 : 2);
  const sorted = [...cases].sort((a, b) => rank(a.endpoints) - rank(b.endpoints) || b.lastSendAt - a.lastSendAt);
  const seen = new Set<number>();
  return sorted.filter((s) => (seen.has(s.case) ? false : (seen.add(s.case), true))).map((s) => ({ case: s.case, strategy: s.strategy }));
}
