// Layer 2: SystemPageAllocator and CachedPageAllocator, with the cache's statistics.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "core/base/side_room.h"
#include "core/os/heap_range.h"
#include "core/os/os.h"
#include "core/page/cached_page_allocator.h"
#include "core/page/system_page_allocator.h"
#include "tests/support/child.h"

using namespace bitslab;

namespace {
// Counts what passes through to the real allocator, to see what the cache forwards.
class CountingUpstream final : public PageAllocator {
 public:
  explicit CountingUpstream(PageAllocator& real) : real_(real) {}
  size_t allocate(void** pages, size_t n) override {
    allocated += n;
    return real_.allocate(pages, n);
  }
  void deallocate(void* const* pages, size_t n) override {
    deallocated += n;
    real_.deallocate(pages, n);
  }
  size_t page_size() const override { return real_.page_size(); }
  size_t allocated = 0, deallocated = 0;

 private:
  PageAllocator& real_;
};

// Gives `cache` ten pages and lets `wait_ms` pass, then calls it once more: the first call opened
// the purge periods with the cache empty (low-water marks 0), so the last one ends them having
// purged nothing and opens the next ones with the ten pages cached.
void open_periods_with_ten_cached(CachedPageAllocator& cache, void* (&pages)[10], int wait_ms) {
  REQUIRE(cache.allocate(pages, 10) == 10);
  cache.deallocate(pages, 10);
  std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
  cache.deallocate(pages, 0);
}

// Takes two of the cached pages and gives them back within the period (its low-water mark is two
// below what was cached), then lets `wait_ms` pass and calls once more, which ends it.
void cycle_two_then_end_period(CachedPageAllocator& cache, void* (&two)[2], int wait_ms) {
  REQUIRE(cache.allocate(two, 2) == 2);
  cache.deallocate(two, 2);
  CHECK(cache.pages_purged() == 0);  // the period has not ended
  std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
  cache.deallocate(two, 0);  // any call ends it
}
}  // namespace

TEST_CASE("SystemPageAllocator hands out distinct, aligned, writable OS pages") {
  SystemPageAllocator& system = SystemPageAllocator::instance();
  CHECK(system.page_size() == os::page_size());
  void* pages[100];
  REQUIRE(system.allocate(pages, 100) == 100);
  std::set<void*> distinct(pages, pages + 100);
  CHECK(distinct.size() == 100);
  for (void* p : pages) {
    CHECK(reinterpret_cast<uintptr_t>(p) % system.page_size() == 0);
    CHECK(HeapRange::kind_of(p) == GranuleKind::kPages);
    memset(p, 0xab, system.page_size());
  }
  const size_t in_use = system.pages_in_use();
  system.deallocate(pages, 100);
  CHECK(system.pages_in_use() == in_use - 100);
  // Given-back pages are reused before new address space is carved.
  void* again[100];
  REQUIRE(system.allocate(again, 100) == 100);
  CHECK(std::set<void*>(again, again + 100) == distinct);
  system.deallocate(again, 100);
}

TEST_CASE("a SystemPageAllocator of 64 KiB pages aligns them and decommits given-back pages") {
  SystemPageAllocator big(64 * 1024, GranuleKind::kPages);
  CHECK(big.page_size() == 64 * 1024);
  char* p = static_cast<char*>(big.allocate_one());
  REQUIRE(p != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(p) % (64 * 1024) == 0);
  memset(p, 0x5a, 64 * 1024);
  big.deallocate_one(p);
  char* q = static_cast<char*>(big.allocate_one());
  CHECK(q == p);
  // The whole page went back to the kernel: it reads as zeros, its first byte included.
  CHECK(q[0] == 0);
  CHECK(q[os::page_size()] == 0);
  CHECK(q[64 * 1024 - 1] == 0);
  CHECK(big.bytes_returned() == 64 * 1024);
  big.deallocate_one(q);
}

TEST_CASE("SystemPageAllocator: a page given back twice, or a foreign one, aborts") {
  SystemPageAllocator big(64 * 1024, GranuleKind::kPages);
  void* p = big.allocate_one();
  REQUIRE(p != nullptr);
  big.deallocate_one(p);
  auto twice = bitslab::test::run_in_child([&] { big.deallocate_one(p); });
  CHECK(twice.signaled);
  CHECK(twice.stderr_text.find("bitslab: page given back twice, or never handed out: ") == 0);
  static char not_ours[1];
  auto foreign = bitslab::test::run_in_child([&] { big.deallocate_one(not_ours); });
  CHECK(foreign.signaled);
}

