// The fast-path harness for scripts/fastpath-insns: N malloc+free pairs of one size, as
// `pair` (free at once: one block bouncing) or `batch` (1000 mallocs, then their 1000 frees).
// C, built with -fno-builtin, so each call really reaches the allocator.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc != 4 || (strcmp(argv[1], "pair") != 0 && strcmp(argv[1], "batch") != 0)) {
    fprintf(stderr, "usage: %s pair|batch SIZE PAIRS\n", argv[0]);
    return 2;
  }
  const int batch = strcmp(argv[1], "batch") == 0;
  const size_t size = strtoul(argv[2], NULL, 10);
  const long pairs = atol(argv[3]);
  static void* blocks[1000];
  if (!batch) {
    for (long i = 0; i < pairs; ++i) {
      void* p = malloc(size);
      __asm__ volatile("" : : "r"(p) : "memory");  // keep the pair: no elision
      free(p);
    }
  } else {
    for (long r = 0; r < pairs / 1000; ++r) {
      for (int i = 0; i < 1000; ++i) {
        blocks[i] = malloc(size);
        __asm__ volatile("" : : "r"(blocks[i]) : "memory");
      }
      for (int i = 0; i < 1000; ++i) free(blocks[i]);
    }
  }
  return 0;
}
