// @ts-check
/**
 * The dashboard: the host that served this page, the hosts it has migrated with, its VMs (with
 * their buttons and a migrate dialog), and one VM at a time in detail: its live page map, its
 * console and its migration's charts and report. Everything comes from /control (control.js);
 * the page keeps nothing the host does not say.
 */
import { dashboardUrl, FerryRequestError, HostConnection } from './control.js';
import { MigrationCharts, renderReport } from './charts.js';
import { GuestConsole } from './console.js';
import { expandPageRuns, PageMapView, renderLegend } from './page-map.js';

/**
 * @typedef {import('./charts.js').MigrationInfo} MigrationInfo
 * @typedef {import('./charts.js').MigrationRecord} MigrationRecord
 * @typedef {{ name: string, state: string, program: string, memory: number, mips: number, instret: number, createdAt: string, migrating?: boolean, exitCode: number | null, haltReason?: string | null }} VmSummary
 * @typedef {{ name: string, state: string, pages: number, map?: Uint8Array, runs?: Uint32Array, counts: number[], instret: number, traps: number, blockedMs: number, blockedHistogram: number[], at: number }} PageMapSnapshot
 * @typedef {{ url: string, to: number, from: number, last: string }} Peer
 * @typedef {{ name: string, url: string | null, ferry: string, vms: number, memoryUsed: number, memoryLimit: number, peers: Peer[] }} HostInfo
 */

/** Page map refreshes per second while a VM is shown (each waits for the previous answer). */
const MAP_HZ = 5;
const FINAL = ['completed', 'failed', 'cancelled'];
/** Outgoing statuses from which the guest runs on the destination. */
const RUNS_THERE = ['postcopy-active', 'postcopy-paused', 'completed'];
const TOKEN_KEY = 'ferry-token';

/** @param {string} id */
function $(id) {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} missing from the page`);
  return e;
}

/** @template {keyof HTMLElementTagNameMap} K @param {K} tag @param {Record<string, string>} [attrs] @param {(string | Node)[]} children */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

/** @param {number} n */
function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${Math.round(n * 10) / 10} ${units[i]}`;
}

/** @param {string} since ISO time */
function fmtUptime(since) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000));
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

/** @param {string} text @param {'info' | 'error'} [kind] */
function say(text, kind = 'info') {
  const box = $('status');
  box.textContent = text;
  box.className = kind;
}

/** The cluster token this tab was given (the URL's #token=..., or the login form), kept for the tab's life only. */
function token() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1] ?? ''));
    history.replaceState(null, '', location.pathname);
  }
  return sessionStorage.getItem(TOKEN_KEY) ?? undefined;
}

/** Connections to other hosts (a VM followed there), by URL, with the same token. */
const others = new Map();

/** @param {string} url @returns {Promise<HostConnection>} */
async function connectTo(url) {
  const known = others.get(url);
  if (known && !known.closed) return known;
  const tok = token();
  const c = await HostConnection.open(url, tok !== undefined ? { token: tok } : {});
  others.set(url, c);
  return c;
}

/** One VM shown in detail: it follows its VM when it migrates. */
class VmView {
  /** @param {HostConnection} conn @param {string} name */
  constructor(conn, name) {
    this.conn = conn;
    this.name = name;
    this.stopped = false;
    this.box = $('vm-view');
    this.box.hidden = false;
    $('vm-title').textContent = `${name} on ${conn.host}`;
    $('vm-moved').replaceChildren();
    this.map = new PageMapView(/** @type {HTMLCanvasElement} */ ($('page-map')), $('page-map-caption'));
    $('console').replaceChildren();
    this.console = new GuestConsole($('console'), name);
    this.console.attach(conn, false).catch((e) => say(`console: ${e.message}`, 'error'));
    $('charts').replaceChildren();
    $('charts').hidden = true;
    this.charts = new MigrationCharts($('charts'));
    $('report').replaceChildren();
    /** @type {MigrationRecord | undefined} */
    this.record = undefined;
    /** @type {{ at: number, traps: number } | undefined} */
    this.lastTraps = undefined;
    this.t0 = 0;
    /** @type {HostConnection | undefined} the destination of an outgoing migration, once reached */
    this.dest = undefined;
    /** @type {HostConnection | undefined} the source host of the migration being followed */
    this.source = undefined;
    /** Reaching the destination is under way. */
    this.following = false;
    /** The counts the legend shows (redrawn when they change). */
    this.legendCounts = '';
    this.onEvent = /** @type {EventListener} */ ((e) => this.event(/** @type {CustomEvent} */ (e).detail));
    conn.addEventListener('event', this.onEvent);
    // The VM's last migration as this host kept it (its statistics, its rounds): the report outlives the page.
    conn.request('migrate.status', { name }).then((info) => {
      if (this.record === undefined && FINAL.includes(info.status)) this.migration(info);
    }, () => undefined);
    this.tick();
  }

