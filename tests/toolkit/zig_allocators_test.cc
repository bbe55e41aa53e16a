// The "Page Allocator" seed's allocators built over the page allocators: ArenaAllocator,
// FixedBufferAllocator and LeakCheckingAllocator (Zig's GeneralPurposeAllocator leak check).
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <malloc.h>
#include <unistd.h>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/api/bitslab.h"
#include "core/os/os.h"
#include "core/page/system_page_allocator.h"
#include "tests/support/child.h"
#include "toolkit/fixed_buffer_allocator.h"
#include "toolkit/leak_checking_allocator.h"
#include "toolkit/page_arena_allocator.h"

using bitslab::ArenaAllocator;
using bitslab::FixedBufferAllocator;
using bitslab::LeakCheckingAllocator;
using bitslab::test::hex_address;
using bitslab::test::run_in_child;
using Check = LeakCheckingAllocator::Check;

namespace {

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

bool aligned(const void* p, size_t alignment) { return reinterpret_cast<uintptr_t>(p) % alignment == 0; }

struct Block {
  unsigned char* p;
  size_t bytes;
  unsigned char pattern;
};

void fill(const Block& b) { memset(b.p, b.pattern, b.bytes); }
bool intact(const Block& b) {
  for (size_t i = 0; i < b.bytes; ++i)
    if (b.p[i] != b.pattern) return false;
  return true;
}
// No two blocks share a byte.
bool disjoint(std::vector<Block> blocks) {
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

}  // namespace

// ---------------------------------------------------------------------------------------------
// ArenaAllocator

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

// ---------------------------------------------------------------------------------------------
// FixedBufferAllocator

TEST_CASE("fixed buffer: exhaustion gives nullptr + ENOMEM and leaves the state unchanged") {
  alignas(16) unsigned char storage[256];
  FixedBufferAllocator buffer(storage, sizeof storage);
  CHECK(buffer.capacity() == 256);
  void* a = buffer.allocate(100, 1);
  void* b = buffer.allocate(100, 1);
  CHECK(a == storage);
  CHECK(b == storage + 100);
  errno = 0;
  CHECK(buffer.allocate(57, 1) == nullptr);
  CHECK(errno == ENOMEM);
  CHECK(buffer.used() == 200);
  errno = 0;
  CHECK(buffer.allocate(SIZE_MAX, 1) == nullptr);
  CHECK(errno == ENOMEM);
  CHECK(buffer.used() == 200);
  CHECK(buffer.allocate(56, 1) == storage + 200);  // exactly the rest
  CHECK(buffer.available() == 0);
  CHECK(buffer.allocate(0, 1) == nullptr);  // 0 takes one byte, and none is left
  CHECK(buffer.used() == 256);
}

TEST_CASE("fixed buffer: blocks are aligned by address, padding counts as used") {
  alignas(1024) unsigned char storage[512];
  FixedBufferAllocator buffer(storage + 1, 511);  // a misaligned buffer
  void* byte = buffer.allocate(1, 1);
  CHECK(byte == storage + 1);
  void* line = buffer.allocate(10, 64);
  CHECK(line == storage + 64);  // the first 64-aligned address after storage + 2
  CHECK(buffer.used() == 64 - 1 + 10);
  void* word = buffer.allocate(8);  // default: alignof(std::max_align_t)
  CHECK(aligned(word, alignof(std::max_align_t)));
  CHECK(word == storage + 80);

  const size_t used = buffer.used();
  for (size_t bad_alignment : {size_t{0}, size_t{3}, size_t{48}}) {
    errno = 0;
    CHECK(buffer.allocate(1, bad_alignment) == nullptr);
    CHECK(errno == EINVAL);
  }
  errno = 0;
  CHECK(buffer.allocate(1, 1024) == nullptr);  // the next 1024-aligned address is past the end
  CHECK(errno == ENOMEM);
  CHECK(buffer.allocate(1, size_t{1} << 63) == nullptr);  // padding larger than any room
  CHECK(buffer.used() == used);
}

TEST_CASE("fixed buffer: reset makes the whole buffer available again") {
  unsigned char storage[128];
  FixedBufferAllocator buffer(storage, sizeof storage);
  for (int i = 0; i < 8; ++i) REQUIRE(buffer.allocate(16, 1) != nullptr);
  CHECK(buffer.allocate(1, 1) == nullptr);
  buffer.reset();
  CHECK(buffer.used() == 0);
  CHECK(buffer.allocate(128, 1) == storage);
}

TEST_CASE("fixed buffer: only the last block is freed or grown in place") {
  alignas(16) unsigned char storage[256];
  FixedBufferAllocator buffer(storage, sizeof storage);
  void* a = buffer.allocate(32, 16);
  void* b = buffer.allocate(20, 16);
  REQUIRE(b == storage + 32);
  CHECK(buffer.used() == 52);

  CHECK_FALSE(buffer.deallocate(a, 32));  // not the last: a no-op
  CHECK(buffer.used() == 52);
  CHECK_FALSE(buffer.deallocate(b, 19));  // wrong size: not where the used part ends
  CHECK_FALSE(buffer.deallocate(reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(storage) + 300), 1));  // outside
  CHECK(buffer.used() == 52);

