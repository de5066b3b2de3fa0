/**
 * Ferry's test kit for migration protocols (`import ... from 'ferry/testing'`): a cluster of hosts
 * (in process, or processes a test kills and restarts), links between them that a test shapes
 * (bandwidth, delay, loss) and breaks (cut, freeze, restore, drop or act at a named message),
 * deterministic guests and the digest an unmigrated run of them ends with. The API it drives is
 * the package's own (`ferry`).
 */
export { guestVm, referenceDigest, startCluster } from './cluster.ts';
export type { ClusterOptions, Guest, LinkAction, TestCluster, TestHost, TestLink } from './cluster.ts';
export { startMessageRelay } from './relay.ts';
export type { Direction, LinkShape, MessageRelay, RelayAction, RelayedMessage, RelayRule } from './relay.ts';
