/* umode.S - U-mode via mret with MPP = 0: ecall from U (8), M-only CSRs
   from U (2), mret from U (2), ebreak (3) and illegal (2) from U, mepc and
   mstatus.MPP after a trap from U, user code runs normally in U.
   QEMU's PMP denies U-mode everything by default, so PMP entry 0 is opened
   first (a machine without PMP CSRs may trap on that; it is tolerated).
   wfi in U-mode is not tested: QEMU (with S-mode) traps it, Ferry need not. */
#include "macros.h"

TEST_BEGIN
  PMP_ALLOW_ALL

  /* ecall from U: cause 8, mtval 0 */
  TEST_U_TRAP(2, CAUSE_USER_ECALL, 1: ecall)
  TEST_CASE(3, s10, 0, nop)

  /* ordinary computation in U-mode, results visible after the ecall */
  TEST_U_TRAP(4, CAUSE_USER_ECALL, li a0, 6; li a3, 7; mul a0, a0, a3;
              la a4, ubuf; sw a0, 0(a4); lw a5, 0(a4); 1: ecall)
  TEST_CASE(5, a5, 42, nop)

  /* M-mode CSRs from U: illegal instruction */
  TEST_U_TRAP(10, CAUSE_ILLEGAL_INSTRUCTION, li a0, 0x55; 1: csrr a0, mscratch)
  TEST_CASE(11, a0, 0x55, nop)          /* rd not written */
  TEST_U_TRAP(12, CAUSE_ILLEGAL_INSTRUCTION, 1: csrw mstatus, zero)
  TEST_U_TRAP(13, CAUSE_ILLEGAL_INSTRUCTION, 1: csrr a0, mhartid)
  TEST_U_TRAP(14, CAUSE_ILLEGAL_INSTRUCTION, li a0, -1; 1: csrw mtvec, a0)
  TEST_U_TRAP(15, CAUSE_ILLEGAL_INSTRUCTION, 1: csrsi mie, 8)
  TEST_U_TRAP(16, CAUSE_ILLEGAL_INSTRUCTION, 1: csrr a0, misa)
  /* the M-mode state was not touched by the failed writes */
test_17:
  li TESTNUM, 17
  la a0, test_trap_vector
  csrr a1, mtvec
  CHECK_EQ(a0, a1)

  /* mret from U: illegal instruction */
  TEST_U_TRAP(20, CAUSE_ILLEGAL_INSTRUCTION, 1: mret)
  /* ebreak and an illegal word from U */
  TEST_U_TRAP(21, CAUSE_BREAKPOINT, 1: ebreak)
  TEST_U_TRAP(22, CAUSE_ILLEGAL_INSTRUCTION, 1: .4byte 0)

  /* mstatus on a trap from U: MPP = U, MPIE = old MIE (0), MIE = 0 */
test_30:
  li TESTNUM, 30
  li t0, MSTATUS_MPIE
  csrs mstatus, t0          /* mret will set MIE from this: interrupts on in U */
  csrw mie, zero            /* ...but none is enabled */
  EXPECT_TRAP(8f)
  ENTER_UMODE(2f)
2:
  ecall
  j fail
8:
  csrr a1, mstatus
  andi a0, a1, MSTATUS_MIE
  CHECK(a0, 0)
  andi a0, a1, MSTATUS_MPIE
  CHECK(a0, MSTATUS_MPIE)   /* MIE was 1 in U */
  li a2, MSTATUS_MPP
  and a0, a1, a2
  CHECK(a0, 0)

  j pass
TEST_END

  .section .data
  .align 4
ubuf:
  .word 0
