/* fence.S - fence (ordering no-op in every form) and fence.i with
   self-modifying code: a code word is overwritten with a new instruction,
   fence.i, and the new instruction must be the one that runs (also after
   the old one ran, i.e. with any decode cache warm, and for code copied
   into a data buffer). */
#include "macros.h"

#define ADDI_A0_ZERO(imm) (((imm) << 20) | 0x513)   /* addi a0, zero, imm */

TEST_BEGIN
  /* fence forms behave as no-ops */
test_2:
  li TESTNUM, 2
  la a1, sbuf
  li a2, 0x1234
  sw a2, 0(a1)
  fence
  fence rw, rw
  fence iorw, iorw
  fence w, r
  fence r, w
  fence i, o
  lw a0, 0(a1)
  CHECK(a0, 0x1234)

  /* run the original, then patch it, repeatedly */
test_3:
  li TESTNUM, 3
  li a0, 0
  call smc_fn
  CHECK(a0, 1)
  call smc_fn               /* twice: hot in any decode cache */
  CHECK(a0, 1)

test_4:
  li TESTNUM, 4
  la a1, smc_fn
  li a2, ADDI_A0_ZERO(2)
  sw a2, 0(a1)
  fence.i
  call smc_fn
  CHECK(a0, 2)

test_5:
  li TESTNUM, 5
  li s0, 3
  li s1, 40
1:                          /* patch 37 times in a loop */
  la a1, smc_fn
  slli a2, s0, 20
  ori a2, a2, 0x513
  sw a2, 0(a1)
  fence.i
  call smc_fn
  CHECK_EQ(a0, s0)
  addi s0, s0, 1
  bltu s0, s1, 1b

  /* patch the very next instruction in the running straight-line code */
test_6:
  li TESTNUM, 6
  la a1, 2f
  li a2, ADDI_A0_ZERO(77)
  sw a2, 0(a1)
  fence.i
2:
  li a0, 0                  /* replaced by li a0, 77 */
  CHECK(a0, 77)

  /* patch with a store of a different width: the upper halfword carries the
     immediate (imm[11:0] = insn[31:20]) */
test_7:
  li TESTNUM, 7
  la a1, smc_fn
  li a2, ADDI_A0_ZERO(5)
  sw a2, 0(a1)
  fence.i
  call smc_fn
  CHECK(a0, 5)
  li a2, (9 << 4)           /* insn[31:16] = imm << 4 (rs1 = 0) */
  sh a2, 2(a1)
  fence.i
  call smc_fn
  CHECK(a0, 9)

  /* code copied into a data buffer and executed there */
test_8:
  li TESTNUM, 8
  la a1, codebuf
  li a2, ADDI_A0_ZERO(123)
  sw a2, 0(a1)
  li a2, 0x00008067         /* ret (jalr x0, 0(ra)) */
  sw a2, 4(a1)
  fence.i
  li a0, 0
  jalr ra, 0(a1)
  CHECK(a0, 123)
  li a2, ADDI_A0_ZERO(124)
  sw a2, 0(a1)
  fence.i
  jalr ra, 0(a1)
  CHECK(a0, 124)

  j pass

  .align 4
smc_fn:
  li a0, 1                  /* patched by the tests above */
  ret

TEST_END

  .section .data
  .align 4
sbuf:
  .word 0
  .align 4
codebuf:
  .word 0, 0, 0, 0
