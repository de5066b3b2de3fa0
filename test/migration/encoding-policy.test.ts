// When pre-copy encodes its pages (src/migration/encoding-policy.ts): forced modes as given;
// 'auto' only once measured, and then only where the pool outruns the link (and LZ4 only where
// it shrinks the guest's pages).
import { describe, expect, it } from 'vitest';
import { chooseEncoding, encodingName, encodingNotWorthIt, LINK_BOUND_FACTOR, LZ4_WORTH_RATIO } from '../../src/migration/encoding-policy.ts';

const AUTO = { xbzrle: 'auto', compress: 'auto' } as const;

describe('chooseEncoding', () => {
  it('forced modes are kept whatever was measured', () => {
    expect(chooseEncoding({ xbzrle: 'on', compress: 'off' })).toEqual({ xbzrle: true, compress: false, reason: 'forced' });
    expect(chooseEncoding({ xbzrle: 'off', compress: 'on' }, { wireBytesPerMs: 1e9, poolBytesPerMs: 1, lz4Ratio: 1 })).toMatchObject({ xbzrle: false, compress: true });
  });

  it('auto before anything is measured: plain', () => {
    expect(chooseEncoding(AUTO)).toMatchObject({ xbzrle: false, compress: false, reason: 'auto: nothing measured yet' });
  });

  it('auto on a link the pool outruns: deltas, and LZ4 if it shrinks the pages enough', () => {
    const slow = { wireBytesPerMs: 125_000, poolBytesPerMs: 125_000 * LINK_BOUND_FACTOR * 1.01 };
    const c = chooseEncoding(AUTO, { ...slow, lz4Ratio: 0.01 });
    expect(c).toMatchObject({ xbzrle: true, compress: true });
    expect(c.reason).toMatch(/the link \(125 MB\/s\) is the bottleneck/);
    expect(chooseEncoding(AUTO, { ...slow, lz4Ratio: LZ4_WORTH_RATIO + 0.01 })).toMatchObject({ xbzrle: true, compress: false });
    expect(encodingName({ xbzrle: true, compress: true })).toBe('xbzrle+lz4');
  });

  it('auto on a link as fast as the pool: plain', () => {
    const c = chooseEncoding(AUTO, { wireBytesPerMs: 1_000_000, poolBytesPerMs: 1_000_000 * LINK_BOUND_FACTOR, lz4Ratio: 0.01 });
    expect(c).toMatchObject({ xbzrle: false, compress: false });
    expect(c.reason).toMatch(/is not slower than the pool/);
    expect(encodingName(c)).toBe('none');
  });

  it('one mode forced, the other auto', () => {
    const slow = { wireBytesPerMs: 1000, poolBytesPerMs: 1_000_000, lz4Ratio: 0.1 };
    expect(chooseEncoding({ xbzrle: 'off', compress: 'auto' }, slow)).toMatchObject({ xbzrle: false, compress: true });
    expect(chooseEncoding({ xbzrle: 'auto', compress: 'off' }, slow)).toMatchObject({ xbzrle: true, compress: false });
  });
});

describe('encodingNotWorthIt', () => {
  it('keeps encoding through its first round (the cache fills), and while it carries pages at least as fast as plain', () => {
    expect(encodingNotWorthIt(500_000, 100_000, 1)).toBeUndefined();
    expect(encodingNotWorthIt(500_000, 500_000, 2)).toBeUndefined();
    expect(encodingNotWorthIt(500_000, 900_000, 5)).toBeUndefined();
  });

  it('goes back to plain once a judged round carries pages slower than plain did', () => {
    expect(encodingNotWorthIt(500_000, 400_000, 2)).toBe('auto: encoded, pages went at 400 MB/s, plain at 500 MB/s: back to plain frames');
  });
});
