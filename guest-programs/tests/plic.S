/* plic.S - the PLIC's registers as on QEMU virt: 96 sources with 3-bit
   priorities (source 0 has none), two contexts (hart 0 M and S) with 96
   enable bits and a 3-bit threshold each, read-only pending bits, claim 0
   when nothing is pending, aligned 32-bit access only, 0x600000 bytes. */
#include "macros.h"

#define PLIC 0x0c000000
#define PRIO(n) (PLIC + 4 * (n))
#define PENDING (PLIC + 0x1000)
#define ENABLE(ctx) (PLIC + 0x2000 + 0x80 * (ctx))
#define THRESHOLD(ctx) (PLIC + 0x200000 + 0x1000 * (ctx))
#define CLAIM(ctx) (THRESHOLD(ctx) + 4)

/* store v at addr, load it back into a0 */
#define STLD(addr, v) li a1, addr; li a2, v; sw a2, 0(a1); lw a0, 0(a1)

TEST_BEGIN
  /* priorities */
  TEST_CASE(2, a0, 0, li a1, PRIO(1); lw a0, 0(a1))
  TEST_CASE(3, a0, 0, STLD(PRIO(0), 7))
  TEST_CASE(4, a0, 7, STLD(PRIO(1), -1))
  TEST_CASE(5, a0, 0, STLD(PRIO(1), 8))
  TEST_CASE(6, a0, 5, STLD(PRIO(1), 5))
  TEST_CASE(7, a0, 3, STLD(PRIO(96), 3))
  TEST_CASE(8, a0, 0, STLD(PRIO(97), 3))
  TEST_CASE(9, a0, 0, STLD(PRIO(1), 0); STLD(PRIO(96), 0))

  /* enables: three words per context, every bit kept; nothing past source 95 */
  TEST_CASE(10, a0, 0xffffffff, STLD(ENABLE(0), -1))
  TEST_CASE(11, a0, 0xffffffff, STLD(ENABLE(0) + 8, -1))
  TEST_CASE(12, a0, 0, STLD(ENABLE(0) + 12, -1))
  TEST_CASE(13, a0, 0xffffffff, STLD(ENABLE(1) + 4, -1))
  TEST_CASE(14, a0, 0, STLD(ENABLE(2), -1))
  TEST_CASE(15, a0, 0, STLD(ENABLE(0), 0); STLD(ENABLE(0) + 8, 0); STLD(ENABLE(1) + 4, 0))

  /* thresholds: 3 bits, contexts 0 and 1 only */
  TEST_CASE(20, a0, 7, STLD(THRESHOLD(0), 7))
  TEST_CASE(21, a0, 0, STLD(THRESHOLD(0), 8))
  TEST_CASE(22, a0, 1, STLD(THRESHOLD(0), 9))
  TEST_CASE(23, a0, 3, STLD(THRESHOLD(1), 3))
  TEST_CASE(24, a0, 0, STLD(THRESHOLD(2), 3))
  TEST_CASE(25, a0, 0, STLD(THRESHOLD(0), 0); STLD(THRESHOLD(1), 0))

  /* nothing pending: claim reads 0; pending bits cannot be written */
  TEST_CASE(30, a0, 0, li a1, CLAIM(0); lw a0, 0(a1))
  TEST_CASE(31, a0, 0, li a1, CLAIM(1); lw a0, 0(a1))
  TEST_CASE(32, a0, 0, STLD(PENDING, -1))
  TEST_CASE(33, a0, 0, li a1, PENDING + 8; lw a0, 0(a1))

  /* the map: the last word answers, the next one faults */
  TEST_CASE(40, a0, 0, li a1, PLIC + 0x5ffffc; lw a0, 0(a1))
  TEST_TRAP(41, CAUSE_LOAD_ACCESS, li a1, PLIC + 0x600000; lw a0, 0(a1))
  /* byte and halfword accesses fault */
  TEST_TRAP(42, CAUSE_LOAD_ACCESS, li a1, PRIO(1); lbu a0, 0(a1))
  TEST_TRAP(43, CAUSE_LOAD_ACCESS, li a1, PRIO(1); lh a0, 0(a1))
  TEST_TRAP(44, CAUSE_STORE_ACCESS, li a1, PRIO(1); li a2, 7; sb a2, 0(a1))
  TEST_CASE(45, a0, 0, li a1, PRIO(1); lw a0, 0(a1))

  j pass
TEST_END
