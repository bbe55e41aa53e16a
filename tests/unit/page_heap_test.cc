// Layer 4: the page heap (core/backend/page_heap.h): granules given back are decommitted, marked
// free, reused by any kind, and unmapped once they stay free through the purge delay.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>

#include "core/backend/page_heap.h"
#include "core/os/heap_range.h"
#include "tests/support/child.h"

using namespace bitslab;

TEST_CASE("page heap: a granule given back is free, zeroed, and the next take of any kind reuses it") {
  PageHeap heap;
  char* g = static_cast<char*>(heap.take(1, GranuleKind::kPool));
  REQUIRE(g != nullptr);
  CHECK(HeapRange::kind_of(g) == GranuleKind::kPool);
  std::memset(g, 0x5a, kGranuleBytes);
  heap.give(g, 1);
  CHECK(HeapRange::kind_of(g) == GranuleKind::kFree);  // ours, but no block: frees of it abort
  CHECK(heap.counts().free_granules == 1);
  char* again = static_cast<char*>(heap.take(1, GranuleKind::kSlabs));  // another kind
  CHECK(again == g);
  CHECK(heap.counts().hits == 1);
  CHECK(HeapRange::kind_of(again) == GranuleKind::kSlabs);
  bool zero = true;  // decommitted on the way back: every byte reads zero, the link's too
  for (size_t i = 0; i < kGranuleBytes; i += 512) zero = zero && again[i] == 0;
  CHECK(zero);
  heap.give(again, 1);
  heap.purge(0, 0, /*force=*/true);
}

TEST_CASE("page heap: granules free through the delay are unmapped, younger ones kept") {
  PageHeap heap;
  void* g = heap.take(1, GranuleKind::kPages);
  REQUIRE(g != nullptr);
  const size_t mapped = HeapRange::mapped_bytes();
  heap.give(g, 1);
  CHECK(heap.purge(0, uint64_t{1} << 62, false) == 0);  // "now" is before the delay is up
  CHECK(HeapRange::contains(g));
  CHECK(heap.purge(~uint64_t{0}, 1000, false) == kGranuleBytes);  // long past it
  CHECK_FALSE(HeapRange::contains(g));
  CHECK(HeapRange::mapped_bytes() == mapped - kGranuleBytes);
  CHECK(heap.counts().free_granules == 0);
}

TEST_CASE("page heap: runs are reused by the same length only, and a run given back twice aborts") {
  PageHeap heap;
  void* two = heap.take(2, GranuleKind::kLarge, GranuleKind::kLargeTail);
  REQUIRE(two != nullptr);
  CHECK(HeapRange::kind_of(static_cast<char*>(two) + kGranuleBytes) == GranuleKind::kLargeTail);
  heap.give(two, 2);
  void* one = heap.take(1, GranuleKind::kPages);
  CHECK(one != two);  // a one-granule request does not split the run
  CHECK(heap.take(2, GranuleKind::kPages) == two);
  auto twice = test::run_in_child([&] {
    heap.give(one, 1);
    heap.give(one, 1);
  });
  CHECK(test::aborted_naming(twice, one, "given back to the page heap twice"));
  heap.give(one, 1);
  heap.give(two, 2);
  heap.purge(0, 0, true);
}
