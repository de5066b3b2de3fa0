/** Every strategy, by name. */
import { controlParams, controlReqConfused, controlVmCreate } from './control.ts';
import { msgpackDeepNesting, msgpackExt, msgpackHugeHeader, msgpackTruncated, randomBytes, textFrames } from './frames.ts';
import { helloConfused } from './hello.ts';
import { migrateAfterSetup, migrateCorruptPages, migrateGarbageState, migrateOutOfOrder, migrateSetupConfused } from './migrate.ts';
import { postcopyHostile } from './postcopy.ts';
import { rawHttp, rawWsFrames } from './raw-ws.ts';
import { slowIdleTcp, slowTrickleHttp, slowWsNoHello } from './slow.ts';
import type { Strategy, Surface } from './types.ts';

export const STRATEGIES: readonly Strategy[] = [
  randomBytes, textFrames, msgpackTruncated, msgpackHugeHeader, msgpackDeepNesting, msgpackExt,
  helloConfused, controlParams, controlVmCreate, controlReqConfused,
  migrateOutOfOrder, migrateAfterSetup, migrateSetupConfused, migrateCorruptPages, migrateGarbageState, postcopyHostile,
  rawHttp, rawWsFrames,
  slowIdleTcp, slowTrickleHttp, slowWsNoHello,
];

/** The strategies a run uses: those on its surfaces, `only` if given, minus `exclude`. */
export function selectStrategies(surfaces: readonly Surface[], only?: readonly string[], exclude?: readonly string[]): Strategy[] {
  const known = new Set(STRATEGIES.map((s) => s.name));
  for (const n of [...(only ?? []), ...(exclude ?? [])]) {
    if (!known.has(n)) throw new Error(`unknown strategy "${n}" (known: ${[...known].join(', ')})`);
  }
  return STRATEGIES.filter((s) => s.surfaces.some((x) => surfaces.includes(x))
    && (only === undefined || only.length === 0 || only.includes(s.name))
    && !(exclude ?? []).includes(s.name));
}

export type { CaseContext, Strategy, Surface, TargetInfo } from './types.ts';
