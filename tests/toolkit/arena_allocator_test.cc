// ArenaAllocator (the Zig seed's ArenaAllocator over any PageAllocator): bump allocation in
// pages, dedicated blocks for what does not fit a page, release() hands everything back.
#include <doctest/doctest.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/page/system_page_allocator.h"
#include "tests/toolkit/allocator_test_support.h"
#include "toolkit/page_arena_allocator.h"

using bitslab::ArenaAllocator;
using namespace bitslab::test;

TEST_CASE("arena: mixed sizes and alignments are aligned, disjoint and keep their contents") {
  CountingPageAllocator pages;
  ArenaAllocator arena(pages);
  const size_t page = pages.page_size();
  Sequence random;
  std::vector<Block> blocks;
  size_t asked = 0;
  for (size_t i = 0; i < 3000; ++i) {
    const size_t alignment = size_t{1} << random.next() % 9;                 // 1 .. 256
    size_t bytes = random.next() % 5 == 0 ? 0 : 1 + random.next() % 700;     // 0 .. 700
    if (i % 97 == 0) bytes = page + random.next() % (3 * page);              // dedicated blocks
    void* p = arena.allocate(bytes, alignment);
    REQUIRE(p != nullptr);
    CHECK(aligned(p, alignment));
    const size_t taken = bytes == 0 ? 1 : bytes;  // allocate(0) gives a distinct 1-byte block
    asked += taken;
    blocks.push_back({static_cast<unsigned char*>(p), taken, static_cast<unsigned char>(i * 37 + 1)});
    fill(blocks.back());
  }
  CHECK(disjoint(blocks));
  for (const Block& b : blocks) REQUIRE(intact(b));  // nothing written over a neighbour
  CHECK(arena.bytes_allocated() == asked);
  CHECK(arena.pages_held() == pages.in_use());
  CHECK(arena.dedicated_blocks() == 31);  // i = 0, 97, ..., 2910
  CHECK(arena.bytes_reserved() >= asked);

  arena.release();
  CHECK(pages.in_use() == 0);  // every page went back, each once (CountingPageAllocator checks)
  CHECK(arena.pages_held() == 0);
  CHECK(arena.dedicated_blocks() == 0);
  CHECK(arena.bytes_allocated() == 0);
  CHECK(arena.bytes_reserved() == 0);

  // Usable again after release.
  void* again = arena.allocate(100);
  REQUIRE(again != nullptr);
  memset(again, 1, 100);
  CHECK(pages.in_use() == 1);
}

TEST_CASE("arena: release and the destructor hand every page back to a private SystemPageAllocator") {
  // 64 KiB pages: a page size other than the OS's. Static: a SystemPageAllocator never unmaps
  // its granules, so one instance serves every run of this test.
  static bitslab::SystemPageAllocator big_pages(64 * 1024);
  REQUIRE(big_pages.pages_in_use() == 0);
  {
    ArenaAllocator arena(big_pages);
    for (int i = 0; i < 1000; ++i) REQUIRE(arena.allocate(1000) != nullptr);
    // 65 blocks of 1000 bytes fit in a 64 KiB page after its 16-byte header.
    CHECK(arena.pages_held() == (1000 + 64) / 65);
    CHECK(big_pages.pages_in_use() == arena.pages_held());
    arena.release();
    CHECK(big_pages.pages_in_use() == 0);
    for (int i = 0; i < 200; ++i) REQUIRE(arena.allocate(4000) != nullptr);
    CHECK(big_pages.pages_in_use() == arena.pages_held());
    CHECK(big_pages.pages_in_use() > 0);
  }
  CHECK(big_pages.pages_in_use() == 0);  // the destructor released
}

