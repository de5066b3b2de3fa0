/**
 * `GET /metrics`: the host in the Prometheus text format (prom-client), for a scraper and the
 * sample Grafana dashboard (docs/grafana-dashboard.json). VMs are read at each scrape (nothing is
 * kept up to date while nobody asks); migrations are counted as they end, with QEMU's
 * query-migrate figures (total time, downtime, bytes, passes) as histograms and counters.
 *
 * Who may scrape is never more than who may drive the host: a host without a cluster token
 * (loopback only) answers its own machine; a host with one asks for a scrape key, derived from the
 * token (`ferry host metrics-key`: it opens nothing but this page, so a scraper's configuration
 * need not hold the token itself), or, with TLS, a client certificate its CA signed.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { FINAL_STATUSES, type MigrationInfo } from '../migration/stats.ts';
import { FERRY_VERSION } from '../version.ts';
import type { VmRegistry } from './registry.ts';

/** The read-only credential a scraper presents (`Authorization: Bearer KEY`) to a host that has a token. */
export function metricsKey(token: string): string {
  return createHmac('sha256', token).update('ferry metrics scrape key v1').digest('hex');
}

const STATES = ['created', 'running', 'paused', 'halted', 'incoming'] as const;

export class HostMetrics {
  readonly registry = new Registry();
  private readonly migrations: Counter;
  private readonly bytes: Counter;
  private readonly downtime: Histogram;
  private readonly totalTime: Histogram;
  private readonly passes: Histogram;
  /** The last status seen of each VM's migration per direction: a migration is counted once, when it ends. */
  private readonly lastStatus = new Map<string, string>();

  constructor(hostName: string, vms: VmRegistry) {
    const r = this.registry;
    new Gauge({ name: 'ferry_host_info', help: 'This host (always 1): its name and Ferry version', labelNames: ['host', 'version'], registers: [r] })
      .set({ host: hostName, version: FERRY_VERSION }, 1);
    const summaries = () => vms.list();
    new Gauge({
      name: 'ferry_vms', help: 'VMs on this host by state', labelNames: ['state'], registers: [r],
      collect() {
        this.reset();
        const all = summaries();
        for (const s of STATES) this.set({ state: s }, all.filter((v) => v.state === s).length);
      },
    });
    new Gauge({
      name: 'ferry_vm_state', help: 'Each VM\'s state (1 for its current state)', labelNames: ['vm', 'state'], registers: [r],
      collect() {
        this.reset();
        for (const v of summaries()) this.set({ vm: v.name, state: v.state }, 1);
      },
    });
    new Gauge({
      name: 'ferry_vm_mips', help: 'Each VM\'s speed, millions of instructions per second (over its last second)', labelNames: ['vm'], registers: [r],
      collect() {
        this.reset();
        for (const v of summaries()) this.set({ vm: v.name }, v.mips);
      },
    });
    new Gauge({
      name: 'ferry_vm_instructions', help: 'Instructions each VM has retired', labelNames: ['vm'], registers: [r],
      collect() {
        this.reset();
        for (const v of summaries()) this.set({ vm: v.name }, v.instret);
      },
    });
    new Gauge({
      name: 'ferry_vm_memory_bytes', help: 'Each VM\'s guest RAM', labelNames: ['vm'], registers: [r],
      collect() {
        this.reset();
        for (const v of summaries()) this.set({ vm: v.name }, v.memory);
      },
    });
    this.migrations = new Counter({ name: 'ferry_migrations_total', help: 'Migrations ended, by direction, mode and final status (QEMU\'s status names)', labelNames: ['direction', 'mode', 'status'], registers: [r] });
    this.bytes = new Counter({ name: 'ferry_migration_transferred_bytes_total', help: 'Bytes of ended migrations (QEMU\'s transferred), by direction', labelNames: ['direction'], registers: [r] });
    this.downtime = new Histogram({
      name: 'ferry_migration_downtime_seconds', help: 'Downtime of completed outgoing migrations (QEMU\'s downtime)', labelNames: ['mode'], registers: [r],
      buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5],
    });
    this.totalTime = new Histogram({
      name: 'ferry_migration_total_time_seconds', help: 'Total time of completed outgoing migrations (QEMU\'s total-time)', labelNames: ['mode'], registers: [r],
      buckets: [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 300],
    });
    this.passes = new Histogram({
      name: 'ferry_migration_dirty_sync_count', help: 'Pre-copy passes of completed outgoing migrations (QEMU\'s dirty-sync-count)', labelNames: ['mode'], registers: [r],
      buckets: [0, 1, 2, 3, 5, 10, 20, 30],
    });
  }

  /** Each statistics update a migration publishes; the ones that end it are counted. */
  observe(info: MigrationInfo): void {
    const key = `${info.direction} ${info.vm}`;
    const was = this.lastStatus.get(key);
    this.lastStatus.set(key, info.status);
    if (!FINAL_STATUSES.includes(info.status) || (was !== undefined && FINAL_STATUSES.includes(was as MigrationInfo['status']))) return;
    if (this.lastStatus.size > 10_000) this.lastStatus.clear(); // (a bound: VMs come and go; a lost entry only risks a count)
    this.migrations.inc({ direction: info.direction, mode: info.mode, status: info.status });
    this.bytes.inc({ direction: info.direction }, info['transferred-bytes']);
    if (info.direction !== 'outgoing' || info.status !== 'completed') return;
    if (info['downtime-ms'] !== undefined) this.downtime.observe({ mode: info.mode }, info['downtime-ms'] / 1000);
    this.totalTime.observe({ mode: info.mode }, info['total-time-ms'] / 1000);
    this.passes.observe({ mode: info.mode }, info['dirty-sync-count']);
  }

  /**
   * Answers GET /metrics: `token` set, a request proves itself with the scrape key, or over TLS
   * with a client certificate its CA signed; returns why it was refused (undefined: served).
   */
  async serve(req: IncomingMessage, res: ServerResponse, token: string | undefined, tls: boolean): Promise<string | undefined> {
    const why = this.refusal(req, token, tls);
    if (why !== undefined) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="ferry metrics"', connection: 'close' })
        .end(`${why}\n`);
      return why;
    }
    const body = await this.registry.metrics();
    res.writeHead(200, { 'content-type': this.registry.contentType, connection: 'close' }).end(body);
    return undefined;
  }

  private refusal(req: IncomingMessage, token: string | undefined, tls: boolean): string | undefined {
    if (token === undefined && !tls) return undefined; // loopback only: whoever may reach the control API
    if (tls && (req.socket as TLSSocket).authorized === true) return undefined;
    if (token === undefined) return 'this host wants a client certificate its CA signed';
    const m = /^Bearer ([0-9a-f]{64})$/.exec(req.headers.authorization ?? '');
    if (!m) return 'this host wants its scrape key: Authorization: Bearer KEY ("ferry host metrics-key" prints it)';
    const given = Buffer.from(m[1]!, 'hex');
    const want = Buffer.from(metricsKey(token), 'hex');
    return timingSafeEqual(given, want) ? undefined : 'that is not this host\'s scrape key';
  }
}
