import { UsageError } from '../errors.ts';

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1024, kib: 1024,
  m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3,
};

/** "128M", "1GiB", "65536" → bytes (binary units, as QEMU's -m). */
export function parseSize(text: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new UsageError(`invalid ${what} "${text}": use a number with an optional unit K, M or G (e.g. 128M)`);
  const v = Number(m[1]) * unit;
  if (!Number.isSafeInteger(v)) throw new UsageError(`invalid ${what} "${text}": not a whole number of bytes`);
  return v;
}

/** A non-negative integer; `_` separators allowed ("20_000_000"). */
export function parseCount(text: string, what: string): number {
  const clean = text.replace(/_/g, '');
  if (!/^\d+$/.test(clean) || !Number.isSafeInteger(Number(clean))) {
    throw new UsageError(`invalid ${what} "${text}": expected a non-negative integer`);
  }
  return Number(clean);
}

export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
