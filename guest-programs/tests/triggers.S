/* triggers.S - the debug trigger CSRs (tselect, tdata1-3, tinfo) exist in
   M-mode and hold only legal values: tselect keeps 0 and cannot hold an
   index past the last trigger; the selected trigger's type (tdata1[31:28])
   is 0 (none) or a type tinfo lists; writing 0 to tdata1 leaves a legal type.
   QEMU has two address-match triggers; Ferry has none (type 0, tinfo 1).
   Both pass. */
#include "macros.h"

#define TINFO 0x7a4 /* clang 14 has no name for it */

/* a0 = 1 if the type in tdata1 is listed in tinfo (or is 0 with tinfo bit 0) */
#define TYPE_LISTED                                                      \
  csrr a1, tdata1;                                                       \
  srli a1, a1, 28;                                                       \
  csrr a2, TINFO;                                                        \
  srl a2, a2, a1;                                                        \
  andi a0, a2, 1

TEST_BEGIN
  TEST_CASE(2, a0, 0, csrw tselect, zero; csrr a0, tselect)
  TEST_CASE(3, a0, 1, TYPE_LISTED)
  /* tselect is WARL: an index past the last trigger does not stick */
  TEST_CASE(4, a0, 0, li a1, -1; csrw tselect, a1; csrr a2, tselect; xor a0, a1, a2; seqz a0, a0)
  TEST_CASE(5, a0, 0, csrw tselect, zero; csrr a0, tselect)
  /* tdata1 = 0 leaves a legal type; tdata2 and tdata3 can be read */
  TEST_CASE(6, a0, 1, csrw tdata1, zero; TYPE_LISTED)
  TEST_CASE(7, a0, 0, csrr a1, tdata2; csrr a2, tdata3; li a0, 0)
  /* tinfo lists at least one type */
  TEST_CASE(8, a0, 1, csrr a0, TINFO; snez a0, a0)

  j pass
TEST_END
