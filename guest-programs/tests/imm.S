/* imm.S - register-immediate ALU ops and upper immediates:
   addi slti sltiu xori ori andi slli srli srai lui auipc.
   Covers 12-bit immediate sign extension, x0 destination, shifts by 31. */
#include "macros.h"

TEST_BEGIN
  /* addi */
  TEST_IMM_OP(2, addi, 0x00000000, 0x00000000, 0)
  TEST_IMM_OP(3, addi, 0x00000002, 0x00000001, 1)
  TEST_IMM_OP(4, addi, 0x0000000a, 0x00000003, 7)
  TEST_IMM_OP(5, addi, 0xfffff800, 0x00000000, -2048)
  TEST_IMM_OP(6, addi, 0x000007ff, 0x00000000, 2047)
  TEST_IMM_OP(7, addi, 0x80000000, 0x7fffffff, 1)
  TEST_IMM_OP(8, addi, 0x7fffffff, 0x80000000, -1)
  TEST_IMM_OP(9, addi, 0x00000000, 0xffffffff, 1)
  TEST_IMM_SRC1_EQ_DEST(10, addi, 0x00ff08e0, 0x00ff00f0, 2032)
  TEST_IMM_ZEROSRC1(11, addi, 0x000007f0, 2032)
  TEST_IMM_ZERODEST(12, addi, 0x00ff00f0, 2032)
  /* slti */
  TEST_IMM_OP(13, slti, 0x00000000, 0x00000000, 0)
  TEST_IMM_OP(14, slti, 0x00000000, 0x00000001, 1)
  TEST_IMM_OP(15, slti, 0x00000001, 0x00000003, 7)
  TEST_IMM_OP(16, slti, 0x00000000, 0x00000007, 3)
  TEST_IMM_OP(17, slti, 0x00000000, 0x00000000, -2048)
  TEST_IMM_OP(18, slti, 0x00000001, 0x80000000, 0)
  TEST_IMM_OP(19, slti, 0x00000000, 0x7fffffff, -1)
  TEST_IMM_OP(20, slti, 0x00000000, 0xffffffff, -1)
  TEST_IMM_OP(21, slti, 0x00000001, 0xfffffffe, -1)
  TEST_IMM_SRC1_EQ_DEST(22, slti, 0x00000000, 0x00ff00f0, 2032)
  TEST_IMM_ZEROSRC1(23, slti, 0x00000001, 2032)
  TEST_IMM_ZERODEST(24, slti, 0x00ff00f0, 2032)
  /* sltiu */
  TEST_IMM_OP(25, sltiu, 0x00000000, 0x00000000, 0)
  TEST_IMM_OP(26, sltiu, 0x00000000, 0x00000001, 1)
  TEST_IMM_OP(27, sltiu, 0x00000001, 0x00000003, 7)
  TEST_IMM_OP(28, sltiu, 0x00000000, 0x00000007, 3)
  TEST_IMM_OP(29, sltiu, 0x00000001, 0x00000000, -2048)
  TEST_IMM_OP(30, sltiu, 0x00000000, 0x80000000, 0)
  TEST_IMM_OP(31, sltiu, 0x00000001, 0xfffffffe, -1)
  TEST_IMM_OP(32, sltiu, 0x00000000, 0xffffffff, -1)
  TEST_IMM_OP(33, sltiu, 0x00000001, 0x00000000, 1)
  TEST_IMM_SRC1_EQ_DEST(34, sltiu, 0x00000000, 0x00ff00f0, 2032)
  TEST_IMM_ZEROSRC1(35, sltiu, 0x00000001, 2032)
  TEST_IMM_ZERODEST(36, sltiu, 0x00ff00f0, 2032)
  /* xori */
  TEST_IMM_OP(37, xori, 0xff00f00f, 0x00ff0f00, -241)
  TEST_IMM_OP(38, xori, 0x00ff0ff0, 0x00ff08ff, 1807)
  TEST_IMM_OP(39, xori, 0xf00ff00f, 0x0ff00ff0, -1)
  TEST_IMM_OP(40, xori, 0xf00ff0ff, 0xf00ff00f, 240)
  TEST_IMM_SRC1_EQ_DEST(41, xori, 0x00ff0700, 0x00ff00f0, 2032)
  TEST_IMM_ZEROSRC1(42, xori, 0x000007f0, 2032)
  TEST_IMM_ZERODEST(43, xori, 0x00ff00f0, 2032)
  /* ori */
  TEST_IMM_OP(44, ori, 0xffffff0f, 0xff00ff00, -241)
  TEST_IMM_OP(45, ori, 0x0ff00ff0, 0x0ff00ff0, 240)
  TEST_IMM_OP(46, ori, 0x00ff07ff, 0x00ff00ff, 1807)
  TEST_IMM_OP(47, ori, 0xfffff80f, 0xf00ff00f, -2048)
  TEST_IMM_SRC1_EQ_DEST(48, ori, 0x00ff07f0, 0x00ff00f0, 2032)
  TEST_IMM_ZEROSRC1(49, ori, 0x000007f0, 2032)
  TEST_IMM_ZERODEST(50, ori, 0x00ff00f0, 2032)
  /* andi */
  TEST_IMM_OP(51, andi, 0xff00ff00, 0xff00ff00, -241)
  TEST_IMM_OP(52, andi, 0x000000f0, 0x0ff00ff0, 240)
  TEST_IMM_OP(53, andi, 0x0000000f, 0x00ff00ff, 1807)
  TEST_IMM_OP(54, andi, 0xf00ff000, 0xf00ff00f, -2048)
  TEST_IMM_SRC1_EQ_DEST(55, andi, 0x000000f0, 0x00ff00f0, 2032)
  TEST_IMM_ZEROSRC1(56, andi, 0x00000000, 2032)
  TEST_IMM_ZERODEST(57, andi, 0x00ff00f0, 2032)
  /* slli */
  TEST_IMM_OP(58, slli, 0x00000001, 0x00000001, 0)
  TEST_IMM_OP(59, slli, 0x00000002, 0x00000001, 1)
  TEST_IMM_OP(60, slli, 0x00000080, 0x00000001, 7)
  TEST_IMM_OP(61, slli, 0x80000000, 0x00000001, 31)
  TEST_IMM_OP(62, slli, 0xffffc000, 0xffffffff, 14)
  TEST_IMM_OP(63, slli, 0x80000000, 0x21212121, 31)
  TEST_IMM_SRC1_EQ_DEST(64, slli, 0x1fe01e00, 0x00ff00f0, 5)
  TEST_IMM_ZEROSRC1(65, slli, 0x00000000, 5)
  TEST_IMM_ZERODEST(66, slli, 0x00ff00f0, 5)
  /* srli */
  TEST_IMM_OP(67, srli, 0x80000000, 0x80000000, 0)
  TEST_IMM_OP(68, srli, 0x40000000, 0x80000000, 1)
  TEST_IMM_OP(69, srli, 0x01000000, 0x80000000, 7)
  TEST_IMM_OP(70, srli, 0x00000001, 0x80000000, 31)
  TEST_IMM_OP(71, srli, 0x0003ffff, 0xffffffff, 14)
  TEST_IMM_OP(72, srli, 0x00000000, 0x21212121, 31)
  TEST_IMM_SRC1_EQ_DEST(73, srli, 0x0007f807, 0x00ff00f0, 5)
  TEST_IMM_ZEROSRC1(74, srli, 0x00000000, 5)
  TEST_IMM_ZERODEST(75, srli, 0x00ff00f0, 5)
  /* srai */
  TEST_IMM_OP(76, srai, 0x80000000, 0x80000000, 0)
  TEST_IMM_OP(77, srai, 0xc0000000, 0x80000000, 1)
  TEST_IMM_OP(78, srai, 0xff000000, 0x80000000, 7)
  TEST_IMM_OP(79, srai, 0xffffffff, 0x80000000, 31)
  TEST_IMM_OP(80, srai, 0x00000000, 0x7fffffff, 31)
  TEST_IMM_OP(81, srai, 0xfffe0606, 0x81818181, 14)
  TEST_IMM_OP(82, srai, 0x3fffffff, 0x7fffffff, 1)
  TEST_IMM_SRC1_EQ_DEST(83, srai, 0x0007f807, 0x00ff00f0, 5)
  TEST_IMM_ZEROSRC1(84, srai, 0x00000000, 5)
  TEST_IMM_ZERODEST(85, srai, 0x00ff00f0, 5)

  /* lui */
  TEST_CASE(100, a0, 0x00000000, lui a0, 0)
  TEST_CASE(101, a0, 0xfffff000, lui a0, 0xfffff)
  TEST_CASE(102, a0, 0x80000000, lui a0, 0x80000)
  TEST_CASE(103, a0, 0x7ffff000, lui a0, 0x7ffff)
  TEST_CASE(104, a0, 0x12345000, li a0, -1; lui a0, 0x12345)   /* low 12 bits cleared */
  TEST_CASE(105, x0, 0, lui x0, 0x80000)

  /* auipc: result relative to the auipc's own address */
  TEST_CASE(110, a0, 0x00000000, 1: auipc a0, 0; la a1, 1b; sub a0, a0, a1)
  TEST_CASE(111, a0, 0x00001000, 1: auipc a0, 1; la a1, 1b; sub a0, a0, a1)
  TEST_CASE(112, a0, 0xfffff000, 1: auipc a0, 0xfffff; la a1, 1b; sub a0, a0, a1)
  TEST_CASE(113, a0, 0x80000000, 1: auipc a0, 0x80000; la a1, 1b; sub a0, a0, a1)
  TEST_CASE(114, a0, 0x80000000, auipc a0, 0; li a1, 0xfffff000; and a0, a0, a1; li a1, 0xf8000000; and a0, a0, a1)  /* we run in RAM */
  TEST_CASE(115, x0, 0, auipc x0, 0x12345)

  /* nop = addi x0, x0, 0 leaves everything alone */
  TEST_CASE(120, a0, 0x5a5a5a5a, li a0, 0x5a5a5a5a; nop; addi x0, a0, 1)

  j pass
TEST_END
