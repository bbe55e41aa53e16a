// The C allocation API under LD_PRELOAD: every function of the malloc family,
// on sizes spanning bitslab's small classes (<= 1024), its pools
// (1025 .. bitslab_max_core_size()) and glibc's territory beyond that.
#include <doctest/doctest.h>

#include <malloc.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <vector>

#include "tests/preload/preload.h"

namespace {

using preload::is_aligned;
using preload::opaque;

// A position- and seed-dependent byte pattern: a block that lost or mixed
// up its contents, or overlaps another live block, fails the check.
unsigned char pattern_byte(std::size_t i, unsigned seed) {
  return static_cast<unsigned char>((i * 131u) ^ (i >> 9) ^ (seed * 0x5bu + 1u));
}

void fill_pattern(void* p, std::size_t n, unsigned seed) {
  auto* bytes = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) bytes[i] = pattern_byte(i, seed);
}

// Returns the index of the first wrong byte, or n if all n bytes are intact.
std::size_t first_pattern_mismatch(const void* p, std::size_t n, unsigned seed) {
  const auto* bytes = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (bytes[i] != pattern_byte(i, seed)) return i;
  return n;
}

bool all_zero(const void* p, std::size_t n) {
  const auto* bytes = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (bytes[i] != 0) return false;
  return true;
}

std::size_t page_size() { return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }

// Sizes on and around the class boundaries of all three size ranges.
std::vector<std::size_t> sizes_across_ranges() {
  const std::size_t max = preload::max_core_size();
  return {1,       7,       8,         15,          16,        17,        24,
          31,      32,      33,        48,          63,        64,        100,
          127,     128,     129,       255,         256,       257,       500,
          512,     513,     1000,      1023,        1024,      1025,      1500,
          2047,    2048,    2049,      4095,        4096,      4097,      8192,
          10000,   32768,   65536,     100000,      max / 2,   max - 1,   max,
          max + 1, max + 16, max + 4096, 1u << 20,  (3u << 20) + 123};
}

std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t total_pages = 0, resident_pages = 0;
  statm >> total_pages >> resident_pages;
  return resident_pages * page_size();
}

}  // namespace

TEST_CASE("malloc: every size range is 16-byte aligned, usable and non-overlapping") {
  struct Block {
    void* p;
    std::size_t usable;
    unsigned seed;
  };
  std::vector<Block> blocks;
  unsigned seed = 0;
  // Three blocks per size, all live at once: if two of them overlapped, or a
  // usable size were overstated, filling the whole usable size of one would
  // damage another.
  for (int round = 0; round < 3; ++round) {
    for (std::size_t n : sizes_across_ranges()) {
      void* p = std::malloc(n);
      REQUIRE(p != nullptr);
      CHECK(is_aligned(p, 16));
      const std::size_t usable = malloc_usable_size(p);
      CHECK(usable >= n);
      fill_pattern(p, usable, ++seed);
      blocks.push_back({p, usable, seed});
    }
  }
  for (const Block& b : blocks) {
    CAPTURE(b.usable);
    CHECK(first_pattern_mismatch(b.p, b.usable, b.seed) == b.usable);
    std::free(b.p);
  }
}

TEST_CASE("malloc(0) returns unique, freeable, non-NULL pointers") {
  std::set<void*> seen;
  std::vector<void*> blocks;
  for (int i = 0; i < 64; ++i) {
    void* p = std::malloc(opaque<std::size_t>(0));
    REQUIRE(p != nullptr);
    CHECK(seen.insert(p).second);
    blocks.push_back(p);
  }
  for (void* p : blocks) std::free(p);
}

TEST_CASE("free(NULL) and malloc_usable_size(NULL) are harmless") {
  std::free(opaque<void*>(nullptr));
  CHECK(malloc_usable_size(opaque<void*>(nullptr)) == 0);
}

TEST_CASE("malloc of impossible sizes returns NULL with errno ENOMEM") {
  // Sizes just below SIZE_MAX catch overflow when rounding a request up to a
  // size class, an alignment or a page.
  const std::size_t impossible[] = {SIZE_MAX,      SIZE_MAX - 1,  SIZE_MAX - 15,
                                    SIZE_MAX - 4095, SIZE_MAX / 2 + 1, SIZE_MAX / 2 + 4096};
  for (std::size_t n : impossible) {
    CAPTURE(n);
    errno = 0;
    void* p = std::malloc(opaque(n));
    CHECK(p == nullptr);
    CHECK(errno == ENOMEM);
    std::free(p);
  }
}