  CHECK(buffer.resize(b, 20, 100));  // the last block grows...
  CHECK(buffer.used() == 132);
  CHECK(buffer.resize(b, 100, 10));  // ...and shrinks
  CHECK(buffer.used() == 42);
  CHECK_FALSE(buffer.resize(b, 10, 1000));  // no room: unchanged
  CHECK(buffer.used() == 42);
  CHECK_FALSE(buffer.resize(a, 32, 33));  // not the last: cannot grow
  CHECK(buffer.resize(a, 32, 8));         // may shrink (nothing reclaimed)
  CHECK(buffer.used() == 42);

  CHECK(buffer.deallocate(b, 10));
  CHECK(buffer.used() == 32);
  CHECK(buffer.allocate(20, 16) == b);  // the same bytes again
  CHECK(buffer.owns(b));
  CHECK_FALSE(buffer.owns(storage + 200));
}

TEST_CASE("fixed buffer: a null buffer with a size, or one wrapping the address space, throws") {
  CHECK_THROWS_AS(FixedBufferAllocator(nullptr, 16), std::invalid_argument);
  CHECK_THROWS_AS(FixedBufferAllocator(reinterpret_cast<void*>(UINTPTR_MAX - 15), 32), std::invalid_argument);
  FixedBufferAllocator empty(nullptr, 0);  // allowed: every allocation fails
  errno = 0;
  CHECK(empty.allocate(1, 1) == nullptr);
  CHECK(errno == ENOMEM);

  unsigned char storage[64];
  FixedBufferAllocator first(storage, sizeof storage);
  REQUIRE(first.allocate(10, 1) == storage);
  FixedBufferAllocator second(std::move(first));
  CHECK(second.used() == 10);
  CHECK(first.capacity() == 0);
  CHECK(first.allocate(1, 1) == nullptr);
  CHECK(second.allocate(1, 1) == storage + 10);
}

// ---------------------------------------------------------------------------------------------
// LeakCheckingAllocator

namespace {

// A backing allocator for tests: blocks from a FixedBufferAllocator, with the arguments of
// deallocate checked against those of allocate.
struct RecordingBacking {
  alignas(4096) unsigned char storage[1 << 16];
  FixedBufferAllocator buffer{storage, sizeof storage};
  size_t allocations = 0, deallocations = 0, bytes_out = 0;
  size_t last_request = 0;
  bool refuse = false;
  struct Record {
    void* block;
    size_t bytes, alignment;
  };
  std::vector<Record> live;  // test code: the checker itself never allocates

