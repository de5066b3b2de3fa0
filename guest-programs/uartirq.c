/* uartirq: an interrupt-driven console, as guests built for QEMU have one. The UART's receive
 * interrupt (IER bit 0), through the PLIC (source 10), wakes the hart from wfi; the handler claims
 * it, drains the receiver into a ring and completes it; the main loop echoes each line back in
 * capitals until a line "quit". The same input gives the same output on Ferry and on QEMU. */
#include "ferry.h"

#define UART8(off) (*(volatile uint8_t *)(uintptr_t)(UART_BASE + (off)))
#define MMIO32(a) (*(volatile uint32_t *)(uintptr_t)(a))
#define PLIC 0x0c000000u
#define PLIC_PRIO(n) (PLIC + 4u * (n))
#define PLIC_ENABLE0 (PLIC + 0x2000u)
#define PLIC_THRESHOLD0 (PLIC + 0x200000u)
#define PLIC_CLAIM0 (PLIC + 0x200004u)
#define UART_IRQ 10u
#define IER_RDI 0x01
#define MIE_MEIE (1u << 11)
#define MCAUSE_MEI 0x8000000bu

static volatile uint8_t ring[256];
static volatile uint32_t head, tail;

void trap_handler(uint32_t mcause, uint32_t mepc, uint32_t mtval) {
  if (mcause != MCAUSE_MEI) {
    printf("uartirq: unexpected trap mcause=0x%08x mepc=0x%08x mtval=0x%08x\n", (unsigned)mcause, (unsigned)mepc, (unsigned)mtval);
    poweroff(0x7f);
  }
  uint32_t irq = MMIO32(PLIC_CLAIM0);
  if (irq == UART_IRQ) {
    while (UART8(UART_LSR) & UART_LSR_DR) {
      uint8_t c = UART8(UART_RBR);
      if (head - tail < sizeof ring) ring[head++ % sizeof ring] = c;
    }
  }
  if (irq != 0) MMIO32(PLIC_CLAIM0) = irq;
}

/* the next byte, waiting for the interrupt that brings it */
static int next_byte(void) {
  for (;;) {
    csr_clear(mstatus, MSTATUS_MIE);
    if (head != tail) {
      int c = ring[tail++ % sizeof ring];
      csr_set(mstatus, MSTATUS_MIE);
      return c;
    }
    wfi(); /* an interrupt pending wakes it even with MIE clear; it is taken below */
    csr_set(mstatus, MSTATUS_MIE);
  }
}

int main(void) {
  MMIO32(PLIC_PRIO(UART_IRQ)) = 1;
  MMIO32(PLIC_ENABLE0) = 1u << UART_IRQ;
  MMIO32(PLIC_THRESHOLD0) = 0;
  UART8(1) = IER_RDI;
  csr_set(mie, MIE_MEIE);
  csr_set(mstatus, MSTATUS_MIE);
  puts("uartirq: ready");
  char line[80];
  uint32_t len = 0, lines = 0;
  for (;;) {
    int c = next_byte();
    if (c == '\r') continue;
    if (c != '\n') {
      if (len < sizeof line - 1) line[len++] = (char)c;
      continue;
    }
    line[len] = 0;
    if (strcmp(line, "quit") == 0) break;
    for (uint32_t i = 0; i < len; i++) if (line[i] >= 'a' && line[i] <= 'z') line[i] = (char)(line[i] - 'a' + 'A');
    printf("> %s\n", line);
    lines++;
    len = 0;
  }
  printf("uartirq: %u lines\n", (unsigned)lines);
  return 0;
}
