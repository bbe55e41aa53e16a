// PageArena and FixedBlockAllocator (the hpalloc seed): pages in order, the size limit, bad
// sizes, blocks that never overlap, O(1) reuse, and every bad free aborting by address.
#include <doctest/doctest.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "tests/support/child.h"
#include "toolkit/fixed_block_allocator.h"
#include "toolkit/page_arena.h"

using bitslab::FixedBlockAllocator;
using bitslab::PageArena;
using bitslab::test::hex_address;
using bitslab::test::run_in_child;

namespace {
const size_t kPage = PageArena::os_page_size();

void check_aborts_naming(const bitslab::test::ChildResult& child, const char* what, const void* p) {
  CHECK(child.signaled);
  CHECK(child.signal == SIGABRT);
  CHECK(child.stderr_text == std::string("bitslab: ") + what + " " + hex_address(p) + "\n");
}
}  // namespace

TEST_CASE("PageArena hands out its pages in address order, then nullptr") {
  PageArena arena(8 * kPage);
  CHECK(arena.page_size() == kPage);
  CHECK(arena.total_pages() == 8);
  CHECK(arena.pages_allocated() == 0);
  char* first = static_cast<char*>(arena.alloc_page());
  REQUIRE(first != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(first) % kPage == 0);
  std::memset(first, 1, kPage);
  for (size_t i = 1; i < 8; ++i) {
    char* page = static_cast<char*>(arena.alloc_page());
    CHECK(page == first + i * kPage);
    std::memset(page, 1, kPage);
  }
  CHECK(arena.pages_allocated() == 8);
  errno = 0;
  CHECK(arena.alloc_page() == nullptr);
  CHECK(errno == ENOMEM);
  CHECK(arena.pages_allocated() == 8);  // exhaustion does not move the count past the end
  CHECK(arena.contains(first + 8 * kPage - 1));
  CHECK_FALSE(arena.contains(first + 8 * kPage));
  CHECK_FALSE(arena.contains(first - 1));
}

TEST_CASE("PageArena: a bad size throws, the 256 MiB limit holds, and it moves") {
  CHECK_THROWS_AS(PageArena(0), std::invalid_argument);
  CHECK_THROWS_AS(PageArena(kPage + 1), std::invalid_argument);
  CHECK_THROWS_AS(PageArena(kPage / 2), std::invalid_argument);
  CHECK_THROWS_AS(PageArena(PageArena::kMaxBytes + kPage), std::invalid_argument);
  PageArena biggest(PageArena::kMaxBytes);  // reserved, not committed: touching one page costs one
  CHECK(biggest.total_pages() == PageArena::kMaxBytes / kPage);
  void* page = biggest.alloc_page();
  REQUIRE(page != nullptr);

  PageArena moved(std::move(biggest));
  CHECK(moved.pages_allocated() == 1);
  CHECK(moved.contains(page));
  CHECK(biggest.total_pages() == 0);
  CHECK(biggest.alloc_page() == nullptr);  // the moved-from arena is empty
}

TEST_CASE("PageArena: threads never get the same page") {
  PageArena arena(1024 * kPage);
  std::vector<void*> got[2];
  std::thread a([&] { while (void* p = arena.alloc_page()) got[0].push_back(p); });
  std::thread b([&] { while (void* p = arena.alloc_page()) got[1].push_back(p); });
  a.join();
  b.join();
  std::set<void*> all(got[0].begin(), got[0].end());
  all.insert(got[1].begin(), got[1].end());
  CHECK(all.size() == 1024);
  CHECK(got[0].size() + got[1].size() == 1024);
}

