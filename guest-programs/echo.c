/* echo: copies every byte received on the UART back to it, so a host can test console input.
   Polls the receiver every 5 ms of guest time, sleeping in wfi in between (no UART interrupt
   on this machine). Ctrl-D (0x04) prints "echo: bye" and powers off with exit 0. */
#include "ferry.h"

int main(void) {
  puts("echo: ready");
  for (;;) {
    int c = uart_getc();
    if (c < 0) {
      sleep_until(mtime_read() + ms_to_ticks(5));
      continue;
    }
    if (c == 4) break;
    uart_putc((char)c);
  }
  puts("echo: bye");
  return 0;
}
