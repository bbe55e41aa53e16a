/* Linked with the static override (libbitslab_override.a): bitslab is its malloc, with no
 * LD_PRELOAD, which the dynamic loader would drop for a set-user-ID program anyway.
 * tests/lifecycle/secure_mode.sh runs it set-user-ID root as nobody (secure execution) and
 * normally. Prints whether the kernel marked it secure and whether 1000 mallocs succeeded. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>

int main(void) {
  int ok = 1;
  for (int i = 0; i < 1000; ++i) {
    void* p = malloc(100 + (size_t)i * 7);
    if (p == NULL) ok = 0;
    free(p);
  }
  printf("at_secure=%lu %s\n", getauxval(AT_SECURE), ok ? "malloc ok" : "malloc failed");
  return ok ? 0 : 1;
}