TEST_CASE("SystemPageAllocator reuses freed pages before it claims a new granule") {
  SystemPageAllocator big(64 * 1024, GranuleKind::kPages);
  const size_t per_granule = kGranuleBytes / (64 * 1024) - 1;  // less the header page
  std::vector<void*> pages(per_granule);
  REQUIRE(big.allocate(pages.data(), pages.size()) == pages.size());
  const size_t mapped = HeapRange::mapped_bytes();
  big.deallocate(pages.data() + 1, pages.size() - 1);  // one page stays: the granule is kept
  std::vector<void*> again(per_granule - 1);
  REQUIRE(big.allocate(again.data(), again.size()) == again.size());
  CHECK(std::set<void*>(pages.begin() + 1, pages.end()) == std::set<void*>(again.begin(), again.end()));
  CHECK(HeapRange::mapped_bytes() == mapped);
  big.deallocate(again.data(), again.size());
  big.deallocate(pages.data(), 1);
}

// side_room.h: the slab layer reads a slab header's frontier in these bytes of slot 0 when a
// pointer into the header page is freed, and takes 0 for "no block here".
TEST_CASE("SystemPageAllocator: slot 0's zero bytes stay zero under the granule header") {
  SystemPageAllocator big(64 * 1024, GranuleKind::kPages);
  const size_t per_granule = kGranuleBytes / (64 * 1024) - 1;
  std::vector<void*> pages(per_granule);
  REQUIRE(big.allocate(pages.data(), pages.size()) == pages.size());  // every page: all links set
  big.deallocate(pages.data() + 1, pages.size() / 2);                 // and the free bitmap and lists moved
  const auto* header =
      reinterpret_cast<const unsigned char*>(reinterpret_cast<uintptr_t>(pages[0]) & ~(kGranuleBytes - 1));
  for (size_t i = kSlotZeroBegin; i < kSlotZeroEnd; ++i) CHECK(header[i] == 0);
  big.deallocate(pages.data(), 1);
  big.deallocate(pages.data() + 1 + pages.size() / 2, pages.size() - 1 - pages.size() / 2);
}

TEST_CASE("SystemPageAllocator gives a granule back to its source once all its pages are free") {
  SystemPageAllocator big(64 * 1024, GranuleKind::kPages);  // source: HeapRange directly
  const size_t per_granule = kGranuleBytes / (64 * 1024) - 1;
  std::vector<void*> pages(per_granule);
  const size_t mapped = HeapRange::mapped_bytes();
  REQUIRE(big.allocate(pages.data(), pages.size()) == pages.size());
  CHECK(big.granules() == 1);
  CHECK(HeapRange::mapped_bytes() == mapped + kGranuleBytes);
  big.deallocate(pages.data(), pages.size() - 1);
  CHECK(big.granules() == 1);  // one page still out
  big.deallocate(&pages.back(), 1);
  CHECK(big.granules() == 0);
  CHECK(HeapRange::mapped_bytes() == mapped);  // unmapped: the address space is back
  CHECK_FALSE(HeapRange::contains(pages.front()));
}

TEST_CASE("CachedPageAllocator: defaults, upstream, capacity and cache hits") {
  CachedPageAllocator cache;
  CHECK(&cache.upstream() == &SystemPageAllocator::instance());
  CHECK(cache.page_size() == os::page_size());
  CHECK(cache.free_page_capacity() == 128);
  CHECK(cache.free_page_num() == 0);

  CountingUpstream upstream(SystemPageAllocator::instance());
  cache.set_upstream(upstream);
  cache.set_free_page_capacity(8);

  void* pages[10];
  REQUIRE(cache.allocate(pages, 10) == 10);  // empty cache: all from upstream
  CHECK(upstream.allocated == 10);
  auto summary = cache.cache_hit_summary();
  CHECK(summary.sum == 0);
  CHECK(summary.num == 10);

  cache.deallocate(pages, 10);  // 8 kept, 2 over capacity go upstream
  CHECK(cache.free_page_num() == 8);
  CHECK(upstream.deallocated == 2);

  void* again[10];
  REQUIRE(cache.allocate(again, 10) == 10);  // 8 hits, 2 from upstream
  summary = cache.cache_hit_summary();
  CHECK(summary.sum == 8);
  CHECK(summary.num == 20);
  CHECK(upstream.allocated == 12);
  CHECK(cache.free_page_num() == 0);

  cache.deallocate(again, 10);
  cache.set_free_page_capacity(3);  // lowering the capacity hands the surplus upstream
  CHECK(cache.free_page_num() == 3);
  CHECK(upstream.deallocated == 2 + 2 + 5);
  cache.set_free_page_capacity(1u << 20);  // clamped to the compile-time ceiling
  CHECK(cache.free_page_capacity() == kPageCacheMaxCapacity);
  cache.release_all();
  CHECK(cache.free_page_num() == 0);
  CHECK(upstream.deallocated == 10 + 2);
  cache.set_upstream(SystemPageAllocator::instance());
}

