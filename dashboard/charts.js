// @ts-check
/**
 * A migration's charts (uPlot), fed live: per pre-copy round the bytes sent, dirty rate against
 * bandwidth and expected downtime against the limit (from the source's statistics, QEMU's
 * query-migrate names); over time the transfer, and in post-copy the pages still missing, faults
 * per second and the vCPU's blocked time (from the destination's page map samples); the
 * fault-latency histogram; the switch-over marked.
 */
import uPlot from 'uplot';

/**
 * A migration as the page saw it: its statistics and the samples taken while it ran.
 * @typedef {{ t: number, transferredMiB: number, remainingMiB: number, missing?: number, faultsPerSec?: number, blockedMs?: number }} Sample
 * @typedef {{ round: number, pages: number, bytes: number, ms: number, mbps: number, 'dirty-pages': number, 'expected-downtime-ms': number }} Round
 * @typedef {Record<string, unknown> & { vm: string, direction: string, mode: string, status: string, rounds: Round[] }} MigrationInfo
 * @typedef {{ info: MigrationInfo, samples: Sample[], switchoverAt?: number, histogram?: number[] }} MigrationRecord
 */

/** bucket midpoints of src/vm/latency-histogram.ts, µs */
function bucketMidpoint(/** @type {number} */ b) {
  if (b < 8) return b;
  const e = (b >>> 3) + 2;
  const width = 2 ** (e - 3);
  return (8 + (b & 7)) * width + width / 2;
}

/**
 * @param {HTMLElement} parent @param {string} title
 * @param {uPlot.Series[]} series @param {Partial<uPlot.Options>} [extra]
 */
function chart(parent, title, series, extra = {}) {
  const box = document.createElement('div');
  box.className = 'chart';
  parent.append(box);
  // Two charts side by side (the box may still be hidden: measure the page).
  const width = Math.max(300, Math.min(560, (document.body.clientWidth - 96) / 2));
  const empty = /** @type {uPlot.AlignedData} */ (/** @type {unknown} */ (series.map(() => [])));
  return new uPlot({ title, width, height: 180, series, legend: { live: false }, cursor: { drag: { x: false, y: false } }, ...extra }, empty, box);
}

/** A vertical line at x (the switch-over) on a chart. */
function markAt(/** @type {() => number | undefined} */ x) {
  return {
    hooks: {
      draw: [(/** @type {uPlot} */ u) => {
        const at = x();
        if (at === undefined) return;
        const px = u.valToPos(at, 'x', true);
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = '#ff5fb4';
        ctx.setLineDash([4, 3]);
        ctx.beginPath();
        ctx.moveTo(px, u.bbox.top);
        ctx.lineTo(px, u.bbox.top + u.bbox.height);
        ctx.stroke();
        ctx.restore();
      }],
    },
  };
}

const CHART_HZ = 2;
const FINAL_STATUSES = ['completed', 'failed', 'cancelled'];

export class MigrationCharts {
  /** @param {HTMLElement} box */
  constructor(box) {
    this.drawnAt = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.pending = undefined;
    /** @type {MigrationRecord | undefined} */
    this.record = undefined;
    const bars = uPlot.paths.bars ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined;
    const rounds = { x: { time: false } };
    /** @type {uPlot.Axis[]} whole rounds on the x axis */
    const roundAxes = [{ incrs: [1, 2, 5, 10, 20, 50] }, {}];
    this.sent = chart(box, 'Pre-copy: MiB sent per round', [{ label: 'round' }, { label: 'MiB', stroke: '#38a9e4', fill: '#38a9e455', ...(bars ? { paths: bars } : {}) }], { scales: rounds, axes: roundAxes });
    this.rates = chart(box, 'Dirty rate vs bandwidth (MB/s)', [{ label: 'round' }, { label: 'dirty', stroke: '#e3a52f' }, { label: 'link', stroke: '#3f8f5a' }], { scales: rounds, axes: roundAxes });
    this.downtime = chart(box, 'Expected downtime vs limit (ms)', [{ label: 'round' }, { label: 'expected', stroke: '#8c6fd6' }, { label: 'limit', stroke: '#b23b3b', dash: [5, 4] }], { scales: rounds, axes: roundAxes });
    const switchover = () => this.record?.switchoverAt;
    this.transfer = chart(box, 'Transfer over time (MiB; dashed: switch-over)', [{ label: 's' }, { label: 'sent', stroke: '#38a9e4' }, { label: 'remaining', stroke: '#b23b3b' }], { scales: { x: { time: false } }, plugins: [markAt(switchover)] });
    this.postcopy = chart(box, 'Post-copy: pages missing, faults/s', [{ label: 's' }, { label: 'missing', stroke: '#b23b3b', scale: 'pages' }, { label: 'faults/s', stroke: '#ff5fb4', scale: 'rate' }],
      { scales: { x: { time: false } }, axes: [{}, { scale: 'pages', size: 64 }, { scale: 'rate', side: 1, size: 56 }], plugins: [markAt(switchover)] });
    this.blocked = chart(box, 'vCPU blocked on missing pages (ms, total)', [{ label: 's' }, { label: 'blocked', stroke: '#ffffff' }], { scales: { x: { time: false } }, plugins: [markAt(switchover)] });
    this.latency = chart(box, 'Fault latency (vCPU wait per fault)', [{ label: 'µs' }, { label: 'faults', stroke: '#ff5fb4', fill: '#ff5fb455', ...(bars ? { paths: bars } : {}) }],
      { scales: { x: { time: false, distr: 3 } } });
  }