TEST_CASE("FixedBlockAllocator: blocks are aligned, distinct and reused in O(1)") {
  PageArena arena(16 * kPage);
  FixedBlockAllocator blocks(arena, 64);
  CHECK(blocks.block_size() == 64);
  // Per page: a header of 16 B plus the bitmap, then the blocks (63 of 64 B on 4 KiB pages).
  CHECK(blocks.blocks_per_page() == (kPage - 16 - 16 * ((kPage / 64 + 127) / 128)) / 64);
  MESSAGE("64 B blocks, " << kPage << " B pages: " << blocks.blocks_per_page()
                          << " blocks per page, overhead " << blocks.overhead_per_block()
                          << " B per block");
  CHECK(blocks.overhead_per_block() < 2.0);

  std::vector<unsigned char*> live;
  while (void* p = blocks.allocate()) {
    CHECK(reinterpret_cast<uintptr_t>(p) % 16 == 0);
    std::memset(p, static_cast<int>(live.size() & 0xff), 64);
    live.push_back(static_cast<unsigned char*>(p));
  }
  CHECK(errno == ENOMEM);
  CHECK(live.size() == 16 * blocks.blocks_per_page());  // every page of the arena used
  CHECK(blocks.pages_used() == 16);
  CHECK(blocks.live_blocks() == live.size());
  for (size_t i = 0; i < live.size(); ++i) {  // no block overlapped another
    CHECK(live[i][0] == (i & 0xff));
    CHECK(live[i][63] == (i & 0xff));
  }
  // Freed blocks come back first (LIFO), without touching the exhausted arena.
  blocks.deallocate(live[5]);
  blocks.deallocate(live[700]);
  CHECK(blocks.live_blocks() == live.size() - 2);
  CHECK(blocks.allocate() == live[700]);
  CHECK(blocks.allocate() == live[5]);
  CHECK(blocks.allocate() == nullptr);
  for (unsigned char* p : live) blocks.deallocate(p);
  CHECK(blocks.live_blocks() == 0);
  blocks.deallocate(nullptr);  // a no-op
}

TEST_CASE("FixedBlockAllocator: two allocators share one arena, and bad block sizes throw") {
  PageArena arena(4 * kPage);
  FixedBlockAllocator small(arena, 16), big(arena, 1024);
  void* a = small.allocate();
  void* b = big.allocate();
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  CHECK(arena.pages_allocated() == 2);
  CHECK(big.blocks_per_page() == (kPage - 16 - 8) / 1024);  // the header takes part of a block
  small.deallocate(a);
  big.deallocate(b);

  CHECK_THROWS_AS(FixedBlockAllocator(arena, 0), std::invalid_argument);
  CHECK_THROWS_AS(FixedBlockAllocator(arena, 8), std::invalid_argument);
  CHECK_THROWS_AS(FixedBlockAllocator(arena, 72), std::invalid_argument);  // not a multiple of 16
  CHECK_THROWS_AS(FixedBlockAllocator(arena, kPage), std::invalid_argument);  // no room for a header
  CHECK_THROWS_AS(FixedBlockAllocator(arena, SIZE_MAX - 15), std::invalid_argument);  // size + header wraps
  CHECK_NOTHROW(FixedBlockAllocator(arena, kPage - 32));  // one block per page
}

TEST_CASE("FixedBlockAllocator: double, foreign, interior and cross-allocator frees abort") {
  PageArena arena(4 * kPage);
  FixedBlockAllocator blocks(arena, 64), others(arena, 64);
  char* p = static_cast<char*>(blocks.allocate());
  char* q = static_cast<char*>(blocks.allocate());
  void* theirs = others.allocate();
  REQUIRE((p && q && theirs));
  blocks.deallocate(q);

  check_aborts_naming(run_in_child([&] { blocks.deallocate(q); }),
                      "FixedBlockAllocator: double free of", q);
  check_aborts_naming(run_in_child([&] { blocks.deallocate(p + 8); }),
                      "FixedBlockAllocator: pointer not at the start of a block:", p + 8);
  static char outside[64];
  check_aborts_naming(run_in_child([&] { blocks.deallocate(outside); }),
                      "FixedBlockAllocator: pointer not from its arena:", outside);
  check_aborts_naming(run_in_child([&] { blocks.deallocate(theirs); }),
                      "FixedBlockAllocator: pointer in a page of another allocator:", theirs);
  // The page header itself is not a block.
  char* header = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(p) & ~(uintptr_t{kPage} - 1));
  check_aborts_naming(run_in_child([&] { blocks.deallocate(header + 8); }),
                      "FixedBlockAllocator: pointer not at the start of a block:", header + 8);
  blocks.deallocate(p);  // and the parent's allocator is still whole
  CHECK(blocks.live_blocks() == 0);
  others.deallocate(theirs);
}
