// The no-malloc rule: the core never calls malloc or operator new, so it can be malloc.
// This binary replaces operator new to count calls, and reads glibc's own byte count
// (mallinfo2) to see any malloc; both must stay unchanged across core operations.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <malloc.h>
#include <new>
#include <thread>
#include <vector>

#include "core/api/bitslab.h"
#include "core/page/cached_page_allocator.h"
#include "core/profile/profile_table.h"
#include "core/profile/sample_clock.h"

namespace {
std::atomic<size_t> g_new_calls{0};

struct Footprint {
  size_t new_calls;
  size_t malloc_bytes;
  static Footprint now() { return {g_new_calls.load(), mallinfo2().uordblks}; }
  bool operator==(const Footprint&) const = default;
};
}  // namespace

void* operator new(size_t n) {
  ++g_new_calls;
  if (void* p = malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { free(p); }
void operator delete(void* p, size_t) noexcept { free(p); }

TEST_CASE("no malloc: the Boost.Lockfree page cache never allocates, even when full") {
  bitslab::CachedPageAllocator cache;
  cache.set_free_page_capacity(64);
  void* pages[200];
  const Footprint before = Footprint::now();
  for (int round = 0; round < 20; ++round) {
    REQUIRE(cache.allocate(pages, 200) == 200);
    cache.deallocate(pages, 200);  // 64 kept, 136 over capacity go upstream
  }
  CHECK(Footprint::now() == before);
  CHECK(cache.free_page_num() == 64);
}

TEST_CASE("no malloc: core alloc/free of every size class and a thread's first allocation") {
  void* blocks[600];
  const Footprint before = Footprint::now();
  for (int round = 0; round < 3; ++round) {
    for (size_t i = 0; i < 600; ++i) blocks[i] = bitslab::alloc(1 + i * 437 % bitslab::max_size());
    for (void* p : blocks) bitslab::free(p);
  }
  CHECK(Footprint::now() == before);

  Footprint in_thread_before{}, in_thread_after{};
  std::thread([&] {
    in_thread_before = Footprint::now();
    void* p = bitslab::alloc(64);  // sets up this thread's heap
    void* q = bitslab::aligned_alloc(4096, 5000);
    bitslab::free(p);
    bitslab::free(q);
    in_thread_after = Footprint::now();
  }).join();
  CHECK(in_thread_after == in_thread_before);
}

// The heap profiler runs inside malloc: its tables grow by mmap, its clock draws without libm's
// allocations, its stack store is a mapped array.
TEST_CASE("no malloc: the heap profiler's tables and clock, through growth") {
  bitslab::profile::ProfileTable table;
  bitslab::profile::SampleClock clock;
  const Footprint before = Footprint::now();
  REQUIRE(table.init());
  uintptr_t frames[8] = {0x400000, 0x400100, 0x400200};
  size_t samples = 0;
  for (uintptr_t block = 1; block <= 50000; ++block) {
    frames[3] = block % 701;  // 701 distinct stacks, each at two sizes: 1402 sites
    if (clock.count_down(64) && clock.crossed(64, 4096, uint64_t{1} << 40)) ++samples;
    REQUIRE(table.add(block * 16, 64 + block % 2, frames, 4));
  }
  for (uintptr_t block = 1; block <= 50000; block += 3) CHECK(table.remove(block * 16));
  CHECK(Footprint::now() == before);
  CHECK(table.site_count() == 1402);
  CHECK(samples > 0);
}
