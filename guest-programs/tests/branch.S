/* branch.S - beq bne blt bge bltu bgeu (taken forwards and backwards, not
   taken, signed vs unsigned, same register, x0), jal and jalr (link value,
   offsets beyond 4 KiB, negative offsets, LSB of the jalr target cleared,
   rd == rs1, x0 as link register). */
#include "macros.h"

TEST_BEGIN
  /* beq */
  TEST_BR_TAKEN(2, beq, 0, 0)
  TEST_BR_TAKEN(3, beq, 1, 1)
  TEST_BR_TAKEN(4, beq, -1, -1)
  TEST_BR_NOT_TAKEN(5, beq, 0, 1)
  TEST_BR_NOT_TAKEN(6, beq, 1, 0)
  TEST_BR_NOT_TAKEN(7, beq, -1, 1)
  TEST_BR_NOT_TAKEN(8, beq, 0x80000000, 0)
  /* bne */
  TEST_BR_TAKEN(10, bne, 0, 1)
  TEST_BR_TAKEN(11, bne, 1, 0)
  TEST_BR_TAKEN(12, bne, -1, 1)
  TEST_BR_TAKEN(13, bne, 0x80000000, 0)
  TEST_BR_NOT_TAKEN(14, bne, 0, 0)
  TEST_BR_NOT_TAKEN(15, bne, 1, 1)
  TEST_BR_NOT_TAKEN(16, bne, -1, -1)
  /* blt (signed) */
  TEST_BR_TAKEN(20, blt, 0, 1)
  TEST_BR_TAKEN(21, blt, -1, 1)
  TEST_BR_TAKEN(22, blt, -2, -1)
  TEST_BR_TAKEN(23, blt, 0x80000000, 0x7fffffff)
  TEST_BR_NOT_TAKEN(24, blt, 1, 0)
  TEST_BR_NOT_TAKEN(25, blt, 1, -1)
  TEST_BR_NOT_TAKEN(26, blt, -1, -2)
  TEST_BR_NOT_TAKEN(27, blt, 0, 0)
  TEST_BR_NOT_TAKEN(28, blt, 0x7fffffff, 0x80000000)
  /* bge (signed) */
  TEST_BR_TAKEN(30, bge, 0, 0)
  TEST_BR_TAKEN(31, bge, 1, 1)
  TEST_BR_TAKEN(32, bge, -1, -1)
  TEST_BR_TAKEN(33, bge, 1, 0)
  TEST_BR_TAKEN(34, bge, 1, -1)
  TEST_BR_TAKEN(35, bge, -1, -2)
  TEST_BR_TAKEN(36, bge, 0x7fffffff, 0x80000000)
  TEST_BR_NOT_TAKEN(37, bge, 0, 1)
  TEST_BR_NOT_TAKEN(38, bge, -1, 1)
  TEST_BR_NOT_TAKEN(39, bge, -2, -1)
  TEST_BR_NOT_TAKEN(40, bge, 0x80000000, 0x7fffffff)
  /* bltu (unsigned) */
  TEST_BR_TAKEN(41, bltu, 0, 1)
  TEST_BR_TAKEN(42, bltu, 0xfffffffe, 0xffffffff)
  TEST_BR_TAKEN(43, bltu, 0, 0xffffffff)
  TEST_BR_TAKEN(44, bltu, 0x7fffffff, 0x80000000)
  TEST_BR_NOT_TAKEN(45, bltu, 1, 0)
  TEST_BR_NOT_TAKEN(46, bltu, 0xffffffff, 0xfffffffe)
  TEST_BR_NOT_TAKEN(47, bltu, 0xffffffff, 0)
  TEST_BR_NOT_TAKEN(48, bltu, 0, 0)
  TEST_BR_NOT_TAKEN(49, bltu, 0x80000000, 0x7fffffff)
  /* bgeu (unsigned) */
  TEST_BR_TAKEN(50, bgeu, 0, 0)
  TEST_BR_TAKEN(51, bgeu, 1, 1)
  TEST_BR_TAKEN(52, bgeu, 0xffffffff, 0xffffffff)
  TEST_BR_TAKEN(53, bgeu, 1, 0)
  TEST_BR_TAKEN(54, bgeu, 0xffffffff, 0xfffffffe)
  TEST_BR_TAKEN(55, bgeu, 0xffffffff, 0)
  TEST_BR_TAKEN(56, bgeu, 0x80000000, 0x7fffffff)
  TEST_BR_NOT_TAKEN(57, bgeu, 0, 1)
  TEST_BR_NOT_TAKEN(58, bgeu, 0xfffffffe, 0xffffffff)
  TEST_BR_NOT_TAKEN(59, bgeu, 0, 0xffffffff)
  TEST_BR_NOT_TAKEN(60, bgeu, 0x7fffffff, 0x80000000)

  /* same register on both sides, and x0 */