  close() {
    this.stopped = true;
    this.conn.removeEventListener('event', this.onEvent);
    this.source?.removeEventListener('event', this.onEvent);
    this.console.dispose();
  }

  /** @param {{ event: string, vm?: string, data: unknown }} d */
  event(d) {
    if (d.event === 'migration' && d.vm === this.name) this.migration(/** @type {MigrationInfo} */ (d.data));
  }

  /** @param {MigrationInfo} info */
  migration(info) {
    if (this.record === undefined || (FINAL.includes(this.record.info.status) && !FINAL.includes(info.status) && info.status !== this.record.info.status)) {
      this.record = { info, samples: [] };
      $('charts').hidden = false;
      this.t0 = performance.now();
      this.lastTraps = undefined;
      $('report').replaceChildren();
    }
    // Once the source has spoken, the destination's view of the same migration does not replace it (rounds live at the source).
    if (this.record.info.direction === 'outgoing' && info.direction === 'incoming') {
      if (FINAL.includes(info.status) && !FINAL.includes(this.record.info.status)) this.record.info = { ...this.record.info, status: info.status };
    } else this.record.info = info;
    if (this.record.switchoverAt === undefined && (info['downtime-ms'] !== undefined || RUNS_THERE.includes(info.status))) {
      this.record.switchoverAt = (performance.now() - this.t0) / 1000;
    }
    if (info.direction === 'outgoing' && !FINAL.includes(info.status)) void this.followTo(String(info.peer));
    if (info.direction === 'outgoing' && RUNS_THERE.includes(info.status) && this.dest !== undefined && this.conn !== this.dest) this.moveTo(this.dest);
    this.charts.update(this.record);
    if (FINAL.includes(this.record.info.status)) {
      renderReport($('report'), this.record, this.conn.host);
      $('migration-summary').textContent = summary(this.record.info);
    } else $('migration-summary').textContent = summary(this.record.info);
  }

