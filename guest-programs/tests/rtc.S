/* rtc.S - QEMU virt's goldfish RTC and its interrupt through the PLIC:
   time in ns that never goes back and can be set (TIME_HIGH at once,
   TIME_LOW latching the high word for the next read), IRQ_ENABLED bit 0,
   an alarm in the past fires at once, one in the future runs until cleared,
   and a fired alarm with its interrupt enabled is PLIC source 11: pending,
   mip.MEIP above the threshold, claimed, completed, and taken as machine
   external interrupt (mcause 0x8000000b). Aligned words only. */
#include "macros.h"

#define RTC 0x101000
#define TIME_LOW (RTC + 0x00)
#define TIME_HIGH (RTC + 0x04)
#define ALARM_LOW (RTC + 0x08)
#define ALARM_HIGH (RTC + 0x0c)
#define IRQ_ENABLED (RTC + 0x10)
#define CLEAR_ALARM (RTC + 0x14)
#define ALARM_STATUS (RTC + 0x18)
#define CLEAR_INTERRUPT (RTC + 0x1c)
#define PLIC 0x0c000000
#define PRIO11 (PLIC + 44)
#define PENDING (PLIC + 0x1000)
#define ENABLE0 (PLIC + 0x2000)
#define THRESHOLD0 (PLIC + 0x200000)
#define CLAIM0 (PLIC + 0x200004)
#define MIP_MEIP 0x800
#define CAUSE_MEI 0x8000000b

#define ST(addr, v) li a1, addr; li a2, v; sw a2, 0(a1)
#define LD(reg, addr) li a1, addr; lw reg, 0(a1)
#define MEIP(reg) csrr reg, mip; li a3, MIP_MEIP; and reg, reg, a3

TEST_BEGIN
  /* time never goes back: (s1:s0) then (s3:s2) */
test_2:
  li TESTNUM, 2
  LD(s0, TIME_LOW)
  LD(s1, TIME_HIGH)
  li t0, 100
1: addi t0, t0, -1
  bnez t0, 1b
  LD(s2, TIME_LOW)
  LD(s3, TIME_HIGH)
  bltu s1, s3, 2f
  bne s1, s3, fail
  bltu s2, s0, fail
2:
  /* setting it: TIME_LOW = 0, then TIME_HIGH takes effect at once */
  TEST_CASE(3, a0, 0x12345, ST(TIME_LOW, 0); ST(TIME_HIGH, 0x12345); LD(a4, TIME_LOW); LD(a0, TIME_HIGH))
  TEST_CASE(4, a0, 1, li a1, 0x10000000; sltu a0, a4, a1)
  /* IRQ_ENABLED keeps bit 0 */
  TEST_CASE(5, a0, 0, ST(IRQ_ENABLED, 2); LD(a0, IRQ_ENABLED))
  TEST_CASE(6, a0, 1, ST(IRQ_ENABLED, 3); LD(a0, IRQ_ENABLED))
  TEST_CASE(7, a0, 0, ST(IRQ_ENABLED, 0); LD(a0, IRQ_ENABLED))

  /* an alarm in the future (about 4.9 hours on, set since case 3) runs until cleared, and reads
     back; not much further: QEMU adds it to its host clock in signed 64-bit ns, where centuries overflow */
  TEST_CASE(10, a0, 1, ST(ALARM_HIGH, 0x12345 + 0x1000); ST(ALARM_LOW, 0x55); LD(a0, ALARM_STATUS))
  TEST_CASE(11, a0, 0x12345 + 0x1000, LD(a0, ALARM_HIGH))
  TEST_CASE(12, a0, 0x55, LD(a0, ALARM_LOW))
  TEST_CASE(13, a0, 0, ST(CLEAR_ALARM, 1); LD(a0, ALARM_STATUS))
  /* one in the past fires at once; with the interrupt disabled, the PLIC sees nothing */
  TEST_CASE(14, a0, 0, ST(ALARM_HIGH, 0); ST(ALARM_LOW, 5); LD(a0, ALARM_STATUS))
  TEST_CASE(15, a0, 0, LD(a0, PENDING))
  /* enabling the interrupt raises source 11 */
  TEST_CASE(16, a0, 0x800, ST(IRQ_ENABLED, 1); LD(a0, PENDING))
  /* not enabled in context 0, or priority 0: no MEIP, and claim finds nothing */
  TEST_CASE(17, a0, 0, MEIP(a0))
  TEST_CASE(18, a0, 0, ST(ENABLE0, 1 << 11); LD(a0, CLAIM0))
  /* priority 2 against threshold 2: still nothing; threshold 1: MEIP */
  TEST_CASE(19, a0, 0, ST(PRIO11, 2); ST(THRESHOLD0, 2); MEIP(a0))
  TEST_CASE(20, a0, MIP_MEIP, ST(THRESHOLD0, 1); MEIP(a0))
  /* claim takes it: pending clears, a second claim finds nothing */
  TEST_CASE(21, a0, 11, LD(a0, CLAIM0))
  TEST_CASE(22, a0, 0, LD(a0, PENDING))
  TEST_CASE(23, a0, 0, LD(a0, CLAIM0))
  TEST_CASE(24, a0, 0, MEIP(a0))
  /* the device lowers its line, the handler completes: quiet */
  TEST_CASE(25, a0, 0, ST(CLEAR_INTERRUPT, 1); ST(CLAIM0, 11); LD(a0, PENDING))
  TEST_CASE(26, a0, 0, MEIP(a0))

  /* taken as an interrupt: mie.MEIE and mstatus.MIE, then an alarm due now */
test_30:
  li TESTNUM, 30
  ST(THRESHOLD0, 0)
  li t0, MIP_MEIP
  csrs mie, t0
  EXPECT_TRAP(8f)
  ST(ALARM_LOW, 7)
  csrsi mstatus, MSTATUS_MIE
  li t0, 10000          /* QEMU takes it at once, Ferry within a few instructions */
1: addi t0, t0, -1
  bnez t0, 1b
  j fail
8:
  CHECK(s8, CAUSE_MEI)
  TEST_CASE(31, a0, 11, LD(a0, CLAIM0))
  TEST_CASE(32, a0, 0, ST(CLEAR_INTERRUPT, 1); ST(CLAIM0, 11); ST(IRQ_ENABLED, 0); MEIP(a0))
  TEST_CASE(33, a0, 0, csrw mie, zero; LD(a0, PENDING))

  /* aligned words only; the registers end at 0x24 */
  TEST_TRAP(40, CAUSE_LOAD_ACCESS, li a1, RTC; lbu a0, 0(a1))
  TEST_TRAP(41, CAUSE_LOAD_ACCESS, li a1, RTC + 0x24; lw a0, 0(a1))
  TEST_CASE(42, a0, 0, li a1, RTC + 0x20; lw a0, 0(a1))

  j pass
TEST_END
