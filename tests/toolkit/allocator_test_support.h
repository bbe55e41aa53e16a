// tests/toolkit/allocator_test_support.h — what the tests of the Zig seed's allocators share
// (arena_allocator_test.cc, fixed_buffer_allocator_test.cc, leak_checking_allocator_test.cc):
// page allocators that count or refuse, and blocks checked for alignment, overlap and contents.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

#include "core/os/os.h"
#include "core/page/system_page_allocator.h"

namespace bitslab::test {

// Forwards to the OS pages, and checks the arena's traffic: every page given back was handed
// out and not given back before. `limit` pages at most, then it refuses as the OS would.
class CountingPageAllocator final : public bitslab::PageAllocator {
 public:
  explicit CountingPageAllocator(size_t limit = SIZE_MAX) : limit_(limit) {}
  size_t allocate(void** pages, size_t n) override {
    size_t got = 0;
    while (got < n && live_.size() < limit_) {
      void* page = upstream().allocate_one();
      if (page == nullptr) break;
      live_.insert(page);
      pages[got++] = page;
    }
    if (got < n) errno = ENOMEM;
    return got;
  }
  void deallocate(void* const* pages, size_t n) override {
    ++deallocate_calls_;
    for (size_t i = 0; i < n; ++i) {
      REQUIRE(live_.erase(pages[i]) == 1);  // handed out, and only given back once
      upstream().deallocate_one(pages[i]);
    }
  }
  size_t page_size() const override { return upstream().page_size(); }
  size_t in_use() const { return live_.size(); }
  size_t deallocate_calls() const { return deallocate_calls_; }

 private:
  static bitslab::SystemPageAllocator& upstream() { return bitslab::SystemPageAllocator::instance(); }
  size_t limit_;
  size_t deallocate_calls_ = 0;
  std::set<void*> live_;
};

// The page allocator of a machine out of memory: never a page, and it does not even set errno
// (the arena must report ENOMEM itself).
class RefusingPageAllocator final : public bitslab::PageAllocator {
 public:
  size_t allocate(void**, size_t) override { return 0; }
  void deallocate(void* const*, size_t) override { FAIL("nothing was handed out"); }
  size_t page_size() const override { return bitslab::os::page_size(); }
};

inline bool aligned(const void* p, size_t alignment) {
  return reinterpret_cast<uintptr_t>(p) % alignment == 0;
}

struct Block {
  unsigned char* p;
  size_t bytes;
  unsigned char pattern;
};

inline void fill(const Block& b) { memset(b.p, b.pattern, b.bytes); }
inline bool intact(const Block& b) {
  for (size_t i = 0; i < b.bytes; ++i)
    if (b.p[i] != b.pattern) return false;
  return true;
}
// No two blocks share a byte.
inline bool disjoint(std::vector<Block> blocks) {
  std::sort(blocks.begin(), blocks.end(), [](const Block& a, const Block& b) { return a.p < b.p; });
  for (size_t i = 1; i < blocks.size(); ++i)
    if (blocks[i - 1].p + blocks[i - 1].bytes > blocks[i].p) return false;
  return true;
}

// A deterministic pseudo-random sequence (xorshift), so a failure reproduces.
struct Sequence {
  uint64_t state = 0x9e3779b97f4a7c15ull;
  uint64_t next() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  }
};

}  // namespace bitslab::test
