/* macros.h - self-checking RV32IM + Zicsr conformance tests for Ferry
   (written for this project in the style of riscv-tests, not copied).

   Register conventions inside a test:
     gp  (x3)  TESTNUM: number of the running case; on the first mismatch the
               test exits through the finisher with exit code = TESTNUM.
     t6  (x31) expected value of the running case (scratch).
     s11 (x27) "expected trap" resume address; 0 = any trap is a failure.
     s8/s9/s10 mcause/mepc/mtval captured by the default trap vector.
   Pass: finisher 0x5555 (exit 0). Fail: finisher (TESTNUM<<16)|0x3333.
   An unexpected trap fails with the current TESTNUM.
   TESTNUM values stay in 2..255 so exit codes are unambiguous. */
#ifndef FERRY_TEST_MACROS_H
#define FERRY_TEST_MACROS_H

#define TESTNUM gp
#define FINISHER 0x100000
#define CLINT_MTIMECMP 0x2004000
#define CLINT_MTIME 0x200bff8

#define CAUSE_MISALIGNED_FETCH 0
#define CAUSE_FETCH_ACCESS 1
#define CAUSE_ILLEGAL_INSTRUCTION 2
#define CAUSE_BREAKPOINT 3
#define CAUSE_LOAD_ACCESS 5
#define CAUSE_STORE_ACCESS 7
#define CAUSE_USER_ECALL 8
#define CAUSE_MACHINE_ECALL 11
#define CAUSE_MTI 0x80000007

#define MSTATUS_MIE 0x8
#define MSTATUS_MPIE 0x80
#define MSTATUS_MPP 0x1800
#define MIE_MTIE 0x80

/* ---- skeleton ---- */

#define TEST_BEGIN                                                       \
  .section .text.init, "ax", @progbits;                                  \
  .globl _start;                                                         \
_start:                                                                  \
  li TESTNUM, 0;                                                         \
  li s11, 0;                                                             \
  la sp, _stack_top;                                                     \
  la t0, test_trap_vector;                                               \
  csrw mtvec, t0;                                                        \
  csrw mie, zero;                                                        \
  j test_body;                                                           \
  .align 4;                                                              \
test_trap_vector:                                                        \
  csrr s8, mcause;                                                       \
  csrr s9, mepc;                                                         \
  csrr s10, mtval;                                                       \
  bnez s11, 1f;                                                          \
  j fail;                                                                \
1:                                                                       \
  mv t6, s11;                                                            \
  li s11, 0;                                                             \
  jr t6;                                                                 \
test_body:

/* exit through the SiFive-style test finisher (QEMU virt and Ferry) */
#define TEST_END                                                         \
pass:                                                                    \
  li t0, FINISHER;                                                       \
  li t1, 0x5555;                                                         \
  sw t1, 0(t0);                                                          \
1:                                                                       \
  j 1b;                                                                  \
fail:                                                                    \
  li t0, FINISHER;                                                       \
  slli t1, TESTNUM, 16;                                                  \
  li t2, 0x3333;                                                         \
  or t1, t1, t2;                                                         \
  bnez TESTNUM, 2f;                                                      \
  li t1, 0x00ff3333;                                                     \
2:                                                                       \
  sw t1, 0(t0);                                                          \
3:                                                                       \
  j 3b;                                                                  \
  .section .text

/* HTIF variant (Ferry only; QEMU virt has no HTIF and just spins):
   pass writes 1 to tohost, fail writes (TESTNUM << 1) | 1. The high word is
   written (0) first, then the low word. tohost/fromhost live in section
   .tohost, 64-byte aligned, 8 bytes each, found through the ELF symbols. */
#define TEST_END_HTIF                                                    \
pass:                                                                    \
  li t1, 1;                                                              \
  j 1f;                                                                  \
fail:                                                                    \
  slli t1, TESTNUM, 1;                                                   \
  ori t1, t1, 1;                                                         \
  bnez TESTNUM, 1f;                                                      \
  li t1, (255 << 1) | 1;                                                 \
1:                                                                       \
  la t0, tohost;                                                         \
  sw zero, 4(t0);                                                        \
  sw t1, 0(t0);                                                          \
2:                                                                       \
  j 2b;                                                                  \
  .section .tohost, "aw", @progbits;                                     \
  .align 6;                                                              \
  .globl tohost;                                                         \
tohost:                                                                  \
  .dword 0;                                                              \
  .align 6;                                                              \
  .globl fromhost;                                                       \
fromhost:                                                                \
  .dword 0;                                                              \
  .section .text

/* ---- checking ---- */

/* fail unless reg == expect (t6 holds expect) */
#define CHECK(reg, expect)                                               \
  li t6, expect;                                                         \
  beq reg, t6, 9f;                                                       \
  j fail;                                                                \
9:

/* fail unless reg1 == reg2 */
#define CHECK_EQ(reg1, reg2)                                             \
  beq reg1, reg2, 9f;                                                    \
  j fail;                                                                \
9:

/* run code, then compare reg with expect */
#define TEST_CASE(num, reg, expect, code...)                             \
test_##num:                                                              \
  li TESTNUM, num;                                                       \
  code;                                                                  \
  CHECK(reg, expect)

/* ---- register-register ops ---- */
#define TEST_RR_OP(num, insn, expect, v1, v2)                            \
  TEST_CASE(num, a0, expect, li a1, v1; li a2, v2; insn a0, a1, a2)

#define TEST_RR_SRC1_EQ_DEST(num, insn, expect, v1, v2)                  \
  TEST_CASE(num, a1, expect, li a1, v1; li a2, v2; insn a1, a1, a2)

