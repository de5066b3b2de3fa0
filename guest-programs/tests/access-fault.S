/* access-fault.S - accesses to unmapped physical addresses: load access
   fault (5), store/AMO access fault (7), instruction access fault (1), with
   mepc = the faulting instruction (fetch: the target) and mtval = the
   faulting address. The faulting load leaves rd unchanged, the faulting
   store changes nothing. Addresses used: 0x00000000 (nothing mapped there on
   QEMU virt or Ferry), 0x00200000 (between the finisher/RTC and the CLINT),
   0x08000000 and 0x2ffffffc (gaps in the virt map; note 0x40000000-0x7fffffff is PCIe MMIO on QEMU), 0x88000000 (past 128 MiB of
   RAM: assumes the default RAM size). */
#include "macros.h"

#define TEST_LOAD_FAULT(num, insn, addr)                                 \
  TEST_TRAP(num, CAUSE_LOAD_ACCESS, li a1, addr; li a0, 0x1234;          \
            1: insn a0, 0(a1));                                          \
  CHECK(s10, addr);                                                      \
  CHECK(a0, 0x1234);                                                     \
  la a2, 1b;                                                             \
  CHECK_EQ(s9, a2)

#define TEST_STORE_FAULT(num, insn, addr)                                \
  TEST_TRAP(num, CAUSE_STORE_ACCESS, li a1, addr; li a0, 0x1234;         \
            1: insn a0, 0(a1));                                          \
  CHECK(s10, addr);                                                      \
  la a2, 1b;                                                             \
  CHECK_EQ(s9, a2)

#define TEST_FETCH_FAULT(num, addr)                                      \
  TEST_TRAP(num, CAUSE_FETCH_ACCESS, li a1, addr; jalr ra, 0(a1));       \
  CHECK(s10, addr);                                                      \
  CHECK(s9, addr)

TEST_BEGIN
  TEST_LOAD_FAULT(2, lw, 0x00000000)
  TEST_LOAD_FAULT(3, lb, 0x00200000)
  TEST_LOAD_FAULT(4, lhu, 0x00200002)
  TEST_LOAD_FAULT(5, lw, 0x08000000)
  TEST_LOAD_FAULT(6, lw, 0x2ffffffc)
  TEST_LOAD_FAULT(7, lbu, 0x88000000)

  TEST_STORE_FAULT(10, sw, 0x00000000)
  TEST_STORE_FAULT(11, sb, 0x00200001)
  TEST_STORE_FAULT(12, sh, 0x08000000)
  TEST_STORE_FAULT(13, sw, 0x2ffffffc)
  TEST_STORE_FAULT(14, sw, 0x88000000)

  TEST_FETCH_FAULT(20, 0x00000000)
  TEST_FETCH_FAULT(21, 0x00200000)
  TEST_FETCH_FAULT(22, 0x08000000)
  TEST_FETCH_FAULT(23, 0x88000000)

  /* RAM still works after all that */
  TEST_CASE(30, a0, 0xcafe, la a1, buf; li a2, 0xcafe; sw a2, 0(a1); lw a0, 0(a1))

  j pass
TEST_END

  .section .data
  .align 4
buf:
  .word 0
