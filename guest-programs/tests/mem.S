/* mem.S - lb lh lw lbu lhu sb sh sw: sign/zero extension, positive and
   negative offsets, x0 destination, rd == rs1, store width (only the
   addressed bytes change), value truncation, and misaligned loads/stores
   (carried out, not trapped, on both Ferry and QEMU), including a
   misaligned word that straddles a 4 KiB page boundary. */
#include "macros.h"

TEST_BEGIN
  /* lb / lbu: tdat+0.. = ff 00 f0 0f */
  TEST_LD(2, lb, 0xffffffff, 0, tdat)
  TEST_LD(3, lb, 0x00000000, 1, tdat)
  TEST_LD(4, lb, 0xfffffff0, 2, tdat)
  TEST_LD(5, lb, 0x0000000f, 3, tdat)
  TEST_LD(6, lbu, 0x000000ff, 0, tdat)
  TEST_LD(7, lbu, 0x00000000, 1, tdat)
  TEST_LD(8, lbu, 0x000000f0, 2, tdat)
  TEST_LD(9, lbu, 0x0000000f, 3, tdat)
  TEST_LD(10, lb, 0xffffffff, -3, tdat + 3)
  TEST_LD(11, lbu, 0x000000f0, -1, tdat + 3)
  /* lh / lhu: tdat+4.. = 00ff ff00 0ff0 f00f */
  TEST_LD(12, lh, 0x000000ff, 4, tdat)
  TEST_LD(13, lh, 0xffffff00, 6, tdat)
  TEST_LD(14, lh, 0x00000ff0, 8, tdat)
  TEST_LD(15, lh, 0xfffff00f, 10, tdat)
  TEST_LD(16, lhu, 0x000000ff, 4, tdat)
  TEST_LD(17, lhu, 0x0000ff00, 6, tdat)
  TEST_LD(18, lhu, 0x00000ff0, 8, tdat)
  TEST_LD(19, lhu, 0x0000f00f, 10, tdat)
  TEST_LD(20, lh, 0xffffff00, -6, tdat + 12)
  /* lw: tdat+12.. = 00ff00ff ff00ff00 0ff00ff0 f00ff00f */
  TEST_LD(21, lw, 0x00ff00ff, 12, tdat)
  TEST_LD(22, lw, 0xff00ff00, 16, tdat)
  TEST_LD(23, lw, 0x0ff00ff0, 20, tdat)
  TEST_LD(24, lw, 0xf00ff00f, 24, tdat)
  TEST_LD(25, lw, 0xff00ff00, -8, tdat + 24)
  TEST_LD(26, lw, 0x00ff00ff, 2047, tdat - 2035)
  TEST_LD(27, lw, 0x00ff00ff, -2048, tdat + 2060)
  /* x0 destination, rd == rs1 */
  TEST_CASE(28, x0, 0, la a1, tdat; lw x0, 12(a1))
  TEST_CASE(29, a1, 0xff00ff00, la a1, tdat; lw a1, 16(a1))
  TEST_CASE(30, a1, 0xfffffff0, la a1, tdat; lb a1, 2(a1))

  /* stores */
  TEST_ST(40, sw, lw, 0xaa00aa00, 0xaa00aa00, 0, sbuf)
  TEST_ST(41, sw, lw, 0x00aa00aa, 0x00aa00aa, -4, sbuf + 8)
  TEST_ST(42, sh, lh, 0xffffaa00, 0xaa00, 8, sbuf)
  TEST_ST(43, sh, lhu, 0x0000a00a, 0xa00a, 10, sbuf)
  TEST_ST(44, sb, lb, 0xffffffaa, 0xaa, 12, sbuf)
  TEST_ST(45, sb, lbu, 0x000000a0, 0xa0, 13, sbuf)
  TEST_ST(46, sb, lbu, 0x00000078, 0x12345678, 14, sbuf)     /* truncated */
  TEST_ST(47, sh, lhu, 0x00005678, 0x12345678, 16, sbuf)     /* truncated */
  /* only the addressed bytes change */
  TEST_CASE(48, a0, 0x1122aa44, la a1, sbuf; li a2, 0x11223344; sw a2, 20(a1);
            li a2, 0xaa; sb a2, 21(a1); lw a0, 20(a1))
  TEST_CASE(49, a0, 0xbeef3344, la a1, sbuf; li a2, 0x11223344; sw a2, 24(a1);
            li a2, 0xbeef; sh a2, 26(a1); lw a0, 24(a1))
  TEST_CASE(50, a0, 0x11223344, la a1, sbuf; li a2, 0x11223344; sw a2, 28(a1);
            sw x0, 32(a1); sb x0, 27(a1); lw a0, 28(a1))
  TEST_CASE(51, a0, 0, la a1, sbuf; li a2, -1; sw a2, 32(a1); sw x0, 32(a1); lw a0, 32(a1))

  /* misaligned loads (performed) */
  TEST_LD(60, lw, 0xff0ff000, 1, tdat)
  TEST_LD(61, lw, 0x00ff0ff0, 2, tdat)
  TEST_LD(62, lw, 0x0000ff0f, 3, tdat)
  TEST_LD(63, lw, 0x0ff0ff00, 6, tdat)
  TEST_LD(64, lw, 0xfff00f0f, 9, tdat)
  TEST_LD(65, lh, 0xfffff000, 1, tdat)
  TEST_LD(66, lhu, 0x0000f000, 1, tdat)
  TEST_LD(67, lh, 0xffffff0f, 3, tdat)
  TEST_LD(68, lhu, 0x0000ff0f, 3, tdat)
  TEST_LD(69, lh, 0xfffff0ff, 7, tdat)

  /* misaligned stores (performed) */
  TEST_CASE(70, a0, 0x22334400, la a1, mbuf; sw x0, 0(a1); sw x0, 4(a1);
            li a2, 0x11223344; sw a2, 1(a1); lw a0, 0(a1))
  TEST_CASE(71, a0, 0x00000011, la a1, mbuf; lw a0, 4(a1))
  TEST_CASE(72, a0, 0x11223344, la a1, mbuf; lw a0, 1(a1))
  TEST_CASE(73, a0, 0xbeef1122, la a1, mbuf; li a2, 0xbeef; sh a2, 5(a1); lw a0, 3(a1))
  TEST_CASE(74, a0, 0xffffbeef, la a1, mbuf; lh a0, 5(a1))
  TEST_CASE(75, a0, 0x0000ef11, la a1, mbuf; lhu a0, 4(a1))

  /* misaligned word straddling a page boundary */
  TEST_CASE(80, a0, 0x44332211, la a1, pagebuf + 4096 - 2; li a2, 0x44332211;
            sw a2, 0(a1); lw a0, 0(a1))
  TEST_CASE(81, a0, 0x00002211, la a1, pagebuf + 4096 - 2; lhu a0, 0(a1))
  TEST_CASE(82, a0, 0x00004433, la a1, pagebuf + 4096; lhu a0, 0(a1))
  TEST_CASE(83, a0, 0x00443322, la a1, pagebuf + 4096 - 1; sw x0, 3(a1); lw a0, 0(a1))

  j pass
TEST_END

  .section .data
  .align 4
tdat:
  .byte 0xff, 0x00, 0xf0, 0x0f
  .half 0x00ff, 0xff00, 0x0ff0, 0xf00f
  .word 0x00ff00ff, 0xff00ff00, 0x0ff00ff0, 0xf00ff00f
  .align 4
sbuf:
  .space 64
mbuf:
  .space 16
  .align 12
pagebuf:
  .space 8192
