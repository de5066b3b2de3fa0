/* uart-irq.S - the UART's interrupt as on QEMU virt: enabling "transmitter
   empty" (IER bit 1) while THR is empty raises it, IIR reports it (0x02) and
   reading IIR acknowledges it; writing THR raises it again; FIFO-enabled IIR
   has bits 7:6 set; the line is PLIC source 10, claimed, completed, and taken
   as a machine external interrupt. Prints one newline. */
#include "macros.h"

#define UART 0x10000000
#define IER (UART + 1)
#define IIR (UART + 2)
#define FCR (UART + 2)
#define PLIC 0x0c000000
#define PRIO10 (PLIC + 40)
#define PENDING (PLIC + 0x1000)
#define ENABLE0 (PLIC + 0x2000)
#define THRESHOLD0 (PLIC + 0x200000)
#define CLAIM0 (PLIC + 0x200004)
#define CAUSE_MEI 0x8000000b
#define MIP_MEIP 0x800

#define SB(addr, v) li a1, addr; li a2, v; sb a2, 0(a1)
#define LB(reg, addr) li a1, addr; lbu reg, 0(a1)
#define SW(addr, v) li a1, addr; li a2, v; sw a2, 0(a1)
#define LW(reg, addr) li a1, addr; lw reg, 0(a1)

TEST_BEGIN
  TEST_CASE(2, a0, 0x01, LB(a0, IIR))
  TEST_CASE(3, a0, 0, LW(a0, PENDING))
  /* enable THRE: pending at once, and the PLIC latches source 10 */
  TEST_CASE(4, a0, 0x02, SB(IER, 0x02); LB(a0, IIR))
  TEST_CASE(5, a0, 0x400, LW(a0, PENDING))
  TEST_CASE(6, a0, 0x01, LB(a0, IIR))
  /* a byte sent: empty again, pending again */
  TEST_CASE(7, a0, 0x02, SB(UART, 0x0a); LB(a0, IIR))
  TEST_CASE(8, a0, 0x01, LB(a0, IIR))
  /* disabled: nothing; enabled again while empty: pending */
  TEST_CASE(9, a0, 0x01, SB(IER, 0x00); LB(a0, IIR))
  TEST_CASE(10, a0, 0x02, SB(IER, 0x02); LB(a0, IIR))
  /* FIFOs on (bits 7:6): turning them on resets them, so the transmitter is empty anew */
  TEST_CASE(11, a0, 0xc2, SB(FCR, 0x01); LB(a0, IIR))
  TEST_CASE(12, a0, 0xc1, LB(a0, IIR))
  /* so does a transmit FIFO reset */
  TEST_CASE(13, a0, 0xc2, SB(FCR, 0x05); LB(a0, IIR))
  TEST_CASE(14, a0, 0x01, SB(IER, 0x00); SB(FCR, 0x00); LB(a0, IIR))

  /* the latched request: claimed as 10 once the source has a priority and an enable */
  TEST_CASE(20, a0, 10, SW(ENABLE0, 1 << 10); SW(PRIO10, 1); LW(a0, CLAIM0))
  TEST_CASE(21, a0, 0, SW(CLAIM0, 10); LW(a0, PENDING))

  /* taken as an interrupt */
test_30:
  li TESTNUM, 30
  SW(THRESHOLD0, 0)
  li t0, MIP_MEIP
  csrs mie, t0
  EXPECT_TRAP(8f)
  SB(IER, 0x02)
  csrsi mstatus, MSTATUS_MIE
  li t0, 10000
1: addi t0, t0, -1
  bnez t0, 1b
  j fail
8:
  CHECK(s8, CAUSE_MEI)
  TEST_CASE(31, a0, 10, LW(a0, CLAIM0))
  TEST_CASE(32, a0, 0x02, LB(a0, IIR))
  TEST_CASE(33, a0, 0, SB(IER, 0x00); SW(CLAIM0, 10); LW(a0, PENDING))
  TEST_CASE(34, a0, 0, csrw mie, zero; csrr a0, mip; li a1, MIP_MEIP; and a0, a0, a1)

  j pass
TEST_END