  /** An outgoing migration: reach the destination and attach the console there (following), while the source still runs. */
  async followTo(/** @type {string} */ url) {
    if (this.dest !== undefined || this.following) return;
    this.following = true;
    // The destination accepts this page once it has heard from the source (it checks where pages come from): retry briefly.
    for (let i = 0; i < 100 && !this.stopped && this.dest === undefined; i++) {
      try {
        const c = await connectTo(url);
        await this.console.attach(c, true);
        this.dest = c;
        if (this.record && RUNS_THERE.includes(this.record.info.status)) this.moveTo(c);
      } catch (e) {
        if (!(e instanceof FerryRequestError) || e.code === 'EAUTH' || e.code === 'ENEEDTOKEN') {
          say(`cannot follow ${this.name} to ${url}: ${/** @type {Error} */ (e).message}`, 'error');
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    this.following = false;
  }

  /** The guest runs on `c` now: the map and console follow it; the source is still asked about the migration. */
  moveTo(/** @type {HostConnection} */ c) {
    const from = this.conn;
    this.source = from;
    this.conn = c;
    c.addEventListener('event', this.onEvent);
    $('vm-title').textContent = `${this.name} on ${c.host}`;
    const link = el('a', { href: dashboardUrl(c.url), target: '_blank' }, `${c.host}'s dashboard`);
    $('vm-moved').replaceChildren(`moved from ${from.host} to ${c.host}: `, link);
    setTimeout(() => this.console.detach(from), 2000);
  }

  /** One page-map refresh (and, during a migration, a statistics sample); then the next, MAP_HZ a second. */
  async tick() {
    if (this.stopped) return;
    const t = performance.now();
    // A hidden tab asks for nothing (but keeps sampling a migration it follows).
    if (document.hidden && (this.record === undefined || FINAL.includes(this.record.info.status))) {
      setTimeout(() => void this.tick(), 1000);
      return;
    }
    try {
      /** @type {PageMapSnapshot} */
      const snap = await this.conn.request('vm.pagemap', { name: this.name, runs: true });
      this.map.update(snap.runs ? expandPageRuns(snap.runs, snap.pages) : (snap.map ?? new Uint8Array(0)));
      $('page-map').dataset.frames = String(this.map.frames);
      const counts = snap.counts.join(',');
      if (counts !== this.legendCounts) {
        this.legendCounts = counts;
        renderLegend($('legend'), snap.counts);
      }
      $('vm-state').textContent = `${snap.state} · ${snap.pages} pages (${fmtBytes(snap.pages * 4096)}) · ${snap.instret.toLocaleString()} instructions`;
      await this.sample(snap);
    } catch (e) {
      if (e instanceof FerryRequestError && e.code === 'ENOVM' && this.dest === undefined) $('vm-state').textContent = `not on ${this.conn.host}`;
      else if (!(e instanceof FerryRequestError && e.code === 'ENOVM')) say(`page map: ${/** @type {Error} */ (e).message}`, 'error');
    }
    setTimeout(() => void this.tick(), Math.max(0, 1000 / MAP_HZ - (performance.now() - t)));
  }

  /** @param {PageMapSnapshot} snap */
  async sample(snap) {
    const r = this.record;
    if (r === undefined || FINAL.includes(r.info.status)) return;
    // The source's statistics move with every frame, its events only with every round: ask.
    const at = r.info.direction === 'outgoing' ? (this.source ?? this.conn) : this.conn;
    try {
      const info = await at.request('migrate.status', { name: this.name });
      if (info.direction === r.info.direction) this.migration(info);
    } catch {
      // between hosts for a moment: the next tick asks again
    }
    const now = performance.now();
    const faultsPerSec = this.lastTraps ? ((snap.traps - this.lastTraps.traps) * 1000) / Math.max(1, now - this.lastTraps.at) : 0;
    this.lastTraps = { at: now, traps: snap.traps };
    const info = r.info;
    r.samples.push({
      t: (now - this.t0) / 1000,
      transferredMiB: Number(info['transferred-bytes'] ?? 0) / 2 ** 20,
      remainingMiB: Number(info['remaining-bytes'] ?? 0) / 2 ** 20,
      missing: (snap.counts[5] ?? 0) + (snap.counts[7] ?? 0),
      faultsPerSec: Math.max(0, faultsPerSec),
      blockedMs: snap.blockedMs,
    });
    r.histogram = snap.blockedHistogram;
    this.charts.update(r);
  }
}

/** @param {MigrationInfo} i */
function summary(i) {
  const parts = [`${i.direction} ${i.mode} migration of ${i.vm} (${i.direction === 'outgoing' ? 'to' : 'from'} ${String(i.peer)}): ${i.status}`];
  if (i['downtime-ms'] !== undefined) parts.push(`downtime ${String(i['downtime-ms'])} ms${i['downtime-limit-ms'] !== undefined ? ` (limit ${String(i['downtime-limit-ms'])} ms)` : ''}`);
  if (i['total-time-ms'] !== undefined) parts.push(`total ${String(i['total-time-ms'])} ms`);
  if (i.rounds?.length) parts.push(`${i.rounds.length} rounds`);
  if (i['error-desc'] !== undefined) parts.push(String(i['error-desc']));
  return parts.join(' · ');
}

class Dashboard {
  /** @param {HostConnection} conn @param {() => void} onLost called once the connection is gone */
  constructor(conn, onLost) {
    this.conn = conn;
    /** @type {Map<string, VmSummary>} */
    this.vms = new Map();
    /** @type {VmView | undefined} */
    this.view = undefined;
    /** @type {HostInfo | undefined} */
    this.info = undefined;
    conn.addEventListener('event', (e) => {
      const { event, vm, data } = /** @type {CustomEvent} */ (e).detail;
      if (event === 'vm.state' && typeof vm === 'string') {
        if (data && typeof data === 'object' && /** @type {VmSummary} */ (data).state !== 'destroyed') this.vms.set(vm, /** @type {VmSummary} */ (data));
        else this.vms.delete(vm);
        this.renderVms();
      }
    });
    conn.addEventListener('close', () => {
      this.view?.close();
      this.view = undefined;
      onLost();
    });
    this.wireForms();
    void this.refresh();
  }

  async refresh() {
    if (document.hidden) {
      if (!this.conn.closed) setTimeout(() => void this.refresh(), 1000);
      return;
    }
    try {
      this.info = await this.conn.request('host.info');
      /** @type {VmSummary[]} */
      const list = await this.conn.request('vm.list');
      this.vms = new Map(list.map((v) => [v.name, v]));
      this.renderHost();
      this.renderVms();
    } catch (e) {
      say(/** @type {Error} */ (e).message, 'error');
    }
    if (!this.conn.closed) setTimeout(() => void this.refresh(), 1000);
  }

  renderHost() {
    const i = this.info;
    if (!i) return;
    $('host-name').textContent = i.name;
    $('host-meta').textContent = `${i.url ?? ''} · Ferry ${i.ferry} · ${i.vms} VMs · ${fmtBytes(i.memoryUsed)} of ${fmtBytes(i.memoryLimit)}`;
    const peers = $('peers');
    peers.replaceChildren(...i.peers.map((p) => el('li', {},
      el('a', { href: dashboardUrl(p.url), target: '_blank' }, p.url), ` · ${p.to} to, ${p.from} from · last ${new Date(p.last).toLocaleTimeString()}`)));
    if (i.peers.length === 0) peers.append(el('li', { class: 'muted' }, 'none yet'));
    $('migrate-to-list').replaceChildren(...i.peers.map((p) => el('option', { value: p.url })));
  }

  renderVms() {
    const body = /** @type {HTMLTableSectionElement} */ ($('vm-rows'));
    const rows = [...this.vms.values()].sort((a, b) => a.name.localeCompare(b.name)).map((v) => {
      const tr = el('tr', { 'data-vm': v.name });
      const state = v.migrating ? `${v.state}, migrating` : v.state;
      for (const text of [v.name, state, v.program, fmtBytes(v.memory), fmtUptime(v.createdAt), v.state === 'running' ? v.mips.toFixed(1) : '-']) tr.append(el('td', {}, text));
      const actions = el('td', { class: 'actions' });
      // A VM being migrated away belongs to its migration: only watching it is offered.
      const free = !v.migrating && v.state !== 'incoming';
      /** @type {[string, boolean, () => Promise<unknown>][]} */
      const buttons = [
        ['view', true, async () => this.show(v.name)],
        ['start', free && v.state === 'created', () => this.conn.request('vm.start', { name: v.name })],
        ['pause', free && v.state === 'running', () => this.conn.request('vm.pause', { name: v.name })],
        ['resume', free && v.state === 'paused', () => this.conn.request('vm.resume', { name: v.name })],
        ['stop', free && (v.state === 'running' || v.state === 'paused'), () => this.conn.request('vm.stop', { name: v.name })],
        ['migrate', free, async () => this.openMigrate(v)],
        ['destroy', free, async () => {
          if (confirm(`Destroy ${v.name}? Its memory is lost.`)) await this.conn.request('vm.destroy', { name: v.name });
        }],
      ];
      for (const [label, enabled, run] of buttons) {
        const b = el('button', { 'data-action': label }, label);
        b.disabled = !enabled;
        b.addEventListener('click', () => run().catch((e) => say(`${label} ${v.name}: ${e.message}`, 'error')));
        actions.append(b);
      }
      tr.append(actions);
      return tr;
    });
    body.replaceChildren(...rows);
    if (rows.length === 0) body.append(el('tr', {}, el('td', { colspan: '7', class: 'muted' }, 'no VMs')));
  }

  /** @param {string} name */
  show(name) {
    this.view?.close();
    this.view = new VmView(this.conn, name);
  }

  /** @param {VmSummary} v */
  openMigrate(v) {
    const dialog = /** @type {HTMLDialogElement} */ ($('migrate-dialog'));
    $('migrate-vm').textContent = v.name;
    dialog.dataset.vm = v.name;
    /** @type {HTMLSelectElement} */ ($('m-mode')).value = v.state === 'running' ? 'precopy' : 'cold';
    dialog.showModal();
  }

  wireForms() {
    const create = /** @type {HTMLFormElement} */ ($('create-form'));
    create.addEventListener('submit', (e) => {
      e.preventDefault();
      const f = new FormData(create);
      const args = String(f.get('args') ?? '').split(/\s+/).filter(Boolean);
      const insnLimit = Number(f.get('insnLimit') || 0);
      this.conn.request('vm.create', {
        name: String(f.get('name')), program: String(f.get('program')), memory: Number(f.get('memoryMiB')) * 2 ** 20,
        args, icount: f.get('icount') === 'on', ...(insnLimit > 0 ? { insnLimit } : {}), start: f.get('start') === 'on',
      }).then((v) => {
        say(`created ${v.name}`);
        this.show(v.name);
      }, (err) => say(`create: ${err.message}`, 'error'));
    });
    const dialog = /** @type {HTMLDialogElement} */ ($('migrate-dialog'));
    const form = /** @type {HTMLFormElement} */ ($('migrate-form'));
    $('m-cancel').addEventListener('click', () => dialog.close());
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const name = dialog.dataset.vm ?? '';
      const f = new FormData(form);
      /** @param {string} k */
      const num = (k) => (String(f.get(k) ?? '').trim() === '' ? undefined : Number(f.get(k)));
      /** @param {string} k */
      const text = (k) => (String(f.get(k) ?? '').trim() === '' ? undefined : String(f.get(k)).trim());
      const mbps = num('maxBandwidthMBs');
      const cacheMiB = num('xbzrleCacheMiB');
      /** @type {Record<string, unknown>} */
      const params = {
        name, to: text('to'), mode: text('mode'), as: text('as'), downtimeLimitMs: num('downtimeLimitMs'),
        maxBandwidth: mbps === undefined ? undefined : Math.round(mbps * 1e6), maxRounds: num('maxRounds'),
        switchoverAtMaxRounds: f.get('switchoverAtMaxRounds') === 'on' ? true : undefined, autoConverge: f.get('autoConverge') === 'on' ? true : undefined,
        postcopyAfterRounds: num('postcopyAfterRounds'), pushDelayMs: num('pushDelayMs'), autoRecover: f.get('autoRecover') === 'on' ? undefined : false,
        giveUpAfterMs: num('giveUpAfterMs'), xbzrle: text('xbzrle'), compress: text('compress'),
        xbzrleCacheBytes: cacheMiB === undefined ? undefined : Math.round(cacheMiB * 2 ** 20),
        convergencePolicy: text('convergencePolicy'), pushOrder: text('pushOrder'),
      };
      for (const k of Object.keys(params)) if (params[k] === undefined) delete params[k];
      if (this.view?.name !== name) this.show(name);
      this.conn.request('migrate.start', params).then((info) => {
        dialog.close();
        say(`migrating ${name} to ${String(params.to)} (${String(params.mode)})`);
        this.view?.migration(info);
      }, (err) => {
        $('migrate-error').textContent = err.message;
      });
    });
    $('zoom-in').addEventListener('click', () => this.view?.map.zoomBy(2));
    $('zoom-out').addEventListener('click', () => this.view?.map.zoomBy(0.5));
    $('zoom-all').addEventListener('click', () => this.view?.map.zoomBy(1 / 4096));
  }
}

async function main() {
  // The host that served this page.
  const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}`;
  const login = /** @type {HTMLFormElement} */ ($('login-form'));
  let retryMs = 1000;
  const connect = async () => {
    try {
      const tok = token();
      const conn = await HostConnection.open(url, tok !== undefined ? { token: tok } : {});
      retryMs = 1000;
      $('login').hidden = true;
      $('main').hidden = false;
      say(`connected to ${conn.host}`);
      const d = new Dashboard(conn, () => {
        say(`connection to ${conn.host} lost: reconnecting…`, 'error');
        setTimeout(() => void connect(), retryMs);
      });
      /** @type {Window & { ferryDashboard?: unknown }} */ (window).ferryDashboard = d;
    } catch (e) {
      const err = /** @type {FerryRequestError} */ (e);
      if (err.code === 'ECERT') {
        say(err.message, 'error');
        return;
      }
      if (err.code === 'ENEEDTOKEN' || err.code === 'EAUTH') {
        if (err.code === 'EAUTH') sessionStorage.removeItem(TOKEN_KEY);
        $('login').hidden = false;
        $('login-error').textContent = err.code === 'EAUTH' ? err.message : '';
        say(err.message, 'error');
        return;
      }
      // The host is away (restarting, a network break): try again, less and less often, and say so.
      say(`${err.message}: retrying in ${retryMs / 1000} s`, 'error');
      setTimeout(() => void connect(), retryMs);
      retryMs = Math.min(30_000, retryMs * 2);
    }
  };
  login.addEventListener('submit', (e) => {
    e.preventDefault();
    const f = new FormData(login);
    sessionStorage.setItem(TOKEN_KEY, String(f.get('token') ?? ''));
    void connect();
  });
  await connect();
}

void main();
