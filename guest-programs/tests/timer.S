/* timer.S - CLINT machine timer and wfi: mtime advances, MTIP in mip follows
   mtime >= mtimecmp, wfi wakes on a pending enabled interrupt even with
   mstatus.MIE = 0 (no trap), the interrupt is then taken as soon as MIE is
   set (mcause 0x80000007, mepc = next instruction, MPIE = 1, MIE = 0 in the
   handler, MIE restored by mret), an interrupt arriving during wfi with
   MIE = 1, and mie.MTIE = 0 masks it. */
#include "macros.h"

#define MIP_MTIP 0x80

/* a0:a1 = mtime (lo, hi) with the hi/lo/hi loop */
#define READ_MTIME                                                       \
  li t0, CLINT_MTIME;                                                    \
1:                                                                       \
  lw a1, 4(t0);                                                          \
  lw a0, 0(t0);                                                          \
  lw t1, 4(t0);                                                          \
  bne a1, t1, 1b

/* mtimecmp = mtime + delta (delta < 2^31) */
#define ARM_TIMER(delta)                                                 \
  READ_MTIME;                                                            \
  li t1, delta;                                                          \
  add t2, a0, t1;                                                        \
  sltu t1, t2, a0;                                                       \
  add t1, a1, t1;                                                        \
  li t0, CLINT_MTIMECMP;                                                 \
  li a2, -1;                                                             \
  sw a2, 4(t0);                                                          \
  sw t2, 0(t0);                                                          \
  sw t1, 4(t0)

#define DISARM_TIMER                                                     \
  li t0, CLINT_MTIMECMP;                                                 \
  li a2, -1;                                                             \
  sw a2, 4(t0);                                                          \
  sw a2, 0(t0)

TEST_BEGIN
  csrw mie, zero
  li t0, MSTATUS_MIE
  csrc mstatus, t0
  DISARM_TIMER

  /* mtime advances */
test_2:
  li TESTNUM, 2
  READ_MTIME
  mv s0, a0
  li s1, 10000000
2:
  READ_MTIME
  bne a0, s0, 3f
  addi s1, s1, -1
  bnez s1, 2b
  j fail
3:

  /* disarmed: MTIP clear */
test_3:
  li TESTNUM, 3
  csrr a0, mip
  andi a0, a0, MIP_MTIP
  CHECK(a0, 0)

  /* wfi with MIE = 0 but MTIE = 1: wakes once the timer fires, no trap */
test_4:
  li TESTNUM, 4
  ARM_TIMER(20000)          /* 2 ms */
  li t0, MIE_MTIE
  csrs mie, t0
  li s1, 100000000          /* bound on spurious wake-ups (wfi may be a nop) */
2:
  wfi
  csrr a0, mip
  andi a0, a0, MIP_MTIP
  bnez a0, 3f
  addi s1, s1, -1
  bnez s1, 2b
  j fail
3:
  CHECK(a0, MIP_MTIP)

  /* MTIP pending + MTIE, MIE = 0 -> nothing taken yet; setting MIE takes it
     right away: mepc = the instruction after the csrs */
test_5:
  li TESTNUM, 5
  la t0, timer_handler
  csrw mtvec, t0
  li s4, 0                  /* handler call count */
  li t0, MSTATUS_MPIE
  csrc mstatus, t0
  nop
  CHECK(s4, 0)
  csrsi mstatus, MSTATUS_MIE
after_csrs:
  li t0, MSTATUS_MIE
  csrc mstatus, t0
  CHECK(s4, 1)
  li a1, CAUSE_MTI
  CHECK_EQ(s8, a1)
  la a1, after_csrs
  CHECK_EQ(s9, a1)
test_6:                     /* in the handler: MIE = 0, MPIE = 1, MPP = M */
  li TESTNUM, 6
  andi a0, s7, MSTATUS_MIE | MSTATUS_MPIE
  CHECK(a0, MSTATUS_MPIE)
  li a1, MSTATUS_MPP
  and a0, s7, a1
  CHECK(a0, MSTATUS_MPP)
test_7:                     /* the handler disarmed the timer: MTIP clear */
  li TESTNUM, 7
  csrr a0, mip
  andi a0, a0, MIP_MTIP
  CHECK(a0, 0)

  /* interrupt during wfi with MIE = 1 (mepc = wfi + 4, or the wfi itself
     if it arrived first; the handler then skips the wfi) */
test_8:
  li TESTNUM, 8
  li s4, 0
  ARM_TIMER(100000)         /* 10 ms */
  csrsi mstatus, MSTATUS_MIE
wfi_insn:
  wfi
  li s1, 100000000          /* generous: wfi may be a nop */
2:                          /* spurious wake-ups: wait for the handler */
  bnez s4, 3f
  addi s1, s1, -1
  bnez s1, 2b
  j fail
3:
  li t0, MSTATUS_MIE
  csrc mstatus, t0
  CHECK(s4, 1)
  li a1, CAUSE_MTI
  CHECK_EQ(s8, a1)
  la a1, wfi_insn
  beq s9, a1, 4f
  addi a1, a1, 4
  bltu s9, a1, 5f
  addi a1, a1, 4 * 6        /* somewhere in the short wait loop */
  bltu a1, s9, 5f
4:
  j 6f
5:
  j fail
6:
  /* mret restored MIE = 1 (checked via the saved value after return) */
test_9:
  li TESTNUM, 9
  andi a0, s7, MSTATUS_MPIE
  CHECK(a0, MSTATUS_MPIE)

  /* MTIE = 0 masks the interrupt even with MIE = 1 and MTIP pending */
test_10:
  li TESTNUM, 10
  li s4, 0
  li t0, MIE_MTIE
  csrc mie, t0
  li t0, CLINT_MTIMECMP     /* mtimecmp = 0: pending at once */
  sw zero, 4(t0)
  sw zero, 0(t0)
  csrsi mstatus, MSTATUS_MIE
  nop
  nop
  csrr a0, mip
  li t0, MSTATUS_MIE
  csrc mstatus, t0
  CHECK(s4, 0)
  andi a0, a0, MIP_MTIP
  CHECK(a0, MIP_MTIP)
  /* and a far-future mtimecmp clears MTIP */
test_11:
  li TESTNUM, 11
  ARM_TIMER(0x7fffffff)
  csrr a0, mip
  andi a0, a0, MIP_MTIP
  CHECK(a0, 0)
  DISARM_TIMER

  j pass

  .align 4
timer_handler:
  csrr s7, mstatus
  csrr s8, mcause
  csrr s9, mepc
  addi s4, s4, 1
  li t0, CLINT_MTIMECMP     /* disarm */
  li t1, -1
  sw t1, 4(t0)
  sw t1, 0(t0)
  la t0, wfi_insn           /* arrived before the wfi: skip it */
  bne s9, t0, 1f
  addi t0, t0, 4
  csrw mepc, t0
1:
  mret

TEST_END