// Pages cycled within the period stay; pages that sat unused through it go upstream.
TEST_CASE("CachedPageAllocator purges the pages that sat idle through a purge period") {
  CountingUpstream upstream(SystemPageAllocator::instance());
  CachedPageAllocator cache;
  cache.set_upstream(upstream);
  cache.set_free_page_capacity(100);
  cache.set_purge_delay_ms(200);
  void* pages[10];
  open_periods_with_ten_cached(cache, pages, 260);
  CHECK(cache.pages_purged() == 0);
  CHECK(cache.free_page_num() == 10);
  void* two[2];
  cycle_two_then_end_period(cache, two, 260);  // low-water mark 8
  CHECK(cache.pages_purged() == 8);
  CHECK(cache.free_page_num() == 2);
  CHECK(upstream.deallocated == 8);
  cache.set_purge_delay_ms(CachedPageAllocator::kNeverPurge);
  cache.release_all();
}

// The burst room: pages beyond its first `kept` that sit unused through its short period go,
// while the kept ones wait for the purge delay.
TEST_CASE("CachedPageAllocator: idle pages beyond the burst room's kept go after its period") {
  CountingUpstream upstream(SystemPageAllocator::instance());
  CachedPageAllocator cache;
  cache.set_upstream(upstream);
  cache.set_free_page_capacity(100);
  cache.set_purge_delay_ms(600000);  // never up in this test
  cache.set_burst_room(3, 200);
  void* pages[10];
  open_periods_with_ten_cached(cache, pages, 260);
  CHECK(cache.pages_purged() == 0);
  void* two[2];
  cycle_two_then_end_period(cache, two, 260);  // low-water mark 8
  CHECK(cache.pages_purged() == 5);            // 8 idle, 3 of them kept
  CHECK(cache.free_page_num() == 5);
  CHECK(upstream.deallocated == 5);
  std::this_thread::sleep_for(std::chrono::milliseconds(260));
  cache.deallocate(two, 0);
  CHECK(cache.free_page_num() == 3);  // the kept ones wait for the delay
  CHECK(upstream.deallocated == 7);
  cache.set_purge_delay_ms(CachedPageAllocator::kNeverPurge);
  cache.release_all();
}

// Pages the burst room gave back lower the purge delay's low-water mark too: pages given back
// to the cache after that, within the delay's period, are not counted idle through it.
TEST_CASE("CachedPageAllocator: after a burst purge, the delay purges only what stayed idle") {
  CountingUpstream upstream(SystemPageAllocator::instance());
  CachedPageAllocator cache;
  cache.set_upstream(upstream);
  cache.set_free_page_capacity(100);
  cache.set_purge_delay_ms(400);
  cache.set_burst_room(3, 100);
  void* pages[10];
  open_periods_with_ten_cached(cache, pages, 450);  // the delay and the burst periods
  CHECK(cache.pages_purged() == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(130));
  cache.deallocate(pages, 0);  // the burst period ends: 7 go, 3 are kept
  CHECK(cache.free_page_num() == 3);
  void* fresh[5];
  REQUIRE(upstream.allocate(fresh, 5) == 5);
  cache.deallocate(fresh, 5);  // 8 cached, 5 of them just given back
  std::this_thread::sleep_for(std::chrono::milliseconds(330));
  cache.deallocate(fresh, 0);  // the delay's period ends: idle through it, 3
  CHECK(cache.free_page_num() == 5);
  CHECK(cache.pages_purged() == 7 + 3);
  cache.set_purge_delay_ms(CachedPageAllocator::kNeverPurge);
  cache.release_all();
}

TEST_CASE("CachedPageAllocator stays consistent under two threads") {
  CachedPageAllocator cache;
  cache.set_free_page_capacity(16);
  std::atomic<bool> overlap{false};
  auto worker = [&](unsigned char tag) {
    void* pages[8];
    for (int round = 0; round < 2000; ++round) {
      if (cache.allocate(pages, 8) != 8) {
        overlap = true;
        return;
      }
      for (void* p : pages) memset(p, tag, 64);
      for (void* p : pages)
        if (static_cast<unsigned char*>(p)[63] != tag) overlap = true;  // shared with the other thread
      cache.deallocate(pages, 8);
    }
  };
  std::thread a(worker, 1), b(worker, 2);
  a.join();
  b.join();
  CHECK_FALSE(overlap);
  CHECK(cache.free_page_num() <= 16);
  const auto summary = cache.cache_hit_summary();
  CHECK(summary.num == 2 * 2000 * 8);
  CHECK(summary.sum > summary.num / 2);  // most requests are served by the cache
}
