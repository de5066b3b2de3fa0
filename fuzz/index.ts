/**
 * Ferry's structure-aware fuzzing kit: `runFuzz(options)` fuzzes a host (with VMs and a
 * post-copy migration in flight) and returns a FuzzReport; `summary(report)` renders it for
 * people. The CLI is fuzz/run.ts (`npm run fuzz -- --help`).
 */
export { runFuzz, type FuzzOptions } from './engine.ts';
export { summary, verdict, type CrashRecord, type FuzzReport, type HangRecord, type ResourceReport, type StrategyStats } from './report.ts';
export { STRATEGIES, selectStrategies } from './strategies/index.ts';
export { startFixture, type Fixture, type FixtureOptions } from './target.ts';
export { ABORT_KINDS, runAbortSoak, type AbortKind, type SoakOptions, type SoakReport } from './soak.ts';
