/* tests/preload/leaky_program.c — a C program with a known set of live blocks at exit, for
 * leak_check_test.cc (run with BITSLAB_LEAK_CHECK=1 under the preload). C, so no C++ runtime
 * allocates anything of its own. Modes:
 *   none          allocates and frees 3000 blocks of mixed sizes: nothing is live at exit
 *   leak          100 blocks of 750 B, of which 40 freed by this thread and 20 by another:
 *                 40 live (class 768); 3 of 5000 B (pool class 5120); one of 1 MiB (glibc's)
 *   close-stderr  as leak, then closes stderr before exit, as coreutils programs do
 *   introspect    1000 blocks of 750 B live: prints mallinfo2's uordblks and arena, calls
 *                 malloc_stats(); frees them, prints malloc_trim(0)'s result and mallinfo2
 *                 again (stdout: "key value" lines) */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void* blocks[100];

static void* free_some(void* arg) {
  (void)arg;
  for (int i = 60; i < 80; ++i) free(blocks[i]);
  return NULL;
}

static void leak(void) {
  for (int i = 0; i < 100; ++i) blocks[i] = malloc(750);
  for (int i = 0; i < 40; ++i) free(blocks[i]);
  pthread_t t;
  if (pthread_create(&t, NULL, free_some, NULL) != 0 || pthread_join(t, NULL) != 0) exit(3);
  for (int i = 0; i < 3; ++i) blocks[i] = malloc(5000);
  blocks[3] = malloc(1 << 20);
}

static void none(void) {
  static void* live[3000];
  for (int i = 0; i < 3000; ++i) live[i] = malloc((size_t)(i * 37) % 9000 + 1);
  for (int i = 0; i < 3000; i += 2) free(live[i]);  /* half into caches and bitmaps... */
  for (int i = 2999; i >= 0; --i)                    /* ...and the rest in reverse */
    if (i % 2 == 1) free(live[i]);
}

static void introspect(void) {
  static void* live[1000];
  for (int i = 0; i < 1000; ++i) live[i] = malloc(750);
  struct mallinfo2 before = mallinfo2();
  printf("uordblks_live %zu\narena_live %zu\n", before.uordblks, before.arena);
  fflush(stdout);
  malloc_stats();
  for (int i = 0; i < 1000; ++i) free(live[i]);
  printf("trim %d\n", malloc_trim(0));
  struct mallinfo2 after = mallinfo2();
  printf("uordblks_freed %zu\narena_freed %zu\n", after.uordblks, after.arena);
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "none") == 0) none();
  else if (strcmp(mode, "leak") == 0) leak();
  else if (strcmp(mode, "close-stderr") == 0) { leak(); close(2); }
  else if (strcmp(mode, "introspect") == 0) introspect();
  else return 2;
  return 0;
}
