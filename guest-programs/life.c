/* life: Conway's Game of Life on a w x h torus (default 256 x 256), one byte
   per cell, two page-aligned buffers at _end. Seeded by the 32-bit LCG
   s = s * 1664525 + 1013904223 from seed (default 1): cell alive when bit 31
   of the next state is set, cells filled row by row.
   Prints "life: w=W h=H seed=S base=0xXXXXXXXX" once, then
   "gen N alive=M" every print_every generations (default 100).
   gens (default 0 = forever): after that many generations, print the final
   "gen N alive=M" line (if not just printed) and power off with exit 0. */
#include "ferry.h"

static uint32_t step(const uint8_t *cur, uint8_t *next, uint32_t w, uint32_t h) {
  uint32_t alive = 0;
  for (uint32_t y = 0; y < h; y++) {
    const uint8_t *up = cur + (size_t)(y == 0 ? h - 1 : y - 1) * w;
    const uint8_t *row = cur + (size_t)y * w;
    const uint8_t *dn = cur + (size_t)(y == h - 1 ? 0 : y + 1) * w;
    uint8_t *out = next + (size_t)y * w;
    for (uint32_t x = 0; x < w; x++) {
      uint32_t l = x == 0 ? w - 1 : x - 1;
      uint32_t r = x == w - 1 ? 0 : x + 1;
      uint32_t n = up[l] + up[x] + up[r] + row[l] + row[r] + dn[l] + dn[x] + dn[r];
      uint8_t v = (n == 3 || (n == 2 && row[x])) ? 1 : 0;
      out[x] = v;
      alive += v;
    }
  }
  return alive;
}

int main(void) {
  uint32_t w = arg_uint("w", 256);
  uint32_t h = arg_uint("h", 256);
  uint32_t seed = arg_uint("seed", 1);
  uint32_t every = arg_uint("print_every", 100);
  uint32_t gens = arg_uint("gens", 0);
  if (w < 3) w = 3;
  if (h < 3) h = 3;
  if (every == 0) every = 1;

  uint32_t size = w * h;
  uint32_t stride = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
  uint8_t *a = (uint8_t *)_end;
  uint8_t *b = a + stride;
  uint32_t limit = ram_top() - 0x10000u;
  if ((uint32_t)(uintptr_t)b + stride > limit) {
    printf("life: %ux%u does not fit in RAM\n", w, h);
    poweroff(1);
  }
  printf("life: w=%u h=%u seed=%u base=0x%08x\n", w, h, seed, (uint32_t)(uintptr_t)a);

  uint32_t s = seed;
  for (uint32_t i = 0; i < size; i++) {
    s = s * 1664525u + 1013904223u;
    a[i] = (uint8_t)(s >> 31);
  }
  memset(b, 0, size);

  for (uint32_t gen = 1;; gen++) {
    uint32_t alive = step(a, b, w, h);
    uint8_t *t = a; a = b; b = t;
    int last = gens && gen >= gens;
    if (gen % every == 0 || last) printf("gen %u alive=%u\n", gen, alive);
    if (last) poweroff(0);
  }
}
