/* virtio-mmio.S - QEMU virt's eight virtio-mmio slots with nothing behind
   them: magic "virt", version 1 (legacy), device id 0 (no device), vendor
   "QEMU", everything else 0 and writes ignored; 0x200 bytes each, and any
   access width reads the register at exactly that offset. */
#include "macros.h"

#define SLOT(n) (0x10001000 + 0x1000 * (n))
#define MAGIC 0x74726976
#define VENDOR 0x554d4551

/* a0 = 1 if slot n reads as an empty transport */
#define EMPTY_SLOT(n)                                                    \
  li a1, SLOT(n);                                                        \
  li a0, 0;                                                              \
  lw a2, 0(a1); li a3, MAGIC; bne a2, a3, 1f;                            \
  lw a2, 4(a1); li a3, 1; bne a2, a3, 1f;                                \
  lw a2, 8(a1); bnez a2, 1f;                                             \
  lw a2, 12(a1); li a3, VENDOR; bne a2, a3, 1f;                          \
  li a0, 1;                                                              \
1:

TEST_BEGIN
  TEST_CASE(2, a0, 1, EMPTY_SLOT(0))
  TEST_CASE(3, a0, 1, EMPTY_SLOT(1))
  TEST_CASE(4, a0, 1, EMPTY_SLOT(2))
  TEST_CASE(5, a0, 1, EMPTY_SLOT(3))
  TEST_CASE(6, a0, 1, EMPTY_SLOT(4))
  TEST_CASE(7, a0, 1, EMPTY_SLOT(5))
  TEST_CASE(8, a0, 1, EMPTY_SLOT(6))
  TEST_CASE(9, a0, 1, EMPTY_SLOT(7))
  /* the rest reads 0, and writes do not stick */
  TEST_CASE(10, a0, 0, li a1, SLOT(7); lw a0, 0x34(a1))
  TEST_CASE(11, a0, 0, li a1, SLOT(7); lw a0, 0x1fc(a1))
  TEST_CASE(12, a0, 0, li a1, SLOT(0); li a2, 0xff; sw a2, 0x70(a1); lw a0, 0x70(a1))
  TEST_CASE(13, a0, 0, li a1, SLOT(0); li a2, 1; sw a2, 0x14(a1); lw a0, 0x14(a1))
  /* narrower reads */
  TEST_CASE(14, a0, 0x76, li a1, SLOT(0); lbu a0, 0(a1))
  TEST_CASE(15, a0, 0x6976, li a1, SLOT(0); lhu a0, 0(a1))
  TEST_CASE(16, a0, 0, li a1, SLOT(0); lbu a0, 1(a1))
  /* the map: 0x200 bytes a slot, nothing after the eighth */
  TEST_TRAP(20, CAUSE_LOAD_ACCESS, li a1, SLOT(0); lw a0, 0x200(a1))
  TEST_TRAP(21, CAUSE_LOAD_ACCESS, li a1, SLOT(8); lw a0, 0(a1))

  j pass
TEST_END
