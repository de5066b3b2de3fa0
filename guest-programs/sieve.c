/* sieve: Sieve of Eratosthenes up to n (default 2000000) in a byte array at
   _end, repeated reps times (default 1). Prints "sieve: n=N primes=P" and
   powers off with exit 0. Used as a MIPS benchmark: plain compiled loops. */
#include "ferry.h"

static uint32_t sieve(uint8_t *comp, uint32_t n) {
  memset(comp, 0, n + 1);
  uint32_t count = 0;
  for (uint32_t i = 2; i <= n; i++) {
    if (comp[i]) continue;
    count++;
    if ((uint64_t)i * i > n) continue;
    for (uint32_t j = i * i; j <= n; j += i) comp[j] = 1;
  }
  return count;
}

int main(void) {
  uint32_t n = arg_uint("n", 2000000);
  uint32_t reps = arg_uint("reps", 1);
  uint8_t *comp = (uint8_t *)_end;
  uint32_t limit = ram_top() - 0x10000u - (uint32_t)(uintptr_t)_end;
  if (n >= limit) n = limit - 1;
  if (reps == 0) reps = 1;
  uint32_t primes = 0;
  for (uint32_t r = 0; r < reps; r++) primes = sieve(comp, n);
  printf("sieve: n=%u primes=%u\n", n, primes);
  poweroff(0);
}