TEST_CASE("arena: a page fills up to its last byte, then the next block takes a new page") {
  CountingPageAllocator pages;
  ArenaAllocator arena(pages);
  const size_t fits = arena.max_bytes_in_page(1);
  CHECK(fits == pages.page_size() - 16);  // 16 bytes of header per page
  auto* whole = static_cast<char*>(arena.allocate(fits, 1));
  REQUIRE(whole != nullptr);
  memset(whole, 7, fits);
  CHECK(arena.pages_held() == 1);
  CHECK(arena.dedicated_blocks() == 0);
  void* next = arena.allocate(1, 1);
  REQUIRE(next != nullptr);
  CHECK(arena.pages_held() == 2);
  CHECK(arena.allocate(fits + 1, 1) != nullptr);  // one byte more: a dedicated block
  CHECK(arena.dedicated_blocks() == 1);
  CHECK(arena.pages_held() == 2);
}

TEST_CASE("arena: a request larger than a page gets a dedicated block, large alignments too") {
  CountingPageAllocator pages;
  ArenaAllocator arena(pages);
  const size_t page = pages.page_size();

  void* small = arena.allocate(64);
  REQUIRE(small != nullptr);
  const size_t big_bytes = 10 * page + 123;
  auto* big = static_cast<unsigned char*>(arena.allocate(big_bytes));
  REQUIRE(big != nullptr);
  memset(big, 0xab, big_bytes);  // every byte is writable
  CHECK(big[big_bytes - 1] == 0xab);
  CHECK(arena.dedicated_blocks() == 1);
  CHECK(arena.pages_held() == 1);  // the page being filled was kept, not abandoned...
  void* small2 = arena.allocate(64);
  CHECK(static_cast<char*>(small2) == static_cast<char*>(small) + 64);  // ...and bumping goes on
  CHECK(arena.bytes_reserved() >= pages.page_size() + big_bytes);

  // An alignment above the page size: small or large, it cannot come from a page.
  void* huge_aligned = arena.allocate(10, size_t{1} << 20);
  REQUIRE(huge_aligned != nullptr);
  CHECK(aligned(huge_aligned, size_t{1} << 20));
  void* page_aligned = arena.allocate(page, page);
  REQUIRE(page_aligned != nullptr);
  CHECK(aligned(page_aligned, page));
  memset(page_aligned, 1, page);
  CHECK(arena.dedicated_blocks() == 3);

  // The newest dedicated block can be freed on its own: unmapped at once.
  CHECK(arena.deallocate(page_aligned, page));
  CHECK(arena.dedicated_blocks() == 2);
  CHECK_FALSE(arena.deallocate(big, big_bytes));  // not the newest: stays until release
  CHECK(arena.dedicated_blocks() == 2);

  arena.release();
  CHECK(arena.dedicated_blocks() == 0);
  CHECK(pages.in_use() == 0);
}

TEST_CASE("arena: bad input gives nullptr and errno, and changes nothing") {
  CountingPageAllocator pages;
  ArenaAllocator arena(pages);
  REQUIRE(arena.allocate(8) != nullptr);
  const size_t held = arena.pages_held(), bytes = arena.bytes_allocated();

  for (size_t bad_alignment : {size_t{0}, size_t{3}, size_t{24}, size_t{100}, SIZE_MAX}) {
    errno = 0;
    CHECK(arena.allocate(16, bad_alignment) == nullptr);
    CHECK(errno == EINVAL);
  }
  for (size_t alignment : {size_t{1}, size_t{16}, size_t{4096}, size_t{1} << 62}) {
    errno = 0;
    CHECK(arena.allocate(SIZE_MAX, alignment) == nullptr);
    CHECK(errno == ENOMEM);
    errno = 0;
    CHECK(arena.allocate(SIZE_MAX - 100, alignment) == nullptr);
    CHECK(errno == ENOMEM);
  }
  errno = 0;
  CHECK(arena.allocate(size_t{1} << 62) == nullptr);  // representable, but no OS maps 4 EiB
  CHECK(errno == ENOMEM);

  CHECK(arena.pages_held() == held);
  CHECK(arena.bytes_allocated() == bytes);
  CHECK(arena.dedicated_blocks() == 0);
  CHECK(arena.deallocate(nullptr, 0) == false);
}

