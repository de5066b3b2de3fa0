/* Tiny freestanding libc for Ferry guests. */
#include "ferry.h"

#define MMIO8(a) (*(volatile uint8_t *)(uintptr_t)(a))
#define MMIO32(a) (*(volatile uint32_t *)(uintptr_t)(a))

/* ---------------- UART ---------------- */
void uart_putc(char c) {
  while (!(MMIO8(UART_BASE + UART_LSR) & UART_LSR_THRE)) {
  }
  MMIO8(UART_BASE + UART_THR) = (uint8_t)c;
}

int uart_getc(void) {
  if (!(MMIO8(UART_BASE + UART_LSR) & UART_LSR_DR)) return -1;
  return MMIO8(UART_BASE + UART_RBR);
}

int putchar(int c) {
  uart_putc((char)c);
  return (unsigned char)c;
}

int puts(const char *s) {
  while (*s) uart_putc(*s++);
  uart_putc('\n');
  return 0;
}

/* ---------------- string ---------------- */
void *memset(void *d, int c, size_t n) {
  uint8_t *p = d;
  uint8_t b = (uint8_t)c;
  while (n && ((uintptr_t)p & 3)) { *p++ = b; n--; }
  uint32_t w = b * 0x01010101u;
  while (n >= 4) { *(uint32_t *)p = w; p += 4; n -= 4; }
  while (n--) *p++ = b;
  return d;
}

void *memcpy(void *d, const void *s, size_t n) {
  uint8_t *dp = d;
  const uint8_t *sp = s;
  if ((((uintptr_t)dp | (uintptr_t)sp) & 3) == 0) {
    while (n >= 4) { *(uint32_t *)dp = *(const uint32_t *)sp; dp += 4; sp += 4; n -= 4; }
  }
  while (n--) *dp++ = *sp++;
  return d;
}

int memcmp(const void *a, const void *b, size_t n) {
  const uint8_t *x = a, *y = b;
  for (; n; n--, x++, y++)
    if (*x != *y) return *x < *y ? -1 : 1;
  return 0;
}

