/* hello: prints one line and powers off with exit code 0. */
#include "ferry.h"

int main(void) {
  printf("hello from ferry\n");
  poweroff(0);
}
