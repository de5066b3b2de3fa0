/* resetvals: prints the machine's registers as they are at reset, before anything is written to
 * them (the CLINT's mtimecmp, every NS16550A register, the divisor through DLAB, the PMP CSRs,
 * the PLIC's, the RTC's but its time, the first virtio-mmio slot's), then powers off with 0.
 * Run it on Ferry and on QEMU virt: the lines must be the same. */
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
  uint32_t pmpcfg[4] = { csr_read(pmpcfg0), csr_read(pmpcfg1), csr_read(pmpcfg2), csr_read(pmpcfg3) };
  uint32_t pmpaddr[2] = { csr_read(pmpaddr0), csr_read(pmpaddr15) };
  const uint32_t plic = 0x0c000000u;
  uint32_t prio1 = MMIO32(plic + 4), prio96 = MMIO32(plic + 4 * 96), pend = MMIO32(plic + 0x1000);
  uint32_t en0 = MMIO32(plic + 0x2000), en1 = MMIO32(plic + 0x2080), thr0 = MMIO32(plic + 0x200000), thr1 = MMIO32(plic + 0x201000);
  uint32_t claim0 = MMIO32(plic + 0x200004), claim1 = MMIO32(plic + 0x201004);
  const uint32_t rtc = 0x101000u;
  uint32_t alo = MMIO32(rtc + 0x08), ahi = MMIO32(rtc + 0x0c), irqen = MMIO32(rtc + 0x10), astat = MMIO32(rtc + 0x18);
  const uint32_t vio = 0x10001000u;
  uint32_t magic = MMIO32(vio), version = MMIO32(vio + 4), device = MMIO32(vio + 8), vendor = MMIO32(vio + 12);
  printf("resetvals: mtimecmp=0x%08x%08x\n", (unsigned)cmp_hi, (unsigned)cmp_lo);
  printf("resetvals: uart ier=0x%02x iir=0x%02x lcr=0x%02x mcr=0x%02x lsr=0x%02x msr=0x%02x scr=0x%02x dll=0x%02x dlm=0x%02x\n",
         (unsigned)ier, (unsigned)iir, (unsigned)lcr, (unsigned)mcr, (unsigned)lsr, (unsigned)msr, (unsigned)scr, (unsigned)dll, (unsigned)dlm);
  printf("resetvals: pmpcfg0-3=0x%08x 0x%08x 0x%08x 0x%08x pmpaddr0=0x%08x pmpaddr15=0x%08x\n", (unsigned)pmpcfg[0],
         (unsigned)pmpcfg[1], (unsigned)pmpcfg[2], (unsigned)pmpcfg[3], (unsigned)pmpaddr[0], (unsigned)pmpaddr[1]);
  printf("resetvals: plic prio1=%u prio96=%u pending=0x%08x enable0=0x%08x enable1=0x%08x threshold=%u/%u claim=%u/%u\n",
         (unsigned)prio1, (unsigned)prio96, (unsigned)pend, (unsigned)en0, (unsigned)en1, (unsigned)thr0, (unsigned)thr1, (unsigned)claim0, (unsigned)claim1);
  printf("resetvals: rtc alarm=0x%08x%08x irq_enabled=%u alarm_status=%u\n", (unsigned)ahi, (unsigned)alo, (unsigned)irqen, (unsigned)astat);
  printf("resetvals: virtio-mmio magic=0x%08x version=%u device=%u vendor=0x%08x\n", (unsigned)magic, (unsigned)version, (unsigned)device, (unsigned)vendor);
  poweroff(0);
}
