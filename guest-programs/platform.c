/* platform: uses the machine state a migration carries besides RAM and the general registers.
 * It sets PMP entries, programs the PLIC (priorities, enables and thresholds of both contexts)
 * and the goldfish RTC (its time, then an alarm every period_us), and takes the alarm as a
 * machine external interrupt through the PLIC: claim, clear, re-arm, complete. Meanwhile it
 * stirs a buffer. Args: period_us (default 1000); every (report every that many interrupts,
 * default 0 = never); limit (power off after that many, default 500; 0 = never). With the
 * defaults its output does not depend on timing, so QEMU prints the same (test/vm/qemu.test.ts). */
#include "ferry.h"

#define PLIC 0x0c000000u
#define PLIC_PRIO(n) (PLIC + 4u * (n))
#define PLIC_ENABLE(ctx) (PLIC + 0x2000u + 0x80u * (ctx))
#define PLIC_THRESHOLD(ctx) (PLIC + 0x200000u + 0x1000u * (ctx))
#define PLIC_CLAIM(ctx) (PLIC_THRESHOLD(ctx) + 4u)
#define RTC 0x101000u
#define RTC_TIME_LOW (RTC + 0x00)
#define RTC_TIME_HIGH (RTC + 0x04)
#define RTC_ALARM_LOW (RTC + 0x08)
#define RTC_ALARM_HIGH (RTC + 0x0c)
#define RTC_IRQ_ENABLED (RTC + 0x10)
#define RTC_CLEAR_INTERRUPT (RTC + 0x1c)
#define RTC_IRQ 11u
#define MIE_MEIE (1u << 11)
#define MCAUSE_MEI 0x8000000bu

#define MMIO32(a) (*(volatile uint32_t *)(uintptr_t)(a))

static uint32_t period_ns;
static volatile uint32_t interrupts;
static uint32_t buf[16384];

static uint64_t rtc_now(void) {
  uint32_t lo = MMIO32(RTC_TIME_LOW); /* latches the high word */
  return ((uint64_t)MMIO32(RTC_TIME_HIGH) << 32) | lo;
}

static void rtc_alarm_at(uint64_t t) {
  MMIO32(RTC_ALARM_HIGH) = (uint32_t)(t >> 32);
  MMIO32(RTC_ALARM_LOW) = (uint32_t)t;
}

void trap_handler(uint32_t mcause, uint32_t mepc, uint32_t mtval) {
  if (mcause != MCAUSE_MEI) {
    printf("platform: unexpected trap mcause=0x%08x mepc=0x%08x mtval=0x%08x\n", (unsigned)mcause, (unsigned)mepc, (unsigned)mtval);
    poweroff(0x7f);
  }
  uint32_t irq = MMIO32(PLIC_CLAIM(0));
  if (irq == RTC_IRQ) {
    MMIO32(RTC_CLEAR_INTERRUPT) = 1;
    rtc_alarm_at(rtc_now() + period_ns);
    interrupts++;
  }
  if (irq != 0) MMIO32(PLIC_CLAIM(0)) = irq;
}

int main(void) {
  period_ns = arg_uint("period_us", 1000) * 1000u;
  uint32_t every = arg_uint("every", 0);
  uint32_t limit = arg_uint("limit", 500);

  /* PMP: all memory R W X through entry 0, a few more entries set (they bind U-mode only) */
  csr_write(pmpaddr0, 0xffffffffu);
  csr_write(pmpaddr3, 0x20000400u);
  csr_write(pmpaddr9, 0x2000ffffu);
  csr_write(pmpcfg0, 0x0b00001fu); /* entry 0 NAPOT RWX, entry 3 TOR R W */
  csr_write(pmpcfg2, 0x00001900u); /* entry 9 TOR R */
  csr_write(tselect, 0);

  /* PLIC: priorities 1..12, the RTC at 3; context 0 hears the RTC above threshold 1 */
  for (uint32_t i = 1; i <= 12; i++) MMIO32(PLIC_PRIO(i)) = i & 7;
  MMIO32(PLIC_PRIO(RTC_IRQ)) = 3;
  MMIO32(PLIC_ENABLE(0)) = (1u << RTC_IRQ) | (1u << 1);
  MMIO32(PLIC_ENABLE(0) + 8) = 0x80000001u;
  MMIO32(PLIC_THRESHOLD(0)) = 1;
  MMIO32(PLIC_ENABLE(1)) = 1u << 10;
  MMIO32(PLIC_THRESHOLD(1)) = 5;

  /* RTC: 2024-01-01T00:00:00Z, then the first alarm */
  MMIO32(RTC_TIME_LOW) = 0;
  MMIO32(RTC_TIME_HIGH) = 0x17a6dc78u; /* 1704067200 s in ns, high word */
  MMIO32(RTC_IRQ_ENABLED) = 1;
  rtc_alarm_at(rtc_now() + period_ns);
  csr_set(mie, MIE_MEIE);
  csr_set(mstatus, MSTATUS_MIE);

  printf("platform: period %u us, pmpcfg0=0x%08x pmpaddr3=0x%08x\n", (unsigned)(period_ns / 1000u), (unsigned)csr_read(pmpcfg0), (unsigned)csr_read(pmpaddr3));
  uint32_t seen = 0, x = 1;
  for (uint32_t round = 0;; round++) {
    for (uint32_t i = 0; i < sizeof buf / sizeof buf[0]; i += 7) {
      x = x * 1103515245u + 12345u + round;
      buf[i] ^= x;
    }
    uint32_t n = interrupts;
    if (every != 0 && n / every != seen / every) {
      printf("platform: %u interrupts, round %u, rtc high 0x%08x\n", (unsigned)n, (unsigned)round, (unsigned)(rtc_now() >> 32));
    }
    seen = n;
    if (limit != 0 && n >= limit) break;
  }
  csr_clear(mstatus, MSTATUS_MIE);
  printf("platform: %u alarms taken through the PLIC\n", (unsigned)limit);
  return 0;
}
