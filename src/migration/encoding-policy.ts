/**
 * Whether pre-copy encodes its pages (XBZRLE deltas, LZ4 frames), from what was measured: a
 * round of plain frames gives the link's rate, a trial frame on the pool its encoding rate and
 * how much LZ4 keeps. Encoding pays when the link, not the pool, is the bottleneck: the pool
 * turns page bytes into frames well faster than the link carries plain ones. Deltas then also
 * pay (a re-sent page costs its changed words); LZ4 only if it shrinks what was tried. A trial
 * cannot tell how well the guest's next writes will delta: the migration also judges each
 * encoded round against the plain ones and goes back to plain frames if they were faster
 * (outgoing.ts, judgeEncoding).
 */
export type EncodingMode = 'auto' | 'on' | 'off';

export interface EncodingRates {
  /** Plain page-frame bytes per ms the link carried in a round. */
  wireBytesPerMs: number;
  /** Page-frame bytes per ms the pool encodes (all its threads). */
  poolBytesPerMs: number;
  /** Compressed ÷ plain size of a trial frame of the guest's pages. */
  lz4Ratio: number;
}

export interface EncodingChoice {
  xbzrle: boolean;
  compress: boolean;
  reason: string;
}

/** The pool must outrun the link by this much for encoding to pay. */
export const LINK_BOUND_FACTOR = 2;
/** LZ4 is used when it leaves at most this share of the bytes. */
export const LZ4_WORTH_RATIO = 0.8;

const mbps = (bytesPerMs: number) => `${Math.round(bytesPerMs / 1000)} MB/s`;

/** What to encode with; `rates` undefined before anything was measured (auto then means plain). */
export function chooseEncoding(modes: { xbzrle: EncodingMode; compress: EncodingMode }, rates?: EncodingRates): EncodingChoice {
  const auto = modes.xbzrle === 'auto' || modes.compress === 'auto';
  let linkBound = false;
  let why = 'forced';
  if (auto) {
    if (rates === undefined) why = 'auto: nothing measured yet';
    else {
      linkBound = rates.poolBytesPerMs > LINK_BOUND_FACTOR * rates.wireBytesPerMs;
      why = linkBound
        ? `auto: the link (${mbps(rates.wireBytesPerMs)}) is the bottleneck, the pool encodes ${mbps(rates.poolBytesPerMs)}; LZ4 keeps ${Math.round(rates.lz4Ratio * 1000) / 10} %`
        : `auto: the link (${mbps(rates.wireBytesPerMs)}) is not slower than the pool (${mbps(rates.poolBytesPerMs)} encoded) by ${LINK_BOUND_FACTOR}x`;
    }
  }
  const xbzrle = modes.xbzrle === 'on' || (modes.xbzrle === 'auto' && linkBound);
  const compress = modes.compress === 'on' || (modes.compress === 'auto' && linkBound && rates !== undefined && rates.lz4Ratio <= LZ4_WORTH_RATIO);
  return { xbzrle, compress, reason: why };
}

/**
 * Auto encoding judged by its results: why to go back to plain frames, or undefined to keep
 * encoding. `plainPageRate` is the best page rate (page-frame bytes per ms) of a plain round,
 * `pageRate` an encoded round's, the `encodedRounds`-th (the first fills the XBZRLE cache, so it
 * is not judged).
 */
export function encodingNotWorthIt(plainPageRate: number, pageRate: number, encodedRounds: number): string | undefined {
  if (encodedRounds < 2 || pageRate >= plainPageRate) return undefined;
  return `auto: encoded, pages went at ${mbps(pageRate)}, plain at ${mbps(plainPageRate)}: back to plain frames`;
}

/** The stats' name for a choice. */
export function encodingName(c: { xbzrle: boolean; compress: boolean }): string {
  return [c.xbzrle ? 'xbzrle' : '', c.compress ? 'lz4' : ''].filter(Boolean).join('+') || 'none';
}
