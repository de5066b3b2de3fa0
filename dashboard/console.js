// @ts-check
/**
 * A VM's console in the page: an xterm.js terminal, keystrokes sent to the guest's UART. It
 * follows its VM: `follow(conn)` attaches on the host the VM is migrating to while the source
 * still prints, so the output goes on from there; bytes the new host repeats from the console
 * history it brought along are recognised and not shown twice.
 */
import { Terminal } from '@xterm/xterm';

/** @typedef {import('./control.js').HostConnection} HostConnection */

const TAIL = 256;
const utf8 = new TextEncoder();

export class GuestConsole {
  /** @param {HTMLElement} box @param {string} vm */
  constructor(box, vm) {
    this.vm = vm;
    this.term = new Terminal({ convertEol: true, rows: 16, cols: 80, fontSize: 13, theme: { background: '#0d1117' } });
    this.term.open(box);
    /** The last bytes shown (to recognise history a new host repeats). */
    this.tail = new Uint8Array(0);
    /** Bytes shown in all (tests read it). */
    this.shown = 0;
    /** @type {HostConnection | undefined} */
    this.input = undefined;
    /** @type {Set<HostConnection>} */
    this.attached = new Set();
    /** @type {Map<HostConnection, EventListener>} */
    this.listeners = new Map();
    this.term.onData((d) => {
      this.input?.request('console.input', { name: this.vm, data: utf8.encode(d) }).catch(() => undefined);
    });
  }

  /**
   * Attaches on `conn` (the VM's host, or the one it is moving to: follow); keystrokes go to the
   * host attached last.
   * @param {HostConnection} conn @param {boolean} follow
   */
  async attach(conn, follow) {
    if (this.attached.has(conn)) return;
    this.attached.add(conn);
    /** @type {EventListener} */
    const onEvent = (e) => {
      const { event, vm, data } = /** @type {CustomEvent} */ (e).detail;
      if (event === 'console' && vm === this.vm && data instanceof Uint8Array) this.write(data);
    };
    conn.addEventListener('event', onEvent);
    this.listeners.set(conn, onEvent);
    const r = await conn.request('console.attach', { name: this.vm, follow });
    if (r.history instanceof Uint8Array && r.history.length > 0) this.write(this.unseen(r.history));
    this.input = conn;
  }

  /** @param {HostConnection} conn */
  detach(conn) {
    const l = this.listeners.get(conn);
    if (l) conn.removeEventListener('event', l);
    this.listeners.delete(conn);
    this.attached.delete(conn);
    if (!conn.closed) conn.request('console.detach', { name: this.vm }).catch(() => undefined);
    if (this.input === conn) this.input = [...this.attached].pop();
  }

  /**
   * What of a host's console history has not been shown yet: it ends with output this page may
   * have seen from the previous host; whatever follows the last shown bytes is new.
   * @param {Uint8Array} history
   */
  unseen(history) {
    if (this.tail.length === 0) return history;
    const probe = this.tail.subarray(Math.max(0, this.tail.length - 64));
    for (let at = history.length - probe.length; at >= 0; at--) {
      let same = true;
      for (let i = 0; i < probe.length && same; i++) same = history[at + i] === probe[i];
      if (same) return history.subarray(at + probe.length);
    }
    return history;
  }

  /** @param {Uint8Array} data */
  write(data) {
    if (data.length === 0) return;
    this.term.write(data);
    this.shown += data.length;
    const t = new Uint8Array(Math.min(TAIL, this.tail.length + data.length));
    const fromData = Math.min(data.length, t.length);
    t.set(this.tail.subarray(this.tail.length - (t.length - fromData)), 0);
    t.set(data.subarray(data.length - fromData), t.length - fromData);
    this.tail = t;
  }

  /** The terminal's text (tests read what the guest printed). */
  text() {
    const b = this.term.buffer.active;
    const lines = [];
    for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)?.translateToString(true) ?? '');
    return lines.join('\n').trimEnd();
  }

  dispose() {
    for (const c of [...this.attached]) this.detach(c);
    this.term.dispose();
  }
}