size_t strlen(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

int strcmp(const char *a, const char *b) {
  while (*a && *a == *b) { a++; b++; }
  return (unsigned char)*a - (unsigned char)*b;
}

/* ---------------- 64-bit division (shift-subtract) ---------------- */
uint64_t udiv64(uint64_t n, uint64_t d, uint64_t *rem) {
  if (d == 0) { if (rem) *rem = n; return ~0ull; }
  if ((n >> 32) == 0 && (d >> 32) == 0) {
    uint32_t q = (uint32_t)n / (uint32_t)d;
    if (rem) *rem = (uint32_t)n - q * (uint32_t)d;
    return q;
  }
  uint64_t q = 0, r = 0;
  for (int i = 63; i >= 0; i--) {
    r = (r << 1) | ((n >> i) & 1);
    if (r >= d) { r -= d; q |= 1ull << i; }
  }
  if (rem) *rem = r;
  return q;
}
/* In case the compiler emits the libgcc helpers. */
uint64_t __udivdi3(uint64_t n, uint64_t d) { return udiv64(n, d, 0); }
uint64_t __umoddi3(uint64_t n, uint64_t d) { uint64_t r; udiv64(n, d, &r); return r; }

/* ---------------- printf subset ----------------
   %d %i %u %x %X %p %s %c %%, flags '0' and '-', width, 'l' and 'll'. */
static void out_pad(int n, char c) { while (n-- > 0) uart_putc(c); }

static int out_str(const char *s, int len, int width, int left, char pad) {
  int n = width > len ? width - len : 0;
  if (!left) out_pad(n, pad);
  for (int i = 0; i < len; i++) uart_putc(s[i]);
  if (left) out_pad(n, ' ');
  return len + n;
}

static int out_num(uint64_t v, int base, int upper, int neg, int width, int left, char pad) {
  char buf[24];
  int i = sizeof buf;
  const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  do {
    uint64_t r;
    v = udiv64(v, (uint64_t)base, &r);
    buf[--i] = digits[r];
  } while (v);
  int len = (int)sizeof buf - i;
  int total = len + (neg ? 1 : 0);
  int n = width > total ? width - total : 0;
  int cnt = 0;
  if (neg && pad == '0') { uart_putc('-'); cnt++; }
  if (!left) { out_pad(n, pad); cnt += n; }
  if (neg && pad != '0') { uart_putc('-'); cnt++; }
  for (; i < (int)sizeof buf; i++) { uart_putc(buf[i]); cnt++; }
  if (left) { out_pad(n, ' '); cnt += n; }
  return cnt;
}

int vprintf(const char *fmt, va_list ap) {
  int cnt = 0;
  for (; *fmt; fmt++) {
    if (*fmt != '%') { uart_putc(*fmt); cnt++; continue; }
    fmt++;
    char pad = ' ';
    int left = 0, width = 0, lng = 0;
    for (;; fmt++) {
      if (*fmt == '0') pad = '0';
      else if (*fmt == '-') left = 1;
      else break;
    }
    if (left) pad = ' ';
    while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    while (*fmt == 'l') { lng++; fmt++; }
    switch (*fmt) {
    case 'd': case 'i': {
      int64_t v = lng >= 2 ? va_arg(ap, int64_t) : (int64_t)(lng ? va_arg(ap, long) : va_arg(ap, int));
      int neg = v < 0;
      cnt += out_num(neg ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, 10, 0, neg, width, left, pad);
      break;
    }
    case 'u': case 'x': case 'X': {
      uint64_t v = lng >= 2 ? va_arg(ap, uint64_t) : (uint64_t)(lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned));
      cnt += out_num(v, *fmt == 'u' ? 10 : 16, *fmt == 'X', 0, width, left, pad);
      break;
    }
    case 'p':
      uart_putc('0'); uart_putc('x');
      cnt += 2 + out_num((uintptr_t)va_arg(ap, void *), 16, 0, 0, 8, 0, '0');
      break;
    case 's': {
      const char *s = va_arg(ap, const char *);
      if (!s) s = "(null)";
      cnt += out_str(s, (int)strlen(s), width, left, ' ');
      break;
    }
    case 'c': {
      char c = (char)va_arg(ap, int);
      cnt += out_str(&c, 1, width, left, ' ');
      break;
    }
    case '%': uart_putc('%'); cnt++; break;
    case 0: return cnt;
    default: uart_putc('%'); uart_putc(*fmt); cnt += 2; break;
    }
  }
  return cnt;
}

int printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vprintf(fmt, ap);
  va_end(ap);
  return n;
}

/* ---------------- timer ---------------- */
uint64_t mtime_read(void) {
  uint32_t hi, lo, hi2;
  do {
    hi = MMIO32(CLINT_MTIME + 4);
    lo = MMIO32(CLINT_MTIME);
    hi2 = MMIO32(CLINT_MTIME + 4);
  } while (hi != hi2);
  return ((uint64_t)hi << 32) | lo;
}

void mtimecmp_write(uint64_t when) {
  /* never let mtimecmp be transiently smaller than both old and new values */
  MMIO32(CLINT_MTIMECMP + 4) = 0xffffffffu;
  MMIO32(CLINT_MTIMECMP) = (uint32_t)when;
  MMIO32(CLINT_MTIMECMP + 4) = (uint32_t)(when >> 32);
}

void timer_disarm(void) {
  MMIO32(CLINT_MTIMECMP + 4) = 0xffffffffu;
  MMIO32(CLINT_MTIMECMP) = 0xffffffffu;
}

volatile uint32_t timer_fired;

__attribute__((weak)) void timer_interrupt(void) {
  timer_disarm();
  timer_fired++;
}