TEST_CASE("calloc returns zeroed memory even when it recycles dirty blocks") {
  for (std::size_t n : sizes_across_ranges()) {
    CAPTURE(n);
    // Dirty a batch of blocks of this size and free them, so that calloc is
    // likely to be handed exactly those blocks back.
    constexpr int kBatch = 8;
    void* dirty[kBatch];
    for (void*& p : dirty) {
      p = std::malloc(n);
      REQUIRE(p != nullptr);
      std::memset(p, 0xA5, malloc_usable_size(p));
    }
    for (void* p : dirty) std::free(p);

    void* zeroed[kBatch];
    for (int i = 0; i < kBatch; ++i) {
      // Alternate the (count, size) split of the request.
      zeroed[i] = (i % 2 == 0) ? std::calloc(1, n) : std::calloc(n, 1);
      REQUIRE(zeroed[i] != nullptr);
      CHECK(is_aligned(zeroed[i], 16));
      CHECK(malloc_usable_size(zeroed[i]) >= n);
      CHECK(all_zero(zeroed[i], n));
    }
    for (void* p : zeroed) std::free(p);
  }
  // An element count and size whose product is a pool size.
  void* p = std::calloc(100, 40);
  REQUIRE(p != nullptr);
  CHECK(all_zero(p, 4000));
  std::free(p);
}

TEST_CASE("calloc with zero elements or zero size returns a freeable non-NULL pointer") {
  void* a = std::calloc(opaque<std::size_t>(0), 16);
  void* b = std::calloc(16, opaque<std::size_t>(0));
  CHECK(a != nullptr);
  CHECK(b != nullptr);
  CHECK(a != b);
  std::free(a);
  std::free(b);
}

TEST_CASE("calloc whose count*size overflows or is impossible returns NULL with ENOMEM") {
  const std::size_t cases[][2] = {{SIZE_MAX / 2, 3},
                                  {3, SIZE_MAX / 2},
                                  {SIZE_MAX, SIZE_MAX},
                                  {std::size_t{1} << 32, std::size_t{1} << 32},
                                  {(std::size_t{1} << 32) + 1, (std::size_t{1} << 32) - 1},
                                  {1, SIZE_MAX},
                                  {SIZE_MAX / 16 + 1, 16}};
  for (const auto& c : cases) {
    CAPTURE(c[0]);
    CAPTURE(c[1]);
    errno = 0;
    void* p = std::calloc(opaque(c[0]), opaque(c[1]));
    CHECK(p == nullptr);
    CHECK(errno == ENOMEM);
    std::free(p);
  }
}

TEST_CASE("realloc(NULL, n) behaves like malloc(n)") {
  for (std::size_t n : sizes_across_ranges()) {
    CAPTURE(n);
    void* p = std::realloc(opaque<void*>(nullptr), n);
    REQUIRE(p != nullptr);
    CHECK(is_aligned(p, 16));
    CHECK(malloc_usable_size(p) >= n);
    fill_pattern(p, n, 3);
    CHECK(first_pattern_mismatch(p, n, 3) == n);
    std::free(p);
  }
  void* zero = std::realloc(opaque<void*>(nullptr), opaque<std::size_t>(0));
  CHECK(zero != nullptr);  // realloc(NULL, 0) is malloc(0)
  std::free(zero);
}

TEST_CASE("realloc between every pair of size ranges keeps the contents") {
  const std::size_t max = preload::max_core_size();
  const std::size_t sizes[] = {1,    16,        17,  100,     1024,    1025,
                               4096, 65536, max, max + 1, 1u << 20, (2u << 20) + 5};
  unsigned seed = 100;
  for (std::size_t from : sizes) {
    for (std::size_t to : sizes) {
      CAPTURE(from);
      CAPTURE(to);
      void* p = std::malloc(from);
      REQUIRE(p != nullptr);
      fill_pattern(p, from, ++seed);
      void* q = std::realloc(p, to);
      REQUIRE(q != nullptr);
      CHECK(is_aligned(q, 16));
      CHECK(malloc_usable_size(q) >= to);
      const std::size_t kept = from < to ? from : to;
      CHECK(first_pattern_mismatch(q, kept, seed) == kept);
      // The grown tail must be writable too.
      std::memset(q, 0x5A, to);
      std::free(q);
    }
  }
}

TEST_CASE("realloc to the same size, or to a size in the same class, keeps the contents") {
  for (std::size_t n : sizes_across_ranges()) {
    CAPTURE(n);
    void* p = std::malloc(n);
    REQUIRE(p != nullptr);
    fill_pattern(p, n, 7);
    p = std::realloc(p, n);
    REQUIRE(p != nullptr);
    CHECK(first_pattern_mismatch(p, n, 7) == n);
    const std::size_t usable = malloc_usable_size(p);
    CHECK(usable >= n);
    // Growing into the block's own usable size must keep everything too.
    p = std::realloc(p, usable);
    REQUIRE(p != nullptr);
    CHECK(first_pattern_mismatch(p, n, 7) == n);
    std::free(p);
  }
}

