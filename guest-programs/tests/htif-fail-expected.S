/* htif-fail-expected.S - Ferry only. EXPECTED TO FAIL: test 2 passes, test 3
   deliberately mismatches, so the program writes (3 << 1) | 1 = 7 to tohost
   and Ferry must report failure with test number 3. QEMU virt has no HTIF:
   there it just spins. */
#include "macros.h"

TEST_BEGIN
  TEST_RR_OP(2, add, 0x00000003, 1, 2)
  TEST_RR_OP(3, add, 0x00000005, 1, 2)   /* wrong on purpose: 1 + 2 != 5 */
  TEST_RR_OP(4, add, 0x00000003, 1, 2)   /* never reached */
  j pass
TEST_END_HTIF
