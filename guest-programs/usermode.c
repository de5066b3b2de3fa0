/* usermode: what a guest built for QEMU does to run code in U-mode. QEMU refuses an mret to
 * U-mode while no PMP entry is set (an illegal instruction), and its PMP denies U-mode every
 * access no entry allows, so the kernel (M-mode) first opens PMP entry 0 over all memory
 * (NAPOT, R W X), then drops to U-mode with mret. The user code computes, and asks the
 * kernel to write and to exit through ecall; its read of an M-mode CSR is an illegal
 * instruction the kernel reports and skips. The output is the same on Ferry and QEMU.
 * Args (Ferry only): rounds (sieve rounds, default 1), mode=m (run the same user code in M-mode,
 * for bench/cpu.ts to compare). */
#include "ferry.h"

#define MSTATUS_MPP (3u << 11)
#define PMP_NAPOT_RWX 0x1fu

enum { SYS_WRITE = 1, SYS_EXIT = 2 };
/* the user's request, in memory both modes share */
static volatile struct { uint32_t nr; const char *buf; uint32_t len; } req;
static uint32_t syscalls;
static uint32_t rounds;

/* ---- kernel (M-mode) ---- */

void trap_handler(uint32_t mcause, uint32_t mepc, uint32_t mtval) {
  (void)mtval;
  uint32_t from = (csr_read(mstatus) & MSTATUS_MPP) >> 11;
  if (mcause == 8 || mcause == 11) { /* ecall from U (or from M, with mode=m) */
    syscalls++;
    if (req.nr == SYS_WRITE) {
      for (uint32_t i = 0; i < req.len; i++) uart_putc(req.buf[i]);
    } else if (req.nr == SYS_EXIT) {
      printf("kernel: user exited with %u after %u system calls\n", (unsigned)req.len, (unsigned)syscalls);
      poweroff((int)req.len);
    }
    csr_write(mepc, mepc + 4);
    return;
  }
  if (mcause == 2 && from == 0) {
    printf("kernel: illegal instruction in U-mode at 0x%08x, skipped\n", (unsigned)mepc);
    csr_write(mepc, mepc + 4);
    return;
  }
  printf("kernel: unexpected trap mcause=0x%08x mepc=0x%08x from mode %u\n", (unsigned)mcause, (unsigned)mepc, (unsigned)from);
  poweroff(0x7f);
}

/* ---- user (U-mode) ---- */

static void sys(uint32_t nr, const char *buf, uint32_t len) {
  req.nr = nr;
  req.buf = buf;
  req.len = len;
  __asm__ volatile("ecall" ::: "memory");
}

static void uwrite(const char *s) { sys(SYS_WRITE, s, (uint32_t)strlen(s)); }

static void uwrite_num(uint32_t v) {
  char buf[12];
  int i = (int)sizeof buf;
  buf[--i] = 0;
  do { buf[--i] = (char)('0' + v % 10); v /= 10; } while (v != 0);
  uwrite(&buf[i]);
}

static uint8_t composite[1000] __attribute__((aligned(4096))); /* its own page: none of its stores lands on decoded code */
/* four pages whose contents depend on every round before: a page a migration failed to resend shows */
static uint32_t history[4096] __attribute__((aligned(4096)));

static void user_main(void) {
  uwrite("user: hello from U-mode\n");
  uint32_t primes = 0;
  for (uint32_t r = 0; r < rounds; r++) {
    for (uint32_t i = 0; i < sizeof composite; i++) composite[i] = 0;
    primes = 0;
    for (uint32_t i = 2; i < sizeof composite; i++) {
      if (composite[i]) continue;
      primes++;
      for (uint32_t j = i * i; j < sizeof composite; j += i) composite[j] = 1;
    }
    for (uint32_t i = 0; i < 64; i++) history[(r * 67 + i * 61) % 4096] += r ^ (i * primes);
  }
  uwrite("user: ");
  uwrite_num(primes);
  uwrite(" primes below 1000\n");
  uint32_t v = 0;
  __asm__ volatile("csrr %0, mstatus" : "+r"(v)); /* not allowed here: it traps and leaves v as it was */
  uwrite("user: still here, mstatus read as ");
  uwrite_num(v);
  uwrite("\n");
  sys(SYS_EXIT, 0, 0);
  for (;;) {}
}

int main(void) {
  rounds = arg_uint("rounds", 1);
  if (strcmp(arg_str("mode", "u"), "m") == 0) user_main(); /* never returns: it exits through ecall */
  csr_write(pmpaddr0, 0xffffffffu);
  csr_write(pmpcfg0, PMP_NAPOT_RWX);
  printf("usermode: pmpaddr0=0x%08x pmpcfg0=0x%08x\n", (unsigned)csr_read(pmpaddr0), (unsigned)csr_read(pmpcfg0));
  printf("usermode: entering U-mode\n");
  csr_clear(mstatus, MSTATUS_MPP); /* MPP = U */
  csr_write(mepc, (uint32_t)(uintptr_t)user_main);
  __asm__ volatile("mret");
  return 0x7e; /* not reached */
}
