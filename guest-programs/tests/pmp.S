/* pmp.S - the PMP registers as QEMU virt has them (16 entries, 4-byte grain):
   pmpcfg0..3 and pmpaddr0..15 read 0 at reset; an unlocked entry keeps every
   bit written (WARL with all values legal, reserved bits included); a locked
   entry (L) ignores writes to its config byte and its address, and a locked
   TOR entry also freezes the address below it; the lock lasts until reset.
   Entries locked here are OFF or a TOR range over [0x4000, 0x8000), where
   nothing is mapped, so M-mode loses nothing it uses. */
#include "macros.h"

#define PMP_L 0x80
#define PMP_TOR 0x08

TEST_BEGIN
  /* reset values */
  TEST_CASE(2, a0, 0, csrr a0, pmpcfg0)
  TEST_CASE(3, a0, 0, csrr a0, pmpcfg1)
  TEST_CASE(4, a0, 0, csrr a0, pmpcfg2)
  TEST_CASE(5, a0, 0, csrr a0, pmpcfg3)
  TEST_CASE(6, a0, 0, csrr a0, pmpaddr0)
  TEST_CASE(7, a0, 0, csrr a0, pmpaddr7)
  TEST_CASE(8, a0, 0, csrr a0, pmpaddr15)

  /* unlocked: every bit kept, the reserved R=0 W=1 combination and bits 5-6 too */
  TEST_CASE(10, a0, 0x7f7f7f7f, li a1, 0x7f7f7f7f; csrw pmpcfg0, a1; csrr a0, pmpcfg0)
  TEST_CASE(11, a0, 0x02020202, li a1, 0x02020202; csrw pmpcfg0, a1; csrr a0, pmpcfg0)
  TEST_CASE(12, a0, 0x1f1b1713, li a1, 0x1f1b1713; csrw pmpcfg0, a1; csrr a0, pmpcfg0)
  TEST_CASE(13, a0, 0x0000000f, li a1, 0x00000f00; csrrw a0, pmpcfg2, a1; csrwi pmpcfg2, 0xf; csrr a0, pmpcfg2)
  TEST_CASE(14, a0, 0, csrw pmpcfg0, zero; csrw pmpcfg2, zero; csrr a0, pmpcfg0)
  TEST_CASE(15, a0, 0xffffffff, li a1, -1; csrw pmpaddr0, a1; csrr a0, pmpaddr0)
  TEST_CASE(16, a0, 0x12345678, li a1, 0x12345678; csrw pmpaddr1, a1; csrr a0, pmpaddr1)
  TEST_CASE(17, a0, 0xffffffff, li a1, -1; csrw pmpaddr15, a1; csrr a0, pmpaddr15)
  TEST_CASE(18, a0, 0x0f000000, li a1, 0x0f000000; csrw pmpcfg3, a1; csrr a0, pmpcfg3)
  /* csrrs/csrrc on a config register */
  TEST_CASE(19, a0, 0x0f000001, csrsi pmpcfg3, 1; csrr a0, pmpcfg3)
  TEST_CASE(20, a0, 0x00000001, li a1, 0x0f000000; csrc pmpcfg3, a1; csrr a0, pmpcfg3)
  TEST_CASE(21, a0, 0, csrw pmpcfg3, zero; csrw pmpaddr0, zero; csrw pmpaddr1, zero; csrw pmpaddr15, zero;
            csrr a0, pmpaddr15)

  /* lock: entry 4 locked OFF, entry 5 locked TOR over [pmpaddr4 << 2, pmpaddr5 << 2) */
  TEST_CASE(30, a0, 0x00008880, li a1, 0x1000; csrw pmpaddr4, a1; li a1, 0x2000; csrw pmpaddr5, a1;
            li a1, 0x3000; csrw pmpaddr6, a1;
            li a1, ((PMP_L | PMP_TOR) << 8) | PMP_L; csrw pmpcfg1, a1; csrr a0, pmpcfg1)
  TEST_CASE(31, a0, 0x1000, li a1, 0x5555; csrw pmpaddr4, a1; csrr a0, pmpaddr4)
  TEST_CASE(32, a0, 0x2000, li a1, 0x6666; csrw pmpaddr5, a1; csrr a0, pmpaddr5)
  /* the entry above a locked TOR entry is not locked */
  TEST_CASE(33, a0, 0x7777, li a1, 0x7777; csrw pmpaddr6, a1; csrr a0, pmpaddr6)
  /* locked config bytes keep their value; the unlocked bytes of the same register change */
  TEST_CASE(34, a0, 0x0f0f8880, li a1, 0x0f0f0f0f; csrw pmpcfg1, a1; csrr a0, pmpcfg1)
  TEST_CASE(35, a0, 0x00008880, csrw pmpcfg1, zero; csrr a0, pmpcfg1)
  /* a TOR entry locks only the address below it: entry 3's address stays writable */
  TEST_CASE(36, a0, 0x4444, li a1, 0x4444; csrw pmpaddr3, a1; csrr a0, pmpaddr3; csrw pmpaddr3, zero)

  j pass
TEST_END