TEST_CASE("arena: a backing allocator that refuses gives nullptr + ENOMEM") {
  SUBCASE("no page at all") {
    RefusingPageAllocator none;
    ArenaAllocator arena(none);
    errno = 0;
    CHECK(arena.allocate(16) == nullptr);
    CHECK(errno == ENOMEM);  // set by the arena: RefusingPageAllocator does not set it
    CHECK(arena.pages_held() == 0);
  }
  SUBCASE("the pages run out part way") {
    CountingPageAllocator two(2);
    {
      ArenaAllocator arena(two);
      const size_t fits = arena.max_bytes_in_page();
      CHECK(arena.allocate(fits) != nullptr);
      CHECK(arena.allocate(fits) != nullptr);
      errno = 0;
      CHECK(arena.allocate(fits) == nullptr);
      CHECK(errno == ENOMEM);
      CHECK(arena.pages_held() == 2);
      CHECK(arena.bytes_allocated() == 2 * fits);
      // Dedicated blocks come from the OS, not from the refusing allocator.
      CHECK(arena.allocate(3 * two.page_size()) != nullptr);
    }
    CHECK(two.in_use() == 0);
  }
}

TEST_CASE("arena: only the most recent allocation can be freed") {
  CountingPageAllocator pages;
  ArenaAllocator arena(pages);
  void* a = arena.allocate(100);
  void* b = arena.allocate(40);
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  CHECK(arena.bytes_allocated() == 140);
  CHECK_FALSE(arena.deallocate(a, 100));  // not the last: a no-op
  CHECK_FALSE(arena.deallocate(b, 39));   // wrong size: not the block that ends at the cursor
  CHECK(arena.bytes_allocated() == 140);
  CHECK(arena.deallocate(b, 40));
  CHECK(arena.bytes_allocated() == 100);
  CHECK(arena.allocate(40) == b);  // its bytes are handed out again
  void* z = arena.allocate(0);
  CHECK(arena.deallocate(z, 0));
}

TEST_CASE("arena: moving hands the pages over, and the moved-from arena is empty and usable") {
  CountingPageAllocator pages;
  {
    ArenaAllocator first(pages);
    auto* text = static_cast<char*>(first.allocate(6));
    memcpy(text, "hello", 6);
    first.allocate(2 * pages.page_size());
    ArenaAllocator second(std::move(first));
    CHECK(first.pages_held() == 0);
    CHECK(first.dedicated_blocks() == 0);
    CHECK(second.pages_held() == 1);
    CHECK(second.dedicated_blocks() == 1);
    CHECK(strcmp(text, "hello") == 0);

    REQUIRE(first.allocate(10) != nullptr);  // usable again, over the same pages
    CHECK(pages.in_use() == 2);
    ArenaAllocator third(pages);
    REQUIRE(third.allocate(10) != nullptr);
    third = std::move(second);  // third's own page is released first
    CHECK(pages.in_use() == 2);
    CHECK(third.pages_held() == 1);
    CHECK(strcmp(text, "hello") == 0);
  }
  CHECK(pages.in_use() == 0);
}

TEST_CASE("arena: the seed's example, dupe and create") {
  struct Point {
    int x, y;
  };
  ArenaAllocator arena;  // over SystemPageAllocator::instance(), the seed's page_allocator
  const char* a = arena.dupe("red", 4);
  const char* b = arena.dupe("green", 6);
  const char* c = arena.dupe("blue", 5);
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  REQUIRE(c != nullptr);
  CHECK(std::string(a) + ", " + b + ", " + c == "red, green, blue");
  Point* p = arena.create<Point>(Point{3, 4});
  REQUIRE(p != nullptr);
  CHECK(aligned(p, alignof(Point)));
  CHECK(p->x + p->y == 7);
  CHECK(arena.pages_held() == 1);
  CHECK(arena.dupe(a, SIZE_MAX) == nullptr);  // too large: ENOMEM, no copy attempted
  const int numbers[3] = {1, 2, 3};
  CHECK(arena.dupe(numbers, SIZE_MAX / 2) == nullptr);  // count * sizeof(int) overflows
}