  bitslab::BackingAllocator backing() {
    bitslab::BackingAllocator b;
    b.allocate = [](void* self, size_t bytes, size_t alignment) -> void* {
      auto& r = *static_cast<RecordingBacking*>(self);
      if (r.refuse) return nullptr;  // without errno: the checker must set ENOMEM
      void* p = r.buffer.allocate(bytes, alignment);
      if (p == nullptr) return nullptr;
      ++r.allocations;
      r.bytes_out += bytes;
      r.last_request = bytes;
      r.live.push_back({p, bytes, alignment});
      return p;
    };
    b.deallocate = [](void* self, void* block, size_t bytes, size_t alignment) {
      auto& r = *static_cast<RecordingBacking*>(self);
      auto it = std::find_if(r.live.begin(), r.live.end(), [&](const Record& x) { return x.block == block; });
      REQUIRE(it != r.live.end());
      CHECK(it->bytes == bytes);
      CHECK(it->alignment == alignment);
      r.live.erase(it);
      ++r.deallocations;
      r.bytes_out -= bytes;
    };
    b.owns = [](void* self, const void* p) { return static_cast<RecordingBacking*>(self)->buffer.owns(p); };
    b.context = this;
    return b;
  }
};

struct LeakRecord {
  const void* block;
  size_t bytes;
};
void record_leak(void* context, const void* block, size_t bytes) {
  static_cast<std::vector<LeakRecord>*>(context)->push_back({block, bytes});
}

}  // namespace

TEST_CASE("leak checker: blocks freed in any order -> ok, counters follow") {
  std::vector<LeakRecord> leaks;
  bitslab::LeakCheckOptions options;
  options.reporter = record_leak;
  options.reporter_context = &leaks;
  LeakCheckingAllocator checked(options);  // over bitslab's core
  Sequence random;
  std::vector<Block> blocks;
  size_t bytes = 0;
  for (size_t i = 0; i < 500; ++i) {
    const size_t alignment = size_t{1} << random.next() % 13;  // 1 .. 4096
    const size_t size = random.next() % 3000;
    void* p = checked.allocate(size, alignment);
    REQUIRE(p != nullptr);
    CHECK(aligned(p, alignment));
    CHECK(checked.allocated_size(p) == size);
    blocks.push_back({static_cast<unsigned char*>(p), size, static_cast<unsigned char>(i)});
    fill(blocks.back());
    bytes += size;
  }
  CHECK(checked.live_blocks() == 500);
  CHECK(checked.live_bytes() == bytes);
  CHECK(disjoint(blocks));
  for (size_t i = 0; i < blocks.size(); ++i) std::swap(blocks[i], blocks[random.next() % blocks.size()]);
  for (const Block& b : blocks) {
    REQUIRE(intact(b));  // the headers around did not spill into the blocks
    if (b.pattern % 2 == 0) checked.deallocate(b.p, b.bytes);  // sized: checked too
    else checked.deallocate(b.p);
  }
  CHECK(checked.live_blocks() == 0);
  CHECK(checked.live_bytes() == 0);
  CHECK(checked.deinit() == Check::ok);
  CHECK(leaks.empty());
  checked.deallocate(nullptr);  // like free(nullptr)
}

TEST_CASE("leak checker: a leak is reported with its address and size, then forgotten") {
  std::vector<LeakRecord> leaks;
  bitslab::LeakCheckOptions options;
  options.reporter = record_leak;
  options.reporter_context = &leaks;
  LeakCheckingAllocator checked(options);
  void* kept = checked.allocate(10);
  void* leaked1 = checked.allocate(24);
  void* leaked2 = checked.allocate(5000, 256);
  checked.deallocate(kept);
  REQUIRE(checked.live_blocks() == 2);
  CHECK(checked.live_bytes() == 5024);

  CHECK(checked.deinit() == Check::leak);
  REQUIRE(leaks.size() == 2);
  std::sort(leaks.begin(), leaks.end(), [](const LeakRecord& a, const LeakRecord& b) { return a.bytes < b.bytes; });
  CHECK(leaks[0].block == leaked1);
  CHECK(leaks[0].bytes == 24);
  CHECK(leaks[1].block == leaked2);
  CHECK(leaks[1].bytes == 5000);
  CHECK(checked.live_blocks() == 0);  // forgotten: the allocator starts over
  CHECK(checked.deinit() == Check::ok);

  // A reported leak may still be freed later (it goes to the backing), once.
  checked.deallocate(leaked1);
  checked.deallocate(leaked2);
  CHECK(checked.live_blocks() == 0);
  void* fresh = checked.allocate(8);
  CHECK(checked.live_blocks() == 1);
  checked.deallocate(fresh);
}