  /**
   * Redraws with `r`, at most CHART_HZ a second (the page map goes on at its own rate): a redraw
   * asked for sooner is done once that time has come, with the record as it is then.
   * @param {MigrationRecord} r
   */
  update(r) {
    this.record = r;
    if (this.pending) return;
    const wait = this.drawnAt + 1000 / CHART_HZ - performance.now();
    if (wait <= 0 || FINAL_STATUSES.includes(r.info.status)) {
      this.draw(r);
      return;
    }
    this.pending = setTimeout(() => {
      this.pending = undefined;
      if (this.record) this.draw(this.record);
    }, wait);
  }

  /** @param {MigrationRecord} r */
  draw(r) {
    this.drawnAt = performance.now();
    const rounds = r.info.rounds ?? [];
    // Show what this migration has: rounds (pre-copy, hybrid), post-copy's faults; draw only those.
    const hasRounds = rounds.length > 0;
    const postcopy = r.info.mode === 'postcopy' || r.info.mode === 'hybrid';
    for (const c of [this.sent, this.rates, this.downtime]) c.root.parentElement?.toggleAttribute('hidden', !hasRounds);
    for (const c of [this.postcopy, this.blocked, this.latency]) c.root.parentElement?.toggleAttribute('hidden', !postcopy);
    if (hasRounds) {
      const x = rounds.map((d) => d.round);
      this.sent.setData([x, rounds.map((d) => d.bytes / 2 ** 20)]);
      this.rates.setData([x, rounds.map((d) => (d['dirty-pages'] * 4096) / Math.max(1e-3, d.ms) / 1000), rounds.map((d) => d.mbps / 8)]);
      const limit = Number(r.info['downtime-limit-ms'] ?? NaN);
      this.downtime.setData([x, rounds.map((d) => d['expected-downtime-ms']), rounds.map(() => (Number.isFinite(limit) ? limit : null))]);
    }
    const t = r.samples.map((s) => s.t);
    this.transfer.setData([t, r.samples.map((s) => s.transferredMiB), r.samples.map((s) => s.remainingMiB)]);
    if (!postcopy) return;
    this.postcopy.setData([t, r.samples.map((s) => s.missing ?? null), r.samples.map((s) => s.faultsPerSec ?? null)]);
    this.blocked.setData([t, r.samples.map((s) => s.blockedMs ?? null)]);
    const h = r.histogram ?? [];
    /** @type {number[]} */
    const hx = [];
    /** @type {number[]} */
    const hy = [];
    h.forEach((n, b) => {
      if (n > 0) {
        hx.push(Math.max(1, bucketMidpoint(b)));
        hy.push(n);
      }
    });
    this.latency.setData([hx, hy]);
  }
}

/**
 * A finished migration's report: its statistics as a table, and the record as a JSON download.
 * @param {HTMLElement} box @param {MigrationRecord} r @param {string} host
 */
export function renderReport(box, r, host) {
  const table = document.createElement('table');
  table.className = 'stats';
  for (const [k, v] of Object.entries(r.info)) {
    if (k === 'rounds' || v === undefined || v === null) continue;
    const tr = table.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = typeof v === 'number' ? String(Math.round(v * 100) / 100) : String(v);
  }
  const download = document.createElement('button');
  download.textContent = 'Download report (JSON)';
  download.className = 'download-report';
  download.addEventListener('click', () => {
    const report = { ferryMigrationReport: 1, host, generatedAt: new Date().toISOString(), ...r };
    const url = URL.createObjectURL(new Blob([JSON.stringify(report, null, 2)], { type: 'application/json' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = `ferry-migration-${r.info.vm}-${String(r.info.direction)}-${Date.now()}.json`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  });
  box.replaceChildren(download, table);
}
