/* A C program linked with the static override through pkg-config (run.sh): it needs no C++
   runtime, and its malloc is bitslab's. bitslab_owns is the library's exported test hook. */
#include <stdio.h>
#include <stdlib.h>

int bitslab_owns(const void* p);

int main(void) {
  void* p = malloc(64);
  if (p == NULL || !bitslab_owns(p)) {
    fprintf(stderr, "c consumer: FAILED: malloc(64) does not come from bitslab\n");
    return 1;
  }
  free(p);
  printf("c consumer (pkg-config-override): malloc is bitslab's\n");
  return 0;
}