TEST_CASE("leak checker: the stderr report names address and size, and more than 20 leaks are counted") {
  auto one = run_in_child([] {
    LeakCheckingAllocator checked;
    checked.allocate(24);
    _exit(checked.deinit() == Check::leak ? 3 : 4);
  });
  REQUIRE(one.exited);
  CHECK(one.exit_code == 3);
  CHECK(one.stderr_text.find("bitslab: leak: block 0x") != std::string::npos);
  CHECK(one.stderr_text.find(" of 24 bytes\n") != std::string::npos);
  CHECK(one.stderr_text.find("bitslab: leak: 1 block, 24 bytes not freed") != std::string::npos);

  // The address printed is the block's: the child prints the line it expects, after the report.
  auto named = run_in_child([] {
    LeakCheckingAllocator checked;
    void* p = checked.allocate(40);
    const std::string expected = "block " + hex_address(p) + " of 40 bytes";
    checked.deinit();
    bitslab::warn({"expected: ", expected.c_str()});
  });
  REQUIRE(named.exited);
  const size_t marker = named.stderr_text.find("expected: ");
  REQUIRE(marker != std::string::npos);
  const std::string expected = named.stderr_text.substr(marker + 10, named.stderr_text.find('\n', marker) - marker - 10);
  CHECK(named.stderr_text.find("bitslab: leak: " + expected + "\n") < marker);

  auto many = run_in_child([] {
    LeakCheckingAllocator checked;
    for (int i = 0; i < 25; ++i) checked.allocate(16);
    checked.deinit();
  });
  REQUIRE(many.exited);
  size_t lines = 0;
  for (size_t at = 0; (at = many.stderr_text.find("bitslab: leak: block ", at)) != std::string::npos; ++at) ++lines;
  CHECK(lines == 20);
  CHECK(many.stderr_text.find("bitslab: leak: ... and 5 more blocks") != std::string::npos);
  CHECK(many.stderr_text.find("bitslab: leak: 25 blocks, 400 bytes not freed") != std::string::npos);
}

TEST_CASE("leak checker: the destructor checks, and fail_on_leak aborts naming the count") {
  auto quiet = run_in_child([] {
    LeakCheckingAllocator checked;
    checked.allocate(8);
  });  // destructor reports, does not abort
  CHECK(quiet.exited);
  CHECK(quiet.exit_code == 0);
  CHECK(quiet.stderr_text.find("bitslab: leak: 1 block, 8 bytes not freed") != std::string::npos);

  auto failing = run_in_child([] {
    bitslab::LeakCheckOptions options;
    options.fail_on_leak = true;
    LeakCheckingAllocator checked(options);
    checked.allocate(24);
    checked.allocate(24);
  });
  CHECK(failing.signaled);
  CHECK(failing.signal == SIGABRT);
  CHECK(failing.stderr_text.find("bitslab: LeakCheckingAllocator: 2 leaked blocks, 48 bytes (fail_on_leak)") !=
        std::string::npos);

  auto after_deinit = run_in_child([] {  // the leak found by an explicit deinit() counts too
    LeakCheckingAllocator checked;
    checked.set_fail_on_leak(true);
    checked.allocate(1);
    (void)checked.deinit();
  });
  CHECK(after_deinit.signaled);
  CHECK(after_deinit.stderr_text.find("1 leaked block, 1 bytes (fail_on_leak)") != std::string::npos);

  auto clean = run_in_child([] {
    bitslab::LeakCheckOptions options;
    options.fail_on_leak = true;
    LeakCheckingAllocator checked(options);
    checked.deallocate(checked.allocate(24));
  });
  CHECK(clean.exited);
  CHECK(clean.exit_code == 0);
  CHECK(clean.stderr_text.empty());
}

TEST_CASE("leak checker: a double free aborts naming the address") {
  void* block = nullptr;
  LeakCheckingAllocator checked;
  block = checked.allocate(48);
  checked.deallocate(block);
  auto result = run_in_child([&] { checked.deallocate(block); });
  CHECK(result.signaled);
  CHECK(result.signal == SIGABRT);
  CHECK(result.stderr_text.find("LeakCheckingAllocator: double free of " + hex_address(block)) != std::string::npos);

  // A reported leak freed twice, too.
  auto leaked_twice = run_in_child([] {
    LeakCheckingAllocator leaky;
    void* p = leaky.allocate(8);
    leaky.deinit();
    leaky.deallocate(p);
    bitslab::warn({"first free passed"});
    leaky.deallocate(p);
  });
  CHECK(leaked_twice.signaled);
  CHECK(leaked_twice.stderr_text.find("first free passed") != std::string::npos);
  CHECK(leaked_twice.stderr_text.find("double free of 0x") != std::string::npos);
}

