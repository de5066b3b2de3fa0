/* htif-pass.S - Ferry only: a few checks, then reports PASS through the HTIF
   tohost word (writes 1). QEMU virt has no HTIF: there it just spins. */
#include "macros.h"

TEST_BEGIN
  TEST_RR_OP(2, add, 0x00000003, 1, 2)
  TEST_RR_OP(3, mul, 0x0000002a, 6, 7)
  TEST_CASE(4, a0, 0x1234, la a1, hbuf; li a2, 0x1234; sw a2, 0(a1); lw a0, 0(a1))
  j pass
TEST_END_HTIF

  .section .data
  .align 4
hbuf:
  .word 0
