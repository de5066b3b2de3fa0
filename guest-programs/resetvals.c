/* resetvals: prints the machine's device registers as they are at reset, before anything is
 * written to them (the CLINT's mtimecmp, every NS16550A register, the divisor through DLAB),
 * then powers off with 0. Run it on Ferry and on QEMU virt: the lines must be the same. */
#include "ferry.h"

#define UART8(off) (*(volatile uint8_t *)(uintptr_t)(UART_BASE + (off)))
#define MMIO32(a) (*(volatile uint32_t *)(uintptr_t)(a))

int main(void) {
  /* Read everything first: printing writes the UART's THR (and nothing else). */
  uint32_t cmp_lo = MMIO32(CLINT_MTIMECMP), cmp_hi = MMIO32(CLINT_MTIMECMP + 4);
  uint32_t ier = UART8(1), iir = UART8(2), lcr = UART8(3), mcr = UART8(4), lsr = UART8(5), msr = UART8(6), scr = UART8(7);
  UART8(3) = (uint8_t)(lcr | 0x80); /* DLAB: the divisor latch */
  uint32_t dll = UART8(0), dlm = UART8(1);
  UART8(3) = (uint8_t)lcr;
  printf("resetvals: mtimecmp=0x%08x%08x\n", (unsigned)cmp_hi, (unsigned)cmp_lo);
  printf("resetvals: uart ier=0x%02x iir=0x%02x lcr=0x%02x mcr=0x%02x lsr=0x%02x msr=0x%02x scr=0x%02x dll=0x%02x dlm=0x%02x\n",
         (unsigned)ier, (unsigned)iir, (unsigned)lcr, (unsigned)mcr, (unsigned)lsr, (unsigned)msr, (unsigned)scr, (unsigned)dll, (unsigned)dlm);
  poweroff(0);
}