TEST_CASE("leak checker: a foreign pointer aborts naming the address") {
  LeakCheckingAllocator checked;
  LeakCheckingAllocator other;
  alignas(16) static char not_heap[64];
  void* core_block = bitslab::alloc(64);       // bitslab's, but not through the checker
  void* others_block = other.allocate(64);     // the right kind of header, the wrong owner
  void* inside = static_cast<char*>(checked.allocate(64)) + 16;  // inside a live block
  for (void* foreign : {static_cast<void*>(not_heap), core_block, others_block, inside,
                        static_cast<void*>(static_cast<char*>(core_block) + 1)}) {
    CAPTURE(hex_address(foreign));
    auto result = run_in_child([&] { checked.deallocate(foreign); });
    CHECK(result.signaled);
    CHECK(result.signal == SIGABRT);
    CHECK(result.stderr_text.find("never handed out: " + hex_address(foreign)) != std::string::npos);
  }
  other.deallocate(others_block);
  bitslab::free(core_block);
  CHECK(checked.live_blocks() == 1);
  checked.deallocate(static_cast<char*>(inside) - 16);
}

TEST_CASE("leak checker: a wrong size or an overwritten header aborts naming the address") {
  LeakCheckingAllocator checked;
  void* p = checked.allocate(100);
  auto wrong_size = run_in_child([&] { checked.deallocate(p, 99); });
  CHECK(wrong_size.signaled);
  CHECK(wrong_size.stderr_text.find("free with a wrong size of " + hex_address(p)) != std::string::npos);

  auto underflow = run_in_child([&] {
    memset(static_cast<char*>(p) - LeakCheckingAllocator::kHeaderBytes, 0x41, 8);  // the prev link
    checked.deallocate(p);
  });
  CHECK(underflow.signaled);
  CHECK(underflow.stderr_text.find("block header overwritten (a write out of bounds?) at " + hex_address(p)) !=
        std::string::npos);

  auto size_field = run_in_child([&] {  // the size: else live_bytes and the backing go wrong
    reinterpret_cast<LeakCheckingAllocator::BlockHeader*>(static_cast<char*>(p) - 32)->bytes = 1;
    checked.deallocate(p);
  });
  CHECK(size_field.signaled);
  CHECK(size_field.stderr_text.find("overwritten (a write out of bounds?) at " + hex_address(p)) != std::string::npos);

  // A damaged neighbour is found when a block next to it in the list is freed, and named.
  void* newer = checked.allocate(16);  // the list: newer, p
  auto neighbour = run_in_child([&] {
    reinterpret_cast<LeakCheckingAllocator::BlockHeader*>(static_cast<char*>(p) - 32)->bytes = 7;
    checked.deallocate(newer);
  });
  CHECK(neighbour.signaled);
  CHECK(neighbour.stderr_text.find("overwritten (a write out of bounds?) at " + hex_address(p)) != std::string::npos);
  auto walk = run_in_child([&] {  // and by deinit's walk
    memset(static_cast<char*>(p) - 32 + 8, 0, 8);  // the next link
    checked.deinit();
  });
  CHECK(walk.signaled);
  CHECK(walk.stderr_text.find("overwritten (a write out of bounds?) at " + hex_address(p)) != std::string::npos);
  checked.deallocate(newer);

  auto tag = run_in_child([&] {
    static_cast<char*>(p)[-1] ^= 1;  // the byte right below the block: the tag
    checked.deallocate(p);
  });
  CHECK(tag.signaled);
  CHECK(tag.stderr_text.find(hex_address(p)) != std::string::npos);
  checked.deallocate(p);
}