#define TEST_RR_SRC2_EQ_DEST(num, insn, expect, v1, v2)                  \
  TEST_CASE(num, a2, expect, li a1, v1; li a2, v2; insn a2, a1, a2)

#define TEST_RR_SRC12_EQ_DEST(num, insn, expect, v1)                     \
  TEST_CASE(num, a1, expect, li a1, v1; insn a1, a1, a1)

#define TEST_RR_ZEROSRC1(num, insn, expect, v2)                          \
  TEST_CASE(num, a0, expect, li a2, v2; insn a0, x0, a2)

#define TEST_RR_ZEROSRC2(num, insn, expect, v1)                          \
  TEST_CASE(num, a0, expect, li a1, v1; insn a0, a1, x0)

/* writes to x0 are discarded */
#define TEST_RR_ZERODEST(num, insn, v1, v2)                              \
  TEST_CASE(num, x0, 0, li a1, v1; li a2, v2; insn x0, a1, a2)

/* ---- register-immediate ops ---- */
#define TEST_IMM_OP(num, insn, expect, v1, imm)                          \
  TEST_CASE(num, a0, expect, li a1, v1; insn a0, a1, imm)

#define TEST_IMM_SRC1_EQ_DEST(num, insn, expect, v1, imm)                \
  TEST_CASE(num, a1, expect, li a1, v1; insn a1, a1, imm)

#define TEST_IMM_ZEROSRC1(num, insn, expect, imm)                        \
  TEST_CASE(num, a0, expect, insn a0, x0, imm)

#define TEST_IMM_ZERODEST(num, insn, v1, imm)                            \
  TEST_CASE(num, x0, 0, li a1, v1; insn x0, a1, imm)

/* ---- loads and stores ---- */
/* load from base_label + offset */
#define TEST_LD(num, insn, expect, offset, base)                         \
  TEST_CASE(num, a0, expect, la a1, base; insn a0, offset(a1))

/* store value at base_label + offset, load it back with ld_insn */
#define TEST_ST(num, st_insn, ld_insn, expect, value, offset, base)      \
  TEST_CASE(num, a0, expect, la a1, base; li a2, value;                  \
            st_insn a2, offset(a1); ld_insn a0, offset(a1))

/* ---- branches ---- */
#define TEST_BR_TAKEN(num, insn, v1, v2)                                 \
test_##num:                                                              \
  li TESTNUM, num;                                                       \
  li a1, v1;                                                             \
  li a2, v2;                                                             \
  insn a1, a2, 2f;                                                       \
  j fail;                                                                \
1:                                                                       \
  j 3f;              /* backward target reached: done */                 \
2:                                                                       \
  insn a1, a2, 1b;   /* taken backwards too */                           \
  j fail;                                                                \
3:

#define TEST_BR_NOT_TAKEN(num, insn, v1, v2)                             \
test_##num:                                                              \
  li TESTNUM, num;                                                       \
  li a1, v1;                                                             \
  li a2, v2;                                                             \
  insn a1, a2, 1f;                                                       \
  j 2f;                                                                  \
1:                                                                       \
  j fail;                                                                \
2:

/* ---- traps ---- */
/* Arm the default vector: the next trap records mcause/mepc/mtval in
   s8/s9/s10 and continues at label (in M-mode, mstatus.MIE stays 0). */
#define EXPECT_TRAP(label) la s11, label

/* Run one instruction sequence that must trap with cause; checks mcause and
   that mepc is the address of label trap_pc (inside code). */
#define TEST_TRAP(num, cause, code...)                                   \
test_##num:                                                              \
  li TESTNUM, num;                                                       \
  EXPECT_TRAP(8f);                                                       \
  code;                                                                  \
  j fail;            /* no trap */                                       \
8:                                                                       \
  CHECK(s8, cause)

/* Try to give U-mode access to all memory through PMP entry 0 (needed on
   QEMU, whose PMP denies U-mode by default). A machine without PMP CSRs
   may trap (illegal instruction); that is tolerated. */
#define PMP_ALLOW_ALL                                                    \
  EXPECT_TRAP(7f);                                                       \
  li t0, -1;                                                             \
  csrw pmpaddr0, t0;                                                     \
  li t0, 0x1f;       /* NAPOT, R W X */                                  \
  csrw pmpcfg0, t0;                                                      \
7:                                                                       \
  li s11, 0

/* Drop to U-mode at label (mret with MPP = 0). */
#define ENTER_UMODE(label)                                               \
  li t0, MSTATUS_MPP;                                                    \
  csrc mstatus, t0;                                                      \
  la t0, label;                                                          \
  csrw mepc, t0;                                                         \
  mret

/* Run code in U-mode; it must trap with cause at label 1 inside it (mepc),
   from U (mstatus.MPP = 0). */
#define TEST_U_TRAP(num, cause, code...)                                 \
test_##num:                                                              \
  li TESTNUM, num;                                                       \
  EXPECT_TRAP(8f);                                                       \
  ENTER_UMODE(2f);                                                       \
2:                                                                       \
  code;                                                                  \
  j fail;                                                                \
8:                                                                       \
  CHECK(s8, cause);                                                      \
  la a1, 1b;                                                             \
  CHECK_EQ(s9, a1);                                                      \
  csrr a1, mstatus;                                                      \
  li a2, MSTATUS_MPP;                                                    \
  and a1, a1, a2;                                                        \
  CHECK(a1, 0)

#endif