TEST_CASE("realloc(p, 0) frees p (or returns a block that free accepts) and does not leak") {
  // C leaves realloc(p, 0) implementation-defined: glibc frees p and returns
  // NULL; returning a fresh minimal block is also allowed. Either way p must
  // be released: repeat it until a leak would be large, and watch the RSS.
  const std::size_t max = preload::max_core_size();
  const std::size_t sizes[] = {100, 2000, max, max + 4096};
  for (std::size_t n : sizes) {
    CAPTURE(n);
    const std::size_t would_leak = std::size_t{64} << 20;
    std::size_t iterations = would_leak / n;
    const std::size_t before = resident_bytes();
    for (std::size_t i = 0; i < iterations; ++i) {
      void* p = std::malloc(n);
      REQUIRE(p != nullptr);
      std::memset(p, 1, n);  // make every page of it resident
      void* r = std::realloc(p, opaque<std::size_t>(0));
      std::free(r);
    }
    const std::size_t after = resident_bytes();
    const std::size_t growth = after > before ? after - before : 0;
    CAPTURE(growth);
    CHECK(growth < would_leak / 4);
  }
}

TEST_CASE("a failing realloc returns NULL with ENOMEM and leaves the block intact") {
  for (std::size_t n : {std::size_t{40}, std::size_t{3000}, preload::max_core_size() + 100}) {
    CAPTURE(n);
    void* p = std::malloc(n);
    REQUIRE(p != nullptr);
    fill_pattern(p, n, 11);
    for (std::size_t huge : {SIZE_MAX, SIZE_MAX - 15, SIZE_MAX / 2 + 1}) {
      CAPTURE(huge);
      errno = 0;
      void* q = std::realloc(p, opaque(huge));
      CHECK(q == nullptr);
      CHECK(errno == ENOMEM);
      CHECK(first_pattern_mismatch(p, n, 11) == n);
    }
    std::free(p);
  }
}

TEST_CASE("reallocarray grows like realloc and reports multiplication overflow") {
  auto* p = static_cast<std::uint64_t*>(reallocarray(nullptr, 10, sizeof(std::uint64_t)));
  REQUIRE(p != nullptr);
  for (std::uint64_t i = 0; i < 10; ++i) p[i] = i * i + 1;
  // Grow through the small, pool and large ranges.
  const std::size_t counts[] = {100, 5000, preload::max_core_size() / 8 + 1000, 500000};
  std::size_t filled = 10;
  for (std::size_t count : counts) {
    CAPTURE(count);
    auto* q = static_cast<std::uint64_t*>(reallocarray(p, count, sizeof(std::uint64_t)));
    REQUIRE(q != nullptr);
    p = q;
    bool intact = true;
    for (std::uint64_t i = 0; i < filled; ++i) intact = intact && p[i] == i * i + 1;
    CHECK(intact);
    for (std::uint64_t i = filled; i < count; ++i) p[i] = i * i + 1;
    filled = count;
  }
  // Overflow: NULL, ENOMEM, and the old block is untouched and still ours.
  errno = 0;
  void* overflow = reallocarray(p, opaque(SIZE_MAX / 2), 3);
  CHECK(overflow == nullptr);
  CHECK(errno == ENOMEM);
  errno = 0;
  overflow = reallocarray(p, opaque(std::size_t{1} << 33), std::size_t{1} << 33);
  CHECK(overflow == nullptr);
  CHECK(errno == ENOMEM);
  bool intact = true;
  for (std::uint64_t i = 0; i < filled; ++i) intact = intact && p[i] == i * i + 1;
  CHECK(intact);
  std::free(p);
}

TEST_CASE("posix_memalign rejects bad alignments with EINVAL and leaves *p untouched") {
  // Valid alignments are powers of two that are multiples of sizeof(void*).
  const std::size_t bad[] = {0,  1,   2,    3,    4,     6,       12,
                             24, 40,  48,   100,  1000,  4097,    65535,
                             (3u << 20), SIZE_MAX, SIZE_MAX / 2};
  void* const sentinel = reinterpret_cast<void*>(std::uintptr_t{0x5e171e1});
  for (std::size_t alignment : bad) {
    CAPTURE(alignment);
    void* p = sentinel;
    CHECK(posix_memalign(&p, opaque(alignment), 64) == EINVAL);
    CHECK(p == sentinel);
  }
}

