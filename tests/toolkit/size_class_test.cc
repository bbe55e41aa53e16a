// SizeClassAllocator (the Custom Memory Allocator seed): the core's class table, a bitmap per
// class, malloc above 1024 B and for a full class, bad frees, and the per-block overhead.
#include <doctest/doctest.h>

#include <malloc.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <set>
#include <stdexcept>
#include <vector>

#include "tests/support/child.h"
#include "toolkit/size_class_allocator.h"

using bitslab::SizeClassAllocator;
using bitslab::test::hex_address;
using bitslab::test::run_in_child;

TEST_CASE("SizeClassAllocator: each size gets the smallest class that fits, from the chunk") {
  SizeClassAllocator core_table(64);
  SizeClassAllocator seed_spacing(64, 16);
  CHECK(core_table.class_count() == 24);
  CHECK(seed_spacing.class_count() == 64);
  CHECK(seed_spacing.class_size(0) == 16);
  CHECK(seed_spacing.class_size(63) == 1024);
  for (SizeClassAllocator* heap_ptr : {&core_table, &seed_spacing}) {
    SizeClassAllocator& heap = *heap_ptr;
    for (size_t size = 0; size <= SizeClassAllocator::kMaxManagedSize; size += 7) {
      void* p = heap.allocate(size);
      REQUIRE(p != nullptr);
      CHECK(heap.owns(p));
      CHECK(reinterpret_cast<uintptr_t>(p) % 16 == 0);
      const size_t usable = heap.usable_size(p);
      CHECK(usable >= size);
      CHECK(usable >= 16);
      // The smallest class that fits: the one below it is too small.
      const unsigned cls = heap.class_of(size);
      CHECK(heap.class_size(cls) == usable);
      CHECK((cls == 0 || heap.class_size(cls - 1) < size));
      std::memset(p, 0xcd, usable);
      heap.deallocate(p);
    }
    CHECK(heap.fallbacks() == 0);
    for (unsigned cls = 0; cls < heap.class_count(); ++cls) CHECK(heap.live_blocks(cls) == 0);
  }
}

TEST_CASE("SizeClassAllocator: a full class and a large size fall back to malloc") {
  SizeClassAllocator heap(100);  // not a multiple of 64: the last bitmap word is partial
  std::vector<void*> ours;
  std::set<void*> distinct;
  for (int i = 0; i < 100; ++i) {
    void* p = heap.allocate(40);  // class 48
    REQUIRE(heap.owns(p));
    std::memset(p, i, 40);
    ours.push_back(p);
    distinct.insert(p);
  }
  CHECK(distinct.size() == 100);
  CHECK(heap.live_blocks(2) == 100);
  for (int i = 0; i < 100; ++i) CHECK(static_cast<unsigned char*>(ours[i])[39] == i);

  void* overflow = heap.allocate(40);  // the class is full: malloc
  REQUIRE(overflow != nullptr);
  CHECK_FALSE(heap.owns(overflow));
  void* large = heap.allocate(5000);
  REQUIRE(large != nullptr);
  CHECK_FALSE(heap.owns(large));
  CHECK(heap.usable_size(large) >= 5000);
  CHECK(heap.fallbacks() == 2);
  heap.deallocate(overflow);  // to free()
  heap.deallocate(large);

  // A freed block is found again by the next-fit search, wrapping round the bitmap.
  heap.deallocate(ours[3]);
  heap.deallocate(ours[97]);
  CHECK(heap.live_blocks(2) == 98);
  std::set<void*> again{heap.allocate(33), heap.allocate(48)};
  CHECK(again == std::set<void*>{ours[3], ours[97]});
  for (void* p : ours) heap.deallocate(p);
  CHECK(heap.live_blocks(2) == 0);

  errno = 0;
  CHECK(heap.allocate(SIZE_MAX) == nullptr);  // malloc refuses: nullptr + ENOMEM
  CHECK(errno == ENOMEM);
}

TEST_CASE("SizeClassAllocator: bad sizes throw, and bad frees abort naming the address") {
  CHECK_THROWS_AS(SizeClassAllocator(0), std::invalid_argument);
  CHECK_THROWS_AS(SizeClassAllocator(SizeClassAllocator::kMaxBlocksPerClass + 1), std::invalid_argument);
  CHECK_THROWS_AS(SizeClassAllocator(16, 8), std::invalid_argument);     // below 16 B
  CHECK_THROWS_AS(SizeClassAllocator(16, 48), std::invalid_argument);    // not a power of two
  CHECK_THROWS_AS(SizeClassAllocator(16, 2048), std::invalid_argument);  // above 1024

  SizeClassAllocator heap(16);
  char* p = static_cast<char*>(heap.allocate(100));  // class 112
  char* q = static_cast<char*>(heap.allocate(100));
  heap.deallocate(q);
  auto twice = run_in_child([&] { heap.deallocate(q); });
  CHECK(twice.signaled);
  CHECK(twice.signal == SIGABRT);
  CHECK(twice.stderr_text == "bitslab: SizeClassAllocator: double free of " + hex_address(q) + "\n");
  auto interior = run_in_child([&] { heap.deallocate(p + 16); });
  CHECK(interior.signaled);
  CHECK(interior.stderr_text ==
        "bitslab: SizeClassAllocator: pointer not at the start of a block: " + hex_address(p + 16) + "\n");
  // The first bytes of the reservation are class 0's bitmap, not a block.
  char* bitmap = p;
  while (heap.owns(bitmap - 1)) --bitmap;
  auto metadata = run_in_child([&] { heap.deallocate(bitmap); });
  CHECK(metadata.signaled);
  CHECK(metadata.stderr_text.find(hex_address(bitmap)) != std::string::npos);
  heap.deallocate(p);
}

TEST_CASE("SizeClassAllocator: per-block overhead over every size 1..1024, against glibc") {
  // Overhead = the bytes a block takes beyond the request: class rounding plus the bitmap's
  // bit for us; glibc's 8 B chunk header plus its rounding (malloc_usable_size + 8 - size).
  SizeClassAllocator core_table(1), seed_spacing(1, 16);
  const size_t sizes = SizeClassAllocator::kMaxManagedSize;
  auto mean_overhead = [&](SizeClassAllocator& heap) {
    double sum = 0;
    for (size_t size = 1; size <= sizes; ++size) {
      void* p = heap.allocate(size);
      REQUIRE(heap.owns(p));
      sum += static_cast<double>(heap.usable_size(p) - size);
      heap.deallocate(p);
    }
    return sum / sizes + 1.0 / 8;  // and one bitmap bit per block
  };
  double glibc = 0;
  for (size_t size = 1; size <= sizes; ++size) {
    void* m = malloc(size);
    glibc += static_cast<double>(malloc_usable_size(m) + sizeof(size_t) - size);
    free(m);
  }
  glibc /= sizes;
  const double core = mean_overhead(core_table), linear = mean_overhead(seed_spacing);
  MESSAGE("mean overhead per block over sizes 1..1024: core table " << core << " B, class_spacing 16 "
          << linear << " B, glibc malloc " << glibc << " B");
  // 16 B classes round up by 7.5 B on average (0..15), plus the bit.
  CHECK(linear == doctest::Approx(7.5 + 0.125));
  // The core's table: 16 B apart up to 128 B, then at most 25% apart.
  CHECK(core > linear);
  CHECK(core < 0.25 * 1024 / 2);
  CHECK(core_table.bitmap_bytes() == 24 * 64);  // one cache line per class for one block
}
