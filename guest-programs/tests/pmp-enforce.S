/* pmp-enforce.S - PMP checks, as QEMU virt makes them: in U-mode the
   lowest-numbered entry that matches decides (R for loads, W for stores, X
   for fetches), and an access no entry matches fails; M-mode passes unless
   the entry is locked; mstatus.MPRV with MPP = U checks M-mode loads and
   stores as U's. Faults: 1 fetch, 5 load, 7 store, mtval = the address.
   Locks last until reset, so the locked case comes last. */
#include "macros.h"

#define PMP_R 0x01
#define PMP_W 0x02
#define PMP_X 0x04
#define PMP_NA4 0x10
#define PMP_NAPOT 0x18
#define PMP_TOR 0x08
#define PMP_L 0x80
#define MSTATUS_MPRV 0x20000

/* run code in U-mode; it must reach its ecall (cause 8) */
#define TEST_U_OK(num, code...) TEST_U_TRAP(num, CAUSE_USER_ECALL, code; 1: ecall)

/* entry 0 = NA4 over label with cfg; entry 1 = everything, R W X */
#define PMP_WORD(label, cfg)                                             \
  la t0, label; srli t0, t0, 2; csrw pmpaddr0, t0;                       \
  li t0, -1; csrw pmpaddr1, t0;                                          \
  li t0, ((PMP_NAPOT | PMP_R | PMP_W | PMP_X) << 8) | (cfg);             \
  csrw pmpcfg0, t0

TEST_BEGIN
  /* entry 0 read-only over ubuf: U loads it, cannot store it, stores next to it */
  PMP_WORD(ubuf, PMP_NA4 | PMP_R)
  TEST_U_OK(2, la a0, ubuf; lw a1, 0(a0))
  TEST_U_TRAP(3, CAUSE_STORE_ACCESS, la a0, ubuf; 1: sw a0, 0(a0))
  test_4: li TESTNUM, 4; la a1, ubuf; CHECK_EQ(s10, a1)
  TEST_U_OK(5, la a0, ubuf; sw a0, 4(a0))
  TEST_U_TRAP(6, CAUSE_STORE_ACCESS, la a0, ubuf; 1: sb a0, 3(a0))
  /* M-mode is not held by an unlocked entry */
  TEST_CASE(7, a1, 0x5a, la a0, ubuf; li a1, 0x5a; sw a1, 0(a0); lw a1, 0(a0))

  /* no permission at all: U cannot load it either */
  PMP_WORD(ubuf, PMP_NA4)
  TEST_U_TRAP(10, CAUSE_LOAD_ACCESS, la a0, ubuf; 1: lw a1, 0(a0))
  TEST_U_TRAP(11, CAUSE_LOAD_ACCESS, la a0, ubuf; 1: lbu a1, 2(a0))
  TEST_U_OK(12, la a0, ubuf; lw a1, 4(a0))

  /* MPRV with MPP = U: M-mode loads and stores are checked as U's */
test_13:
  li TESTNUM, 13
  EXPECT_TRAP(8f)
  li t0, MSTATUS_MPP
  csrc mstatus, t0
  li t0, MSTATUS_MPRV
  csrs mstatus, t0
  la a0, ubuf
1: lw a1, 0(a0)
  j fail
8:
  li t0, MSTATUS_MPRV
  csrc mstatus, t0
  CHECK(s8, CAUSE_LOAD_ACCESS)
  la a1, 1b
  CHECK_EQ(s9, a1)

  /* X: a page of code U may read but not run */
  la t0, noexec; srli t0, t0, 2; ori t0, t0, 0x1ff; csrw pmpaddr0, t0   /* NAPOT 4 KiB */
  li t0, ((PMP_NAPOT | PMP_R | PMP_W | PMP_X) << 8) | PMP_NAPOT | PMP_R
  csrw pmpcfg0, t0
  TEST_U_OK(20, la a0, noexec; lw a1, 0(a0))
test_21:
  li TESTNUM, 21
  EXPECT_TRAP(8f)
  ENTER_UMODE(noexec)
8:
  CHECK(s8, CAUSE_FETCH_ACCESS)
  la a1, noexec
  CHECK_EQ(s9, a1)
  CHECK_EQ(s10, a1)

  /* U-mode code no entry matches cannot run at all */
test_22:
  li TESTNUM, 22
  li t0, 0x80000000 >> 2; csrw pmpaddr0, t0      /* TOR [0, 0x80000000): not RAM */
  li t0, PMP_TOR | PMP_R | PMP_W | PMP_X
  csrw pmpcfg0, t0
  EXPECT_TRAP(8f)
  ENTER_UMODE(2f)
2:
  nop
  j fail
8:
  CHECK(s8, CAUSE_FETCH_ACCESS)
  la a1, 2b
  CHECK_EQ(s9, a1)

  /* locked: entry 2 read-only over mbuf holds M-mode too (entry 3 lets everything else through) */
test_30:
  li TESTNUM, 30
  csrw pmpcfg0, zero
  la t0, mbuf; srli t0, t0, 2; csrw pmpaddr2, t0
  li t0, -1; csrw pmpaddr3, t0
  li t0, ((PMP_NAPOT | PMP_R | PMP_W | PMP_X) << 24) | ((PMP_L | PMP_NA4 | PMP_R) << 16)
  csrw pmpcfg0, t0
  la a0, mbuf
  lw a1, 0(a0)          /* reading is allowed */
  EXPECT_TRAP(8f)
1: sw a0, 0(a0)
  j fail
8:
  CHECK(s8, CAUSE_STORE_ACCESS)
  la a1, 1b
  CHECK_EQ(s9, a1)
  TEST_CASE(31, a1, 0x77, la a0, mbuf; li a1, 0x77; sw a1, 4(a0); lw a1, 4(a0))

  j pass
TEST_END

  .section .data
  .align 4
ubuf:
  .word 0, 0
mbuf:
  .word 0, 0

  .section .text
  .align 12
noexec:
  ecall
  j noexec
  .align 12
