// The page_allocator seed's interface, as a user of <bitslab/toolkit.h> calls it: the same
// SystemPageAllocator and CachedPageAllocator objects that libbitslab.so runs on (core/page).
// tests/unit/page_allocator_test.cc covers their internals (purging, granule reuse, threads).
#include <doctest/doctest.h>

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <set>

#include "tests/support/child.h"
#include "toolkit/toolkit.h"

using bitslab::CachedPageAllocator;
using bitslab::PageAllocator;
using bitslab::SystemPageAllocator;

namespace {
// A user's own upstream: hands out pages from a fixed pool and counts the calls, to show the
// cache stands in front of any PageAllocator, and what it forwards.
class PoolUpstream final : public PageAllocator {
 public:
  size_t allocate(void** pages, size_t n) override {
    ++calls;
    size_t got = 0;
    while (got < n && next_ < kPages) pages[got++] = storage_ + (next_++) * kPageBytes;
    if (got < n) errno = ENOMEM;
    return got;
  }
  void deallocate(void* const*, size_t n) override { given_back += n; }
  size_t page_size() const override { return kPageBytes; }

  static constexpr size_t kPageBytes = 256, kPages = 16;
  size_t calls = 0, given_back = 0;

 private:
  alignas(kPageBytes) char storage_[kPages * kPageBytes];
  size_t next_ = 0;
};
}  // namespace

TEST_CASE("page allocators: the seed's usage, batch allocate and deallocate") {
  auto& system_page_allocator = SystemPageAllocator::instance();
  CHECK(system_page_allocator.page_size() == static_cast<size_t>(sysconf(_SC_PAGESIZE)));

  CachedPageAllocator cached_page_allocator;
  cached_page_allocator.set_upstream(system_page_allocator);
  cached_page_allocator.set_free_page_capacity(128);
  PageAllocator& page_allocator = cached_page_allocator;
  const size_t size = page_allocator.page_size();
  CHECK(size == system_page_allocator.page_size());

  void* pages[100];
  REQUIRE(page_allocator.allocate(pages, 100) == 100);
  std::set<void*> distinct(pages, pages + 100);
  CHECK(distinct.size() == 100);
  for (void* p : pages) {
    CHECK(reinterpret_cast<uintptr_t>(p) % size == 0);
    std::memset(p, 0x5a, size);  // every byte of every page is writable
  }
  page_allocator.deallocate(pages, 100);
  CHECK(cached_page_allocator.free_page_num() == 100);
  CHECK(cached_page_allocator.free_page_capacity() == 128);

  // Hit-rate monitoring: sample the summary twice and take the difference.
  const auto before = cached_page_allocator.cache_hit_summary();
  void* again[150];
  REQUIRE(page_allocator.allocate(again, 150) == 150);  // 100 from the cache, 50 from upstream
  const auto after = cached_page_allocator.cache_hit_summary();
  CHECK(after.num - before.num == 150);
  CHECK(after.sum - before.sum == 100);
  CHECK(std::set<void*>(again, again + 100) == distinct);  // the cached pages come back first
  page_allocator.deallocate(again, 150);  // 128 kept, 22 over capacity go upstream
  CHECK(cached_page_allocator.free_page_num() == 128);
}

TEST_CASE("page allocators: a cache over a user's own upstream forwards what it cannot keep") {
  PoolUpstream upstream;
  CachedPageAllocator cache;
  cache.set_upstream(upstream);
  cache.set_free_page_capacity(4);
  CHECK(cache.page_size() == PoolUpstream::kPageBytes);

  void* pages[PoolUpstream::kPages + 1];
  errno = 0;
  // The upstream has 16 pages: asking for 17 gives 16 and ENOMEM, and those 16 are valid.
  CHECK(cache.allocate(pages, PoolUpstream::kPages + 1) == PoolUpstream::kPages);
  CHECK(errno == ENOMEM);
  cache.deallocate(pages, PoolUpstream::kPages);
  CHECK(cache.free_page_num() == 4);
  CHECK(upstream.given_back == PoolUpstream::kPages - 4);
  void* one = cache.allocate_one();
  CHECK(one == pages[3]);  // a stack: the last page given back is the first handed out
  cache.deallocate_one(one);
  // Switching upstream hands the cached pages to the old one first.
  cache.set_upstream(SystemPageAllocator::instance());
  CHECK(upstream.given_back == PoolUpstream::kPages);
  CHECK(cache.free_page_num() == 0);
}

TEST_CASE("page allocators: bad pages given back abort naming the address") {
  SystemPageAllocator& system = SystemPageAllocator::instance();
  void* page = system.allocate_one();
  REQUIRE(page != nullptr);
  system.deallocate_one(page);

  auto twice = bitslab::test::run_in_child([&] { system.deallocate_one(page); });
  CHECK(twice.signaled);
  CHECK(twice.signal == SIGABRT);
  CHECK(twice.stderr_text.find(bitslab::test::hex_address(page)) != std::string::npos);

  static char not_a_page[64];
  auto foreign = bitslab::test::run_in_child([&] { system.deallocate_one(not_a_page); });
  CHECK(foreign.signaled);
  CHECK(foreign.stderr_text.find("never handed out") != std::string::npos);

  // The cache would hand a bad pointer to its next caller, so it checks what it can at once.
  char* inside = static_cast<char*>(system.allocate_one()) + 8;
  auto misaligned = bitslab::test::run_in_child([&] {
    CachedPageAllocator cache;
    cache.deallocate_one(inside);
  });
  CHECK(misaligned.signaled);
  CHECK(misaligned.stderr_text ==
        "bitslab: page given back to the page cache is not aligned to a page: " +
            bitslab::test::hex_address(inside) + "\n");
  system.deallocate_one(inside - 8);
}
