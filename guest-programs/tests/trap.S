/* trap.S - M-mode traps through mtvec (direct mode): ecall (11), ebreak (3),
   illegal instructions (2) with mepc = faulting instruction and mtval = 0 or
   the instruction bits, the trapping instruction has no effect, mret returns
   to mepc, and mstatus MIE/MPIE/MPP across a trap and mret. */
#include "macros.h"

/* a handler that records mstatus/mcause/mepc/mtval in s7/s8/s9/s10 and
   returns past the trapping instruction with mret */
#define SET_MRET_HANDLER  la t0, mret_handler; csrw mtvec, t0
#define SET_DEFAULT_HANDLER la t0, test_trap_vector; csrw mtvec, t0

TEST_BEGIN
  /* ecall from M: cause 11, mepc = the ecall, mtval = 0 */
  TEST_TRAP(2, CAUSE_MACHINE_ECALL, li s10, -1; 1: ecall)
  TEST_CASE(3, a0, 0, la a1, 1b; sub a0, s9, a1)
  TEST_CASE(4, s10, 0, nop)

  /* ebreak: cause 3, mepc = the ebreak, mtval = 0 or the pc */
  TEST_TRAP(5, CAUSE_BREAKPOINT, 1: ebreak)
  TEST_CASE(6, a0, 0, la a1, 1b; sub a0, s9, a1)
test_7:
  li TESTNUM, 7
  beqz s10, 2f
  CHECK_EQ(s10, s9)
2:

  /* illegal instructions: cause 2, mepc = insn, mtval = 0 or the bits */
#define TEST_ILLEGAL(num, bits)                                          \
test_##num:                                                              \
  li TESTNUM, num;                                                       \
  li a0, 0x77;                                                           \
  EXPECT_TRAP(8f);                                                       \
1:                                                                       \
  .4byte bits;                                                           \
  j fail;                                                                \
8:                                                                       \
  CHECK(s8, CAUSE_ILLEGAL_INSTRUCTION);                                  \
  CHECK(a0, 0x77);                                                       \
  la a1, 1b;                                                             \
  CHECK_EQ(s9, a1);                                                      \
  beqz s10, 2f;                                                          \
  CHECK(s10, bits);                                                      \
2:
  TEST_ILLEGAL(10, 0x00000000)   /* all zeros */
  TEST_ILLEGAL(11, 0xffffffff)   /* all ones */
  TEST_ILLEGAL(12, 0x02051513)   /* slli a0, a0, 32: shamt[5] set on RV32 */
  TEST_ILLEGAL(13, 0x40051533)   /* sll with funct7 = 0x20 */
  TEST_ILLEGAL(14, 0x0000200f)   /* MISC-MEM with funct3 = 2 */
  TEST_ILLEGAL(15, 0x0000006b)   /* reserved major opcode */
  TEST_ILLEGAL(16, 0x00000057)   /* OP-V: no vector unit */
  TEST_ILLEGAL(17, 0x00052507)   /* flw: no F extension */
  TEST_ILLEGAL(18, 0x80051533)   /* OP with funct7 = 0x40 and funct3 = 1 */
  TEST_ILLEGAL(19, 0x06a58533)   /* OP with funct7 = 3 */
  TEST_ILLEGAL(20, 0x00052063)   /* branch with funct3 = 2 */
  TEST_ILLEGAL(21, 0x00053503)   /* ld (funct3 = 3): RV64 only */

  /* mstatus across a trap: MIE -> MPIE, MIE = 0, MPP = M; mret restores
     MIE from MPIE, sets MPIE = 1 and MPP = U (least privileged) */
test_30:
  li TESTNUM, 30
  csrw mie, zero            /* no interrupt can actually be taken */
  SET_MRET_HANDLER
  li t0, MSTATUS_MPIE
  csrc mstatus, t0
  li t0, MSTATUS_MIE
  csrs mstatus, t0
  ecall
  csrr s6, mstatus
  SET_DEFAULT_HANDLER
  li t0, MSTATUS_MIE
  csrc mstatus, t0
  CHECK(s8, CAUSE_MACHINE_ECALL)
  andi a0, s7, MSTATUS_MIE
  CHECK(a0, 0)
  andi a0, s7, MSTATUS_MPIE
  CHECK(a0, MSTATUS_MPIE)
  li a1, MSTATUS_MPP
  and a0, s7, a1
  CHECK(a0, MSTATUS_MPP)
test_31:
  li TESTNUM, 31
  andi a0, s6, MSTATUS_MIE
  CHECK(a0, MSTATUS_MIE)
  andi a0, s6, MSTATUS_MPIE
  CHECK(a0, MSTATUS_MPIE)
  li a1, MSTATUS_MPP
  and a0, s6, a1
  CHECK(a0, 0)

  /* same with MIE = 0 before the trap */
test_32:
  li TESTNUM, 32
  SET_MRET_HANDLER
  li t0, MSTATUS_MIE
  csrc mstatus, t0
  li t0, MSTATUS_MPIE
  csrs mstatus, t0
  ebreak
  csrr s6, mstatus
  SET_DEFAULT_HANDLER
  CHECK(s8, CAUSE_BREAKPOINT)
  andi a0, s7, MSTATUS_MIE | MSTATUS_MPIE
  CHECK(a0, 0)
  andi a0, s6, MSTATUS_MIE | MSTATUS_MPIE
  CHECK(a0, MSTATUS_MPIE)

  /* mret without a trap: jumps to mepc, stays in M with MPP = M */
test_33:
  li TESTNUM, 33
  li t0, MSTATUS_MPP
  csrs mstatus, t0
  li t0, MSTATUS_MPIE
  csrs mstatus, t0
  li t0, MSTATUS_MIE
  csrc mstatus, t0
  la t0, 1f
  csrw mepc, t0
  li a0, 0
  mret
  li a0, 1                  /* skipped */
1:
  csrr s6, mstatus
  li t0, MSTATUS_MIE
  csrc mstatus, t0
  CHECK(a0, 0)
  andi a0, s6, MSTATUS_MIE
  CHECK(a0, MSTATUS_MIE)
  csrr a0, mscratch         /* still M-mode: no trap */
  CHECK(s11, 0)

  /* the trap goes to the current mtvec */
test_34:
  li TESTNUM, 34
  la t0, other_vector
  csrw mtvec, t0
  li a0, 0
  ecall
  SET_DEFAULT_HANDLER
  CHECK(a0, 0x0be)

  /* mcause/mepc/mtval are writable (mscratch-like read back) */
  TEST_CASE(35, a0, 0x80000010, li a1, 0x80000010; csrw mepc, a1; csrr a0, mepc)
  TEST_CASE(36, a0, 0x12345678, li a1, 0x12345678; csrw mtval, a1; csrr a0, mtval)
  TEST_CASE(37, a0, 3, li a1, 3; csrw mcause, a1; csrr a0, mcause)

  j pass

  .align 4
mret_handler:
  csrr s7, mstatus
  csrr s8, mcause
  csrr s9, mepc
  csrr s10, mtval
  addi t0, s9, 4
  csrw mepc, t0
  mret

  .align 4
other_vector:
  li a0, 0x0be
  csrr t0, mepc
  addi t0, t0, 4
  csrw mepc, t0
  mret

TEST_END
