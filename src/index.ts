/**
 * Ferry as a library (the package's main entry, `import ... from 'ferry'`): start hosts in this
 * process or as processes, drive VMs, migrate them with every option, follow each migration's
 * QEMU-style events and read its statistics. The test kit is `ferry/testing`.
 */
export { FerryClient, Migration, PAGE_CODES } from './api/client.ts';
export type { ConnectOptions, CreateVmOptions, MigrateOptions, MigrationInfo, MigrationStatus, HostInfo, PageMapSnapshot, PeerHost, RoundInfo, VmSummary } from './api/client.ts';
export type { MigrationEvent, MigrationEventType } from './api/events.ts';
export { startHost, spawnHost } from './api/host.ts';
export type { FerryHost, HostStartOptions, SpawnedHost } from './api/host.ts';
export { loadHostTls, loadClientTls } from './wire/tls.ts';
export type { HostTls, TlsTrust } from './wire/tls.ts';
export { FerryError } from './errors.ts';
export { DEFAULT_CONVERGENCE, PREDICTIVE_CONVERGENCE, ASCENDING_PUSH, NEAR_PC_PUSH } from './migration/policies.ts';
export type { ConvergencePolicy, ConvergencePolicyFactory, ConvergenceParams, Decision, PushOrderContext, PushOrderPolicy, RoundResult as ConvergenceRound } from './migration/policies.ts';
export { FERRY_VERSION } from './version.ts';
