/* ferry.h - tiny freestanding runtime for Ferry guest programs (RV32IM, M-mode).
   The same binaries run on Ferry and on qemu-system-riscv32 -machine virt -bios none. */
#ifndef FERRY_H
#define FERRY_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* ---- machine map (QEMU virt) ---- */
#define RAM_BASE       0x80000000u
#define UART_BASE      0x10000000u
#define UART_THR       0
#define UART_RBR       0
#define UART_LSR       5
#define UART_LSR_DR    0x01
#define UART_LSR_THRE  0x20
#define CLINT_BASE     0x02000000u
#define CLINT_MSIP     (CLINT_BASE + 0x0000)
#define CLINT_MTIMECMP (CLINT_BASE + 0x4000)
#define CLINT_MTIME    (CLINT_BASE + 0xBFF8)
#define FINISHER_BASE  0x00100000u
#define MTIME_HZ       10000000u /* 10 MHz timebase */
#define PAGE_SIZE      4096u

#define MCAUSE_MTI     0x80000007u
#define MIE_MTIE       (1u << 7)
#define MSTATUS_MIE    (1u << 3)

/* ---- CSR access ---- */
#define csr_read(csr) ({ uint32_t __v; __asm__ volatile("csrr %0, " #csr : "=r"(__v)); __v; })
#define csr_write(csr, val) __asm__ volatile("csrw " #csr ", %0" ::"rK"(val))
#define csr_set(csr, val) __asm__ volatile("csrs " #csr ", %0" ::"rK"(val))
#define csr_clear(csr, val) __asm__ volatile("csrc " #csr ", %0" ::"rK"(val))
static inline void wfi(void) { __asm__ volatile("wfi" ::: "memory"); }

/* ---- linker symbols / boot state (start.S) ---- */
extern char _end[];          /* first free, 4 KiB-aligned address after the image */
extern uint32_t ferry_hartid;  /* a0 at reset */
extern uint32_t ferry_boot_a1; /* a1 at reset */

/* ---- UART / console ---- */
void uart_putc(char c);
int uart_getc(void); /* -1 when no byte is waiting */
int putchar(int c);
int puts(const char *s); /* appends '\n' */
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap);

/* ---- string ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

/* ---- 64-bit helpers (no libgcc here) ---- */
uint64_t udiv64(uint64_t n, uint64_t d, uint64_t *rem);

/* ---- timer (CLINT) ---- */
uint64_t mtime_read(void);
void mtimecmp_write(uint64_t when);
void timer_disarm(void); /* mtimecmp = all ones */
/* Sleep until mtime >= deadline using the timer interrupt + wfi. */
void sleep_until(uint64_t deadline);
static inline uint64_t ms_to_ticks(uint32_t ms) { return (uint64_t)ms * (MTIME_HZ / 1000u); }

/* ---- traps ---- */
/* Called from start.S for every trap. The default prints the trap and exits
   with code 0x7f, except machine timer interrupts, which go to timer_interrupt(). */
void trap_handler(uint32_t mcause, uint32_t mepc, uint32_t mtval);
/* Weak; the default disarms the timer and sets timer_fired. Override for a
   periodic timer (re-arm mtimecmp inside). */
void timer_interrupt(void);
extern volatile uint32_t timer_fired;

/* ---- boot arguments ("key=value key2=value2" at a1, Ferry only) ---- */
const char *boot_args(void); /* NULL when a1 is not a boot-arg string (QEMU: FDT) */
uint32_t arg_uint(const char *key, uint32_t def); /* decimal or 0x-hex */
const char *arg_str(const char *key, const char *def); /* copy in a static pool */
/* Best guess of the end of RAM: from the boot-arg page when present,
   otherwise RAM_BASE + 128 MiB. Programs keep clear of the last 64 KiB. */
uint32_t ram_top(void);

/* ---- power ---- */
void poweroff(int code) __attribute__((noreturn)); /* 0 -> 0x5555, else (code<<16)|0x3333 */

#endif