TEST_CASE("leak checker: bad input gives nullptr and errno, and changes nothing") {
  LeakCheckingAllocator checked;
  for (size_t bad_alignment : {size_t{0}, size_t{3}, size_t{24}}) {
    errno = 0;
    CHECK(checked.allocate(8, bad_alignment) == nullptr);
    CHECK(errno == EINVAL);
  }
  for (size_t huge : {SIZE_MAX, SIZE_MAX - 31, bitslab::max_size()}) {  // the core serves up to 256 KiB
    errno = 0;
    CHECK(checked.allocate(huge) == nullptr);
    CHECK(errno == ENOMEM);
  }
  errno = 0;
  CHECK(checked.allocate(SIZE_MAX - 100, size_t{1} << 40) == nullptr);
  CHECK(errno == ENOMEM);
  CHECK(checked.live_blocks() == 0);

  RecordingBacking recording;
  LeakCheckingAllocator over_refusing({}, recording.backing());
  recording.refuse = true;
  errno = 0;
  CHECK(over_refusing.allocate(8) == nullptr);
  CHECK(errno == ENOMEM);  // the backing set no errno
  CHECK(over_refusing.live_blocks() == 0);
}

TEST_CASE("leak checker: over a user backing, each block costs a 32-byte header and goes back whole") {
  RecordingBacking recording;
  {
    LeakCheckingAllocator checked({}, recording.backing());
    void* p = checked.allocate(64);
    CHECK(recording.last_request == 64 + 32);  // the per-block overhead: one 32-byte header
    void* odd = checked.allocate(16);          // 48 bytes: the buffer is now 16- but not 32-aligned
    void* q = checked.allocate(10, 32);        // alignment 32: still the header alone
    CHECK(recording.last_request == 10 + 32);
    void* r = checked.allocate(10, 1024);      // larger alignments: `alignment` bytes in front
    CHECK(recording.last_request == 10 + 1024);
    CHECK(aligned(q, 32));
    CHECK(aligned(r, 1024));
    void* z = checked.allocate(0);
    CHECK(z != nullptr);
    CHECK(checked.allocated_size(z) == 0);
    for (void* block : {p, odd, q, r, z}) checked.deallocate(block);
    CHECK(recording.deallocations == 5);  // the same bytes and alignment as asked (checked there)
    CHECK(recording.bytes_out == 0);
    CHECK(checked.deinit() == Check::ok);

    // The backing's owns() keeps the checker from reading in front of an address outside it.
    alignas(16) static char elsewhere[64];
    auto result = run_in_child([&] { checked.deallocate(elsewhere + 32); });
    CHECK(result.signaled);
    CHECK(result.stderr_text.find("never handed out: " + hex_address(elsewhere + 32)) != std::string::npos);
  }
  CHECK(recording.live.empty());
}

TEST_CASE("leak checker: several threads allocate and free at once") {
  std::vector<LeakRecord> leaks;
  bitslab::LeakCheckOptions options;
  options.reporter = record_leak;
  options.reporter_context = &leaks;
  LeakCheckingAllocator checked(options);
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) {
      }
      void* mine[64];
      for (int round = 0; round < 200; ++round) {
        for (int i = 0; i < 64; ++i) mine[i] = checked.allocate(16 + (i * 7 + t) % 200);
        for (int i = 0; i < 64; i += 2) checked.deallocate(mine[i]);
        for (int i = 1; i < 64; i += 2) checked.deallocate(mine[i]);
      }
      for (int i = 0; i < 3; ++i) checked.allocate(8);  // 3 leaks per thread
    });
  }
  go.store(true);
  for (auto& thread : threads) thread.join();
  CHECK(checked.live_blocks() == 12);
  CHECK(checked.live_bytes() == 96);
  CHECK(checked.deinit() == Check::leak);
  CHECK(leaks.size() == 12);
}

TEST_CASE("leak checker: never calls malloc (glibc's byte count stays the same)") {
  LeakCheckingAllocator checked;
  checked.deallocate(checked.allocate(8));  // the core's thread heap is set up before measuring
  void* blocks[100];
  const size_t before = mallinfo2().uordblks;
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 100; ++i) blocks[i] = checked.allocate(static_cast<size_t>(i) * 37);
    for (int i = 0; i < 100; i += 3) checked.deallocate(blocks[i]);
    for (int i = 1; i < 100; i += 3) checked.deallocate(blocks[i], static_cast<size_t>(i) * 37);
    for (int i = 2; i < 100; i += 3) checked.deallocate(blocks[i]);
  }
  const size_t after = mallinfo2().uordblks;
  CHECK(before == after);
}
