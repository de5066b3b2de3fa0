/* memstress: dirties a working set page by page, forever.
   Working set: ws_mib MiB (default 16) starting at _end (page aligned).
   One pass increments the first byte of every 4 KiB page, in address order.
   Invariant (for a host inspecting RAM at any instant): all page counters
   are equal, except that the pages before one boundary are one more (mod 256).
   Output: "memstress: ws_mib=N base=0xXXXXXXXX pages=P" once, then
   "pass N" (N = passes completed) at most once per second of guest time.
   Args: ws_mib (16), passes (0 = forever; else print "memstress: done passes=N"
   and power off 0), rate_mib_s (0 = full speed; else sleep after each MiB
   while ahead of schedule). */
#include "ferry.h"

#define PAGES_PER_MIB 256u

int main(void) {
  uint32_t ws_mib = arg_uint("ws_mib", 16);
  uint32_t max_passes = arg_uint("passes", 0);
  uint32_t rate = arg_uint("rate_mib_s", 0);
  uint32_t base = (uint32_t)(uintptr_t)_end;

  /* keep clear of the last 64 KiB of RAM (boot args live there) */
  uint32_t limit = ram_top() - 0x10000u;
  uint32_t max_mib = limit > base ? (limit - base) >> 20 : 0;
  if (ws_mib > max_mib) ws_mib = max_mib;
  if (ws_mib == 0) ws_mib = 1;
  uint32_t pages = ws_mib * PAGES_PER_MIB;
  printf("memstress: ws_mib=%u base=0x%08x pages=%u\n", ws_mib, base, pages);

  volatile uint8_t *mem = (volatile uint8_t *)(uintptr_t)base;
  uint64_t ticks_per_mib = rate ? MTIME_HZ / rate : 0;
  uint64_t start = mtime_read();
  uint64_t last_print = start;
  uint64_t mib_done = 0; /* MiB dirtied since start, for the rate schedule */
  uint32_t pass = 0;

  for (;;) {
    for (uint32_t p = 0; p < pages; p += PAGES_PER_MIB) {
      volatile uint8_t *q = mem + (size_t)p * PAGE_SIZE;
      for (uint32_t i = 0; i < PAGES_PER_MIB; i++) {
        q[0] = (uint8_t)(q[0] + 1);
        q += PAGE_SIZE;
      }
      /* once per MiB (256 pages): schedule and progress */
      mib_done++;
      uint64_t now = mtime_read();
      if (ticks_per_mib) {
        uint64_t due = start + mib_done * ticks_per_mib;
        if (now < due) {
          sleep_until(due);
          now = mtime_read();
        }
      }
      if (p + PAGES_PER_MIB >= pages) {
        pass++;
        if (max_passes && pass >= max_passes) {
          printf("pass %u\n", pass);
          printf("memstress: done passes=%u\n", pass);
          poweroff(0);
        }
        if (now - last_print >= MTIME_HZ) {
          printf("pass %u\n", pass);
          last_print = now;
        }
      }
    }
  }
}
