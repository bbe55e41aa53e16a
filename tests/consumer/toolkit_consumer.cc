// A program that uses the installed toolkit (<bitslab/toolkit.h>, bitslab::toolkit or
// pkg-config bitslab-toolkit) as a library: one call into each component, checked. Its malloc
// stays glibc's; run.sh checks that the library defines no malloc.
#include <bitslab/toolkit.h>

#include <cstdio>
#include <cstring>

static int failures = 0;
static void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "toolkit consumer: FAILED: %s\n", what);
    ++failures;
  }
}

int main(int argc, char** argv) {
  const char* how = argc > 1 ? argv[1] : "?";

  bitslab::CachedPageAllocator cache;
  cache.set_free_page_capacity(8);
  void* pages[4];
  check(cache.allocate(pages, 4) == 4, "CachedPageAllocator::allocate of 4 pages");
  cache.deallocate(pages, 4);
  check(cache.free_page_num() == 4, "the 4 pages are cached");

  bitslab::PageArena arena(16 * bitslab::PageArena::os_page_size());
  bitslab::FixedBlockAllocator blocks(arena, 64);
  void* block = blocks.allocate();
  check(block != nullptr && arena.pages_allocated() == 1, "FixedBlockAllocator over a PageArena");
  blocks.deallocate(block);

  bitslab::SizeClassAllocator classes(256);
  void* small = classes.allocate(100);
  check(classes.owns(small) && classes.usable_size(small) >= 100, "SizeClassAllocator::allocate(100)");
  classes.deallocate(small);

  if (failures != 0) return 1;
  std::printf("toolkit consumer (%s): page cache, page arena, fixed blocks, size classes OK\n", how);
  return 0;
}
