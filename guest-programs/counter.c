/* counter: prints "tick N" every period_ms (default 500) from the machine
   timer interrupt + wfi. Deadlines advance from the previous deadline, so
   there is no drift; N counts 1, 2, 3, ... without repeats or gaps.
   Args: period_ms (default 500), ticks (default 0 = forever; else power off
   with exit 0 after printing that many ticks). */
#include "ferry.h"

static uint64_t period;
static uint64_t deadline;
static volatile uint32_t ticks_due; /* incremented by the interrupt handler */

void timer_interrupt(void) {
  ticks_due++;
  deadline += period;
  mtimecmp_write(deadline);
}

int main(void) {
  uint32_t period_ms = arg_uint("period_ms", 500);
  uint32_t max_ticks = arg_uint("ticks", 0);
  if (period_ms == 0) period_ms = 1;
  period = ms_to_ticks(period_ms);

  csr_clear(mstatus, MSTATUS_MIE);
  deadline = mtime_read() + period;
  mtimecmp_write(deadline);
  csr_set(mie, MIE_MTIE);

  uint32_t printed = 0;
  for (;;) {
    /* mstatus.MIE is clear here: wfi still wakes on the pending interrupt,
       which is then taken while MIE is briefly set (no lost wake-ups). */
    wfi();
    csr_set(mstatus, MSTATUS_MIE);
    csr_clear(mstatus, MSTATUS_MIE);
    while (printed < ticks_due) {
      printed++;
      printf("tick %u\n", printed);
      if (max_ticks && printed >= max_ticks) poweroff(0);
    }
  }
}
