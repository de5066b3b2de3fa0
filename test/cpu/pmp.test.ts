// PMP (src/cpu/pmp.ts): how entries decode into byte ranges and decide an access, and the
// legal-value rules for writes. What a guest sees, on Ferry and on QEMU: guest-programs/tests/pmp*.S.
import { describe, expect, it } from 'vitest';
import { PMP_R, PMP_W, PMP_X, PmpRules, writePmpAddr, writePmpCfg } from '../../src/cpu/pmp.ts';
import { createCpuState, PRIV_M, PRIV_U, S_PMPADDR0, S_PMPCFG0 } from '../../src/cpu/state.ts';

const OFF = 0, TOR = 0x08, NA4 = 0x10, NAPOT = 0x18, L = 0x80;

function rules(entries: [cfg: number, addr: number][]): PmpRules {
  const s = createCpuState();
  entries.forEach(([cfg, addr], i) => {
    s[S_PMPADDR0 + i] = addr | 0;
    s[S_PMPCFG0 + (i >> 2)] = s[S_PMPCFG0 + (i >> 2)]! | (cfg << ((i & 3) * 8));
  });
  const r = new PmpRules();
  r.rebuild(s);
  return r;
}

describe('PmpRules', () => {
  it('no entry: M-mode may do anything, U-mode nothing', () => {
    const r = rules([]);
    expect(r.allows(0x8000_0000, 4, PMP_R, PRIV_M)).toBe(true);
    expect(r.allows(0x8000_0000, 4, PMP_R, PRIV_U)).toBe(false);
    expect(r.range(0x8000_0000, 4096, PMP_X, PRIV_U)).toBe(0);
  });

  it('NAPOT of all ones covers the whole space; NAPOT y = base | (size/8 - 1)', () => {
    expect(rules([[NAPOT | PMP_R | PMP_W | PMP_X, -1]]).allows(0xffff_fffc, 4, PMP_W, PRIV_U)).toBe(true);
    const r = rules([[NAPOT | PMP_R, (0x8000_1000 >>> 2) | 0x1ff]]); // 4 KiB at 0x80001000
    expect(r.allows(0x8000_1000, 4, PMP_R, PRIV_U)).toBe(true);
    expect(r.allows(0x8000_1ffc, 4, PMP_R, PRIV_U)).toBe(true);
    expect(r.allows(0x8000_2000, 4, PMP_R, PRIV_U)).toBe(false);
    expect(r.allows(0x8000_0ffc, 4, PMP_R, PRIV_U)).toBe(false);
    expect(r.allows(0x8000_1000, 4, PMP_W, PRIV_U)).toBe(false);
    expect(r.range(0x8000_1000, 4096, PMP_R, PRIV_U)).toBe(1);
  });

  it('TOR runs from the address below (0 for entry 0); NA4 is one word; the lowest-numbered match decides', () => {
    const r = rules([[NA4, 0x8000_0010 >>> 2], [TOR | PMP_R | PMP_W, 0x8000_0020 >>> 2], [OFF, 0], [NAPOT | PMP_R | PMP_X, -1]]);
    expect(r.allows(0x8000_0010, 4, PMP_R, PRIV_U)).toBe(false); // entry 0 first, no permission
    expect(r.allows(0x8000_0014, 4, PMP_W, PRIV_U)).toBe(true); // entry 1: [0x80000010, 0x80000020)
    expect(r.allows(0x8000_0020, 4, PMP_W, PRIV_U)).toBe(false); // entry 3: no W
    expect(r.allows(0x8000_0020, 4, PMP_X, PRIV_U)).toBe(true);
    // an access straddling two entries matches the first only in part: refused
    expect(r.allows(0x8000_001e, 4, PMP_R, PRIV_U)).toBe(false);
    // a page the first matching entry covers only in part: decided per access
    expect(r.range(0x8000_0000, 4096, PMP_R, PRIV_U)).toBe(2);
  });

  it('M-mode is held by a locked entry only', () => {
    const open = rules([[NA4 | PMP_R, 0x8000_0000 >>> 2]]);
    expect(open.allows(0x8000_0000, 4, PMP_W, PRIV_M)).toBe(true);
    expect(open.anyLocked).toBe(false);
    const locked = rules([[L | NA4 | PMP_R, 0x8000_0000 >>> 2]]);
    expect(locked.anyLocked).toBe(true);
    expect(locked.allows(0x8000_0000, 4, PMP_W, PRIV_M)).toBe(false);
    expect(locked.allows(0x8000_0000, 4, PMP_R, PRIV_M)).toBe(true);
    expect(locked.allows(0x8000_0004, 4, PMP_W, PRIV_M)).toBe(true);
  });

  it('a TOR entry whose top is not above its bottom matches nothing', () => {
    const r = rules([[OFF, 0x8000_0100 >>> 2], [TOR | PMP_R, 0x8000_0000 >>> 2]]);
    expect(r.allows(0x8000_0080, 4, PMP_R, PRIV_U)).toBe(false);
    expect(r.range(0x8000_0000, 4096, PMP_R, PRIV_U)).toBe(0);
  });
});

describe('PMP register writes (as QEMU 7.2)', () => {
  it('keeps every bit of an unlocked entry; a locked one, and the address under a locked TOR, stay', () => {
    const s = createCpuState();
    writePmpCfg(s, 0, 0x7f02_1f60);
    expect(s[S_PMPCFG0]! >>> 0).toBe(0x7f02_1f60);
    writePmpAddr(s, 4, 0x1000);
    writePmpAddr(s, 5, 0x2000);
    writePmpCfg(s, 1, ((L | TOR) << 8) | L);
    writePmpCfg(s, 1, 0x0f0f_0f0f);
    expect(s[S_PMPCFG0 + 1]! >>> 0).toBe(0x0f0f_8880);
    writePmpAddr(s, 4, 0x5555);
    writePmpAddr(s, 5, 0x6666);
    writePmpAddr(s, 6, 0x7777);
    expect([s[S_PMPADDR0 + 4], s[S_PMPADDR0 + 5], s[S_PMPADDR0 + 6]]).toEqual([0x1000, 0x2000, 0x7777]);
  });
});