test_61:
  li TESTNUM, 61
  li a1, -5
  blt a1, a1, fail_far_61
  bltu a1, a1, fail_far_61
  bne a1, a1, fail_far_61
  beq a1, a1, 1f
  j fail
1:
  bge a1, a1, 1f
  j fail
1:
  bgeu zero, zero, 1f
  j fail
1:
  bltu zero, a1, 1f        /* 0 < 0xfffffffb unsigned */
  j fail
1:
  blt a1, zero, 1f         /* -5 < 0 signed */
  j fail
1:
  j 2f
fail_far_61:
  j fail
2:

  /* jal: link = pc + 4; rd = x0 writes nothing */
test_70:
  li TESTNUM, 70
  li ra, 0
  jal ra, 1f
2:
  j fail
1:
  la a1, 2b
  CHECK_EQ(ra, a1)

test_71:
  li TESTNUM, 71
  li a0, 0
  jal x0, 1f
  li a0, 1                  /* skipped */
1:
  CHECK(a0, 0)

  /* jal with a forward offset > 4 KiB and a backward jump across it */
test_72:
  li TESTNUM, 72
  li a0, 0
  jal t0, 3f
4:                          /* landed here from the backward jal */
  li a0, 1
  j 5f
  .fill 2048, 4, 0          /* 8 KiB of illegal words that must never run */
3:
  la a1, 4b
  CHECK_EQ(t0, a1)
  jal t1, 4b                /* backward, > 4 KiB */
5:
  CHECK(a0, 1)

  /* jalr: target = (rs1 + imm) & ~1, link = pc + 4 */
test_80:
  li TESTNUM, 80
  la a1, 1f
  jalr ra, 0(a1)
2:
  j fail
1:
  la a2, 2b
  CHECK_EQ(ra, a2)

test_81:
  li TESTNUM, 81
  la a1, 1f
  addi a1, a1, -8
  jalr t0, 8(a1)            /* positive offset */
  j fail
1:
  la a1, 1f
  addi a1, a1, 12
  jalr t0, -12(a1)          /* negative offset */
  j fail
1:

test_82:
  li TESTNUM, 82
  la a1, 1f
  addi a1, a1, 1            /* odd address: bit 0 is cleared, no trap */
  jalr t0, 0(a1)
  j fail
1:
  la a1, 1f
  jalr t0, 1(a1)            /* odd via the immediate */
  j fail
1:

test_83:
  li TESTNUM, 83
  la ra, 1f
  jalr ra, 0(ra)            /* rd == rs1: the old value is the target */
2:
  j fail
1:
  la a1, 2b
  CHECK_EQ(ra, a1)

test_84:
  li TESTNUM, 84
  li a0, 0
  la a1, 1f
  jalr x0, 0(a1)            /* x0 link: plain indirect jump */
  li a0, 1
1:
  CHECK(a0, 0)
  CHECK(x0, 0)

  /* call/return through a small function */
test_85:
  li TESTNUM, 85
  li a0, 20
  call add22
  CHECK(a0, 42)
  j pass
add22:
  addi a0, a0, 22
  ret

TEST_END
