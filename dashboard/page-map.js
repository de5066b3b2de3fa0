// @ts-check
/**
 * The live page map: one pixel per 4 KiB page of guest RAM (a 1 GiB VM's 262144 pages fit the
 * canvas whole), coloured by the codes of src/vm/page-map.ts. Zoom in on a region (click, or the
 * wheel; the page under the pointer stays put) to see its pages as larger cells.
 */

/** In code order (src/vm/page-map.ts PAGE_CODES). */
export const LEGEND = [
  { code: 0, name: 'never written', color: '#262c35' },
  { code: 1, name: 'clean', color: '#3f8f5a' },
  { code: 2, name: 'dirty since last round', color: '#e3a52f' },
  { code: 3, name: 'queued this pass', color: '#8c6fd6' },
  { code: 4, name: 'in flight', color: '#38a9e4' },
  { code: 5, name: 'missing (post-copy)', color: '#b23b3b' },
  { code: 6, name: 'faulted in', color: '#ff5fb4' },
  { code: 7, name: 'faulting now', color: '#ffffff' },
];

/** Each code's colour as an ImageData pixel: RGBA in memory order, one little-endian word. */
const PIXELS = LEGEND.map(({ color }) => {
  const v = parseInt(color.slice(1), 16);
  return ((255 << 24) | ((v & 0xff) << 16) | (((v >> 8) & 0xff) << 8) | (v >> 16)) >>> 0;
});

/** @param {Uint8Array} a @param {Uint8Array} b */
function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  const n = a.length >>> 2;
  if ((a.byteOffset & 3) === 0 && (b.byteOffset & 3) === 0) {
    const wa = new Uint32Array(a.buffer, a.byteOffset, n);
    const wb = new Uint32Array(b.buffer, b.byteOffset, n);
    for (let i = 0; i < n; i++) if (wa[i] !== wb[i]) return false;
  } else {
    for (let i = 0; i < n * 4; i++) if (a[i] !== b[i]) return false;
  }
  for (let i = n * 4; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * A map sent as runs (src/vm/page-map.ts pageRuns: one word per run, (length << 3) | code), expanded.
 * @param {Uint32Array} runs @param {number} pages
 */
export function expandPageRuns(runs, pages) {
  const map = new Uint8Array(pages);
  let p = 0;
  for (const r of runs) {
    const len = r >>> 3;
    map.fill(r & 7, p, Math.min(pages, p + len));
    p += len;
  }
  return map;
}

const PAGE_SIZE = 4096;
const RAM_BASE = 0x80000000;
const MAX_ZOOM = 4096;

export class PageMapView {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {HTMLElement} caption shows what the pointer is over, and the zoom
   */
  constructor(canvas, caption) {
    this.canvas = canvas;
    this.caption = caption;
    /** @type {Uint8Array} */
    this.map = new Uint8Array(0);
    this.zoom = 1;
    this.first = 0;
    this.cols = 1;
    this.rows = 1;
    this.count = 0;
    /** Maps received (the bench reads it: the page's update rate), and drawn (those that changed, and zooms). */
    this.frames = 0;
    this.draws = 0;
    /** @type {ImageData | undefined} reused while the grid keeps its size */
    this.image = undefined;
    canvas.addEventListener('wheel', (e) => {
      e.preventDefault();
      this.zoomAt(this.pageAt(e), e.deltaY < 0 ? 2 : 0.5);
    }, { passive: false });
    canvas.addEventListener('click', (e) => this.zoomAt(this.pageAt(e), e.shiftKey ? 0.5 : 2));
    canvas.addEventListener('mousemove', (e) => this.describe(this.pageAt(e)));
  }

  /** @param {Uint8Array} map */
  update(map) {
    this.frames++;
    if (map.length !== this.map.length) {
      this.zoom = 1;
      this.first = 0;
    } else if (sameBytes(map, this.map)) {
      return; // nothing changed: nothing to draw
    }
    this.map = map;
    this.draw();
  }

  /** @param {number} factor */
  zoomBy(factor) {
    this.zoomAt(this.first + Math.floor(this.count / 2), factor);
  }

  /** @param {number} page @param {number} factor */
  zoomAt(page, factor) {
    const total = this.map.length;
    if (total === 0) return;
    const frac = this.count > 0 ? (page - this.first) / this.count : 0.5;
    this.zoom = Math.min(MAX_ZOOM, Math.max(1, this.zoom * factor));
    const count = Math.ceil(total / this.zoom);
    this.first = Math.max(0, Math.min(total - count, Math.round(page - frac * count)));
    this.draw();
  }

  /** @param {MouseEvent} e */
  pageAt(e) {
    const r = this.canvas.getBoundingClientRect();
    const col = Math.floor(((e.clientX - r.left) / r.width) * this.cols);
    const row = Math.floor(((e.clientY - r.top) / r.height) * this.rows);
    return Math.min(this.map.length - 1, this.first + row * this.cols + col);
  }

  /** @param {number} page */
  describe(page) {
    if (page < 0 || page >= this.map.length) return;
    const code = this.map[page] ?? 0;
    const addr = (RAM_BASE + page * PAGE_SIZE).toString(16).padStart(8, '0');
    this.caption.textContent = `page ${page} (0x${addr}): ${LEGEND[code]?.name ?? '?'} · zoom ${this.zoom}x, pages ${this.first}-${this.first + this.count - 1}`;
  }

  draw() {
    const total = this.map.length;
    if (total === 0) return;
    const count = Math.ceil(total / this.zoom);
    const cols = Math.max(1, Math.ceil(Math.sqrt(count * 2)));
    const rows = Math.max(1, Math.ceil(count / cols));
    if (this.canvas.width !== cols || this.canvas.height !== rows) {
      this.canvas.width = cols;
      this.canvas.height = rows;
    }
    this.cols = cols;
    this.rows = rows;
    this.count = count;
    const ctx = this.canvas.getContext('2d');
    if (!ctx) return;
    if (this.image === undefined || this.image.width !== cols || this.image.height !== rows) this.image = ctx.createImageData(cols, rows);
    const img = this.image;
    const px = new Uint32Array(img.data.buffer);
    px.fill(0);
    const end = Math.min(total, this.first + count);
    for (let p = this.first, i = 0; p < end; p++, i++) px[i] = PIXELS[this.map[p] ?? 0] ?? 0;
    ctx.putImageData(img, 0, 0);
    this.draws++;
  }
}

/**
 * @param {HTMLElement} box
 * @param {number[]} counts pages per code
 */
export function renderLegend(box, counts) {
  box.replaceChildren(...LEGEND.map(({ code, name, color }) => {
    const item = document.createElement('span');
    item.className = 'legend-item';
    item.dataset.code = String(code);
    const swatch = document.createElement('i');
    swatch.style.background = color;
    item.append(swatch, `${name} ${counts[code] ?? 0}`);
    return item;
  }));
}