void sleep_until(uint64_t deadline) {
  if (mtime_read() >= deadline) return;
  csr_clear(mstatus, MSTATUS_MIE);
  mtimecmp_write(deadline);
  csr_set(mie, MIE_MTIE);
  /* With mstatus.MIE clear, a pending interrupt still ends wfi; it is then
     taken in the short window with MIE set, so no wake-up is ever lost. */
  while (mtime_read() < deadline) {
    wfi();
    csr_set(mstatus, MSTATUS_MIE);
    csr_clear(mstatus, MSTATUS_MIE);
  }
  csr_clear(mie, MIE_MTIE);
  timer_disarm();
}

/* ---------------- traps ---------------- */
__attribute__((weak)) void trap_handler(uint32_t mcause, uint32_t mepc, uint32_t mtval) {
  if (mcause == MCAUSE_MTI) {
    timer_interrupt();
    return;
  }
  printf("trap: mcause=0x%08x mepc=0x%08x mtval=0x%08x\n", mcause, mepc, mtval);
  poweroff(0x7f);
}

/* ---------------- power ---------------- */
void poweroff(int code) {
  uint32_t v = code == 0 ? 0x5555u : (((uint32_t)code & 0xffffu) << 16) | 0x3333u;
  for (;;) {
    MMIO32(FINISHER_BASE) = v;
    wfi();
  }
}

/* ---------------- boot arguments ---------------- */
#define ARG_MAX_LEN 4096u

const char *boot_args(void) {
  static int checked;
  static const char *args;
  if (checked) return args;
  checked = 1;
  uint32_t a = ferry_boot_a1;
  /* must lie in RAM (above this image) and be printable ASCII up to a NUL
     within one page; QEMU passes an FDT (magic d0 0d fe ed) instead */
  if (a < (uint32_t)(uintptr_t)_end || a >= 0xfffff000u) return 0;
  const char *s = (const char *)(uintptr_t)a;
  for (uint32_t i = 0; i < ARG_MAX_LEN; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == 0) { args = s; return args; }
    if (c < 0x20 || c > 0x7e) return 0;
    if (((a + i + 1) & (PAGE_SIZE - 1)) == 0) return 0; /* must not cross into the next page */
  }
  return 0;
}

/* Find "key=" at a word start; returns value start and sets *len. */
static const char *arg_find(const char *key, size_t *len) {
  const char *s = boot_args();
  if (!s) return 0;
  size_t kl = strlen(key);
  const char *found = 0;
  while (*s) {
    while (*s == ' ') s++;
    const char *w = s;
    while (*s && *s != ' ') s++;
    if ((size_t)(s - w) > kl && memcmp(w, key, kl) == 0 && w[kl] == '=') {
      found = w + kl + 1; /* the last occurrence wins */
      *len = (size_t)(s - found);
    }
  }
  return found;
}

uint32_t arg_uint(const char *key, uint32_t def) {
  size_t len;
  const char *v = arg_find(key, &len);
  if (!v || len == 0) return def;
  uint32_t base = 10, r = 0;
  size_t i = 0;
  if (len > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) { base = 16; i = 2; }
  for (; i < len; i++) {
    char c = v[i];
    uint32_t d;
    if (c >= '0' && c <= '9') d = (uint32_t)(c - '0');
    else if (base == 16 && c >= 'a' && c <= 'f') d = (uint32_t)(c - 'a' + 10);
    else if (base == 16 && c >= 'A' && c <= 'F') d = (uint32_t)(c - 'A' + 10);
    else return def; /* not a number */
    r = r * base + d;
  }
  return r;
}

const char *arg_str(const char *key, const char *def) {
  static char pool[1024];
  static size_t used;
  size_t len;
  const char *v = arg_find(key, &len);
  if (!v) return def;
  if (used + len + 1 > sizeof pool) return def;
  char *out = pool + used;
  memcpy(out, v, len);
  out[len] = 0;
  used += len + 1;
  return out;
}

uint32_t ram_top(void) {
  if (boot_args()) return (ferry_boot_a1 & ~(PAGE_SIZE - 1)) + PAGE_SIZE;
  return RAM_BASE + 128u * 1024u * 1024u;
}
