/* csr.S - Zicsr: csrrw csrrs csrrc csrrwi csrrsi csrrci (old value returned,
   rd == rs1, rs1 = x0 / uimm = 0 does not write), mscratch round trip,
   mtvec/mepc read back, mhartid = 0, misa (MXL = 1, I and M), read-only
   CSRs trap on write, counters cycle/time/instret (+ high halves) increase,
   an unimplemented CSR number traps with illegal instruction. */
#include "macros.h"

TEST_BEGIN
  /* mscratch round trip */
  TEST_CASE(2, a0, 0xdeadbeef, li a1, 0xdeadbeef; csrw mscratch, a1; csrr a0, mscratch)
  TEST_CASE(3, a0, 0x00000000, csrw mscratch, zero; csrr a0, mscratch)
  /* csrrw returns the old value and writes the new one */
  TEST_CASE(4, a0, 0x11111111, li a1, 0x11111111; csrw mscratch, a1; li a1, 0x22222222;
            csrrw a0, mscratch, a1)
  TEST_CASE(5, a0, 0x22222222, csrr a0, mscratch)
  /* rd == rs1: swap */
  TEST_CASE(6, a1, 0x22222222, li a1, 0x33333333; csrrw a1, mscratch, a1)
  TEST_CASE(7, a0, 0x33333333, csrr a0, mscratch)
  /* csrrs / csrrc */
  TEST_CASE(8, a0, 0x0000f0f0, li a1, 0x0000f0f0; csrw mscratch, a1; li a1, 0x0f0f0000;
            csrrs a0, mscratch, a1)
  TEST_CASE(9, a0, 0x0f0ff0f0, csrr a0, mscratch)
  TEST_CASE(10, a0, 0x0f0ff0f0, li a1, 0x0f00f000; csrrc a0, mscratch, a1)
  TEST_CASE(11, a0, 0x000f00f0, csrr a0, mscratch)
  /* rs1 = x0: csrrs/csrrc read only */
  TEST_CASE(12, a0, 0x000f00f0, csrrs a0, mscratch, x0; csrrc a0, mscratch, x0)
  TEST_CASE(13, a0, 0x000f00f0, csrr a0, mscratch)
  /* immediate forms (uimm 0..31, zero-extended) */
  TEST_CASE(14, a0, 0x000f00f0, csrrwi a0, mscratch, 31)
  TEST_CASE(15, a0, 0x0000001f, csrr a0, mscratch)
  TEST_CASE(16, a0, 0x0000001f, csrrci a0, mscratch, 0x15)
  TEST_CASE(17, a0, 0x0000000a, csrr a0, mscratch)
  TEST_CASE(18, a0, 0x0000000a, csrrsi a0, mscratch, 0x11)
  TEST_CASE(19, a0, 0x0000001b, csrr a0, mscratch)
  TEST_CASE(20, a0, 0x0000001b, csrrsi a0, mscratch, 0; csrrci a0, mscratch, 0)
  TEST_CASE(21, a0, 0x0000001b, csrr a0, mscratch)
  TEST_CASE(22, a0, 0x0000001b, li a1, -1; csrw mscratch, a1; csrwi mscratch, 0x1b; csrr a0, mscratch)
  /* x0 destination: the write still happens */
  TEST_CASE(23, a0, 0x00000007, csrrw x0, mscratch, x0; csrrsi x0, mscratch, 7; csrr a0, mscratch)
  TEST_CASE(24, x0, 0, csrrs x0, mscratch, x0)

  /* mhartid = 0 */
  TEST_CASE(30, a0, 0, li a0, -1; csrr a0, mhartid)
  /* misa: MXL = 1 (RV32), I and M present */
  TEST_CASE(31, a0, 0x40000000, csrr a1, misa; srli a0, a1, 30; slli a0, a0, 30)
  TEST_CASE(32, a0, 0x00001100, csrr a1, misa; li a2, 0x1100; and a0, a1, a2)
  /* mtvec (direct mode) and mepc read back */
  TEST_CASE(33, a0, 0x80001000, csrr s0, mtvec; li a1, 0x80001000; csrw mtvec, a1;
            csrr a0, mtvec; csrw mtvec, s0)
  TEST_CASE(34, a0, 0x80000124, li a1, 0x80000124; csrw mepc, a1; csrr a0, mepc)
  la t0, test_trap_vector
  csrw mtvec, t0

  /* read-only CSRs: writing traps, reading with rs1 = x0 / uimm = 0 does not */
  TEST_CASE(40, a0, 0, csrrs a0, mhartid, x0)
  TEST_CASE(41, a0, 0, csrrsi a0, mhartid, 0)
  TEST_TRAP(42, CAUSE_ILLEGAL_INSTRUCTION, csrw mhartid, zero)
  TEST_TRAP(43, CAUSE_ILLEGAL_INSTRUCTION, li a1, 1; csrrs a0, mhartid, a1)
  TEST_TRAP(44, CAUSE_ILLEGAL_INSTRUCTION, csrrwi a0, cycle, 0)
  TEST_TRAP(45, CAUSE_ILLEGAL_INSTRUCTION, csrrsi a0, time, 1)

  /* unimplemented CSR numbers trap (0x7c0: custom M-mode read/write) */
  TEST_TRAP(50, CAUSE_ILLEGAL_INSTRUCTION, csrr a0, 0x7c0)
  TEST_TRAP(51, CAUSE_ILLEGAL_INSTRUCTION, csrw 0x7c0, zero)
  /* the trapping CSR instruction does not write rd */
  TEST_CASE(52, a0, 0x5a5a, li a0, 0x5a5a; EXPECT_TRAP(1f); csrr a0, 0x7c0; j fail; 1:)
  /* mepc of the trap is the CSR instruction */
  TEST_CASE(53, a0, 0, EXPECT_TRAP(1f); 2: csrr a0, 0x7c0; j fail; 1: la a1, 2b; sub a0, s9, a1)

  /* counters increase */
test_60:
  li TESTNUM, 60
  rdcycle a0
  li a2, 100
1:
  addi a2, a2, -1
  bnez a2, 1b
  rdcycle a1
  bgtu a1, a0, 2f
  j fail
2:
test_61:
  li TESTNUM, 61
  rdinstret a0
  li a2, 100
1:
  addi a2, a2, -1
  bnez a2, 1b
  rdinstret a1
  bgtu a1, a0, 2f
  j fail
2:
test_62:                    /* time advances (10 MHz): poll with a bound */
  li TESTNUM, 62
  rdtime a0
  li a2, 10000000
1:
  rdtime a1
  bne a1, a0, 2f
  addi a2, a2, -1
  bnez a2, 1b
  j fail
2:
  bgtu a1, a0, 3f           /* low words, fine unless they wrap right here */
  rdtimeh a3
  bnez a3, 3f
  j fail
3:
test_63:                    /* time CSR agrees with CLINT mtime (>=, low word) */
  li TESTNUM, 63
  li a1, CLINT_MTIME
  lw a0, 0(a1)
  rdtime a2
  sub a3, a2, a0
  li a4, 10000000           /* within a second */
  bltu a3, a4, 1f
  j fail
1:
test_64:                    /* high halves readable */
  li TESTNUM, 64
  rdcycleh a0
  rdinstreth a0
  rdtimeh a0
  CHECK(x0, 0)

  j pass
TEST_END