TEST_CASE("posix_memalign with an impossible size returns ENOMEM and leaves *p untouched") {
  void* const sentinel = reinterpret_cast<void*>(std::uintptr_t{0x5e171e1});
  for (std::size_t n : {SIZE_MAX, SIZE_MAX - 100, SIZE_MAX / 2 + 1}) {
    CAPTURE(n);
    void* p = sentinel;
    CHECK(posix_memalign(&p, 64, opaque(n)) == ENOMEM);
    CHECK(p == sentinel);
  }
}

TEST_CASE("posix_memalign, aligned_alloc and memalign honour alignments 8 .. 64 KiB and 1 MiB") {
  const std::size_t max = preload::max_core_size();
  std::vector<std::size_t> alignments;
  for (std::size_t a = 8; a <= 65536; a *= 2) alignments.push_back(a);
  alignments.push_back(std::size_t{1} << 20);
  const std::size_t sizes[] = {1, 8, 100, 1024, 1025, 5000, max, max + 1, 300000};

  unsigned seed = 0;
  for (std::size_t alignment : alignments) {
    CAPTURE(alignment);
    struct Block {
      void* p;
      std::size_t n;
      unsigned seed;
    };
    std::vector<Block> live;
    for (std::size_t n : sizes) {
      CAPTURE(n);
      void* p = nullptr;
      REQUIRE(posix_memalign(&p, alignment, n) == 0);
      REQUIRE(p != nullptr);
      CHECK(is_aligned(p, alignment));
      CHECK(malloc_usable_size(p) >= n);
      fill_pattern(p, n, ++seed);
      live.push_back({p, n, seed});

      // C11 aligned_alloc: use a size that is a multiple of the alignment.
      const std::size_t rounded = (n + alignment - 1) / alignment * alignment;
      void* q = aligned_alloc(alignment, rounded);
      REQUIRE(q != nullptr);
      CHECK(is_aligned(q, alignment));
      CHECK(malloc_usable_size(q) >= rounded);
      fill_pattern(q, rounded, ++seed);
      live.push_back({q, rounded, seed});

      void* r = memalign(alignment, n);
      REQUIRE(r != nullptr);
      CHECK(is_aligned(r, alignment));
      CHECK(malloc_usable_size(r) >= n);
      fill_pattern(r, n, ++seed);
      live.push_back({r, n, seed});
    }
    for (const Block& b : live) {
      CHECK(first_pattern_mismatch(b.p, b.n, b.seed) == b.n);
      std::free(b.p);
    }
  }
}

TEST_CASE("aligned_alloc and memalign with alignments below 16 still return 16-byte aligned blocks") {
  for (std::size_t alignment : {1, 2, 4, 8}) {
    CAPTURE(alignment);
    void* p = aligned_alloc(alignment, 32);
    void* q = memalign(alignment, 24);
    REQUIRE(p != nullptr);
    REQUIRE(q != nullptr);
    CHECK(is_aligned(p, 16));
    CHECK(is_aligned(q, 16));
    std::memset(p, 1, 32);
    std::memset(q, 2, 24);
    std::free(p);
    std::free(q);
  }
}

TEST_CASE("aligned_alloc and memalign with impossible sizes return NULL with ENOMEM") {
  errno = 0;
  CHECK(aligned_alloc(64, opaque(SIZE_MAX - 63)) == nullptr);
  CHECK(errno == ENOMEM);
  errno = 0;
  CHECK(memalign(4096, opaque(SIZE_MAX - 4095)) == nullptr);
  CHECK(errno == ENOMEM);
}

TEST_CASE("valloc and pvalloc return blocks aligned to the system page size") {
  const std::size_t page = page_size();
  const std::size_t max = preload::max_core_size();
  const std::size_t sizes[] = {1, 100, page - 1, page, page + 1, 3 * page, max, max + 1};
  for (std::size_t n : sizes) {
    CAPTURE(n);
    void* v = valloc(n);
    REQUIRE(v != nullptr);
    CHECK(is_aligned(v, page));
    CHECK(malloc_usable_size(v) >= n);
    std::memset(v, 0x11, n);

    // pvalloc also rounds the size up to a whole number of pages.
    void* pv = pvalloc(n);
    REQUIRE(pv != nullptr);
    CHECK(is_aligned(pv, page));
    const std::size_t whole_pages = (n + page - 1) / page * page;
    CHECK(malloc_usable_size(pv) >= whole_pages);
    std::memset(pv, 0x22, whole_pages);

    std::free(v);
    std::free(pv);
  }
}
