// realloc across every size-class boundary: a block grown a byte at a time
// through the small classes, then over many sizes through the pool range and
// into glibc territory, then shrunk back down. After every step the old
// contents must have survived the (possible) move.
#include <doctest/doctest.h>

#include <malloc.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "tests/preload/preload.h"

namespace {

using preload::is_aligned;

unsigned char pattern_byte(std::size_t i, std::uint32_t seed) {
  return static_cast<unsigned char>((i * 151u) ^ (i >> 11) ^ (seed * 0x9du) ^ (seed >> 8));
}

void fill_pattern(void* p, std::size_t n, std::uint32_t seed) {
  auto* bytes = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) bytes[i] = pattern_byte(i, seed);
}

std::size_t first_pattern_mismatch(const void* p, std::size_t n, std::uint32_t seed) {
  const auto* bytes = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (bytes[i] != pattern_byte(i, seed)) return i;
  return n;
}

// Every size from 1 to 4096, then every multiple of 1 KiB (and its
// neighbours +-1) up to 300 KiB, the values around bitslab_max_core_size(),
// and a few sizes well inside glibc's range.
std::vector<std::size_t> growth_sizes() {
  const std::size_t max = preload::max_core_size();
  std::vector<std::size_t> sizes;
  for (std::size_t n = 1; n <= 4096; ++n) sizes.push_back(n);
  for (std::size_t k = 5; k * 1024 <= 300 * 1024; ++k) {
    for (std::size_t n : {k * 1024 - 1, k * 1024, k * 1024 + 1}) {
      if (n > sizes.back()) sizes.push_back(n);
    }
    // Splice in the boundary of bitslab's range where it falls.
    for (std::size_t n : {max - 16, max - 1, max, max + 1, max + 16}) {
      if (n > sizes.back() && n < (k + 1) * 1024 - 1) sizes.push_back(n);
    }
  }
  for (std::size_t n : {std::size_t{400} << 10, std::size_t{1} << 20, (std::size_t{2} << 20) + 1,
                        std::size_t{5} << 20}) {
    if (n > sizes.back()) sizes.push_back(n);
  }
  return sizes;
}

}  // namespace

TEST_CASE("the size sequence covers every small class boundary and the bitslab/glibc border") {
  const std::vector<std::size_t> sizes = growth_sizes();
  const std::size_t max = preload::max_core_size();
  auto contains = [&](std::size_t n) {
    for (std::size_t s : sizes)
      if (s == n) return true;
    return false;
  };
  for (std::size_t n = 16; n <= 1024; n += 16) {
    CHECK(contains(n));
    CHECK(contains(n + 1));
  }
  CHECK(contains(max));
  CHECK(contains(max + 1));
  CHECK(sizes.back() > max);
}

TEST_CASE("growing a block step by step through every size keeps its contents") {
  const std::vector<std::size_t> sizes = growth_sizes();
  const std::size_t max = preload::max_core_size();

  // Each step re-fills the block with a new seed, so a realloc that returned
  // a stale block holding an earlier step's data would be caught.
  std::uint32_t seed = 1;
  std::size_t current = sizes.front();
  void* p = std::malloc(current);
  REQUIRE(p != nullptr);
  fill_pattern(p, current, seed);

  // Same-sized neighbours, kept live, fragment the heap so that the block
  // cannot always grow in place; they also reveal a realloc that writes
  // beyond the block it returns.
  struct Neighbour {
    void* p;
    std::size_t n;
    std::uint32_t seed;
  };
  std::vector<Neighbour> neighbours;

  long failures = 0;
  for (std::size_t i = 1; i < sizes.size(); ++i) {
    const std::size_t next = sizes[i];
    void* q = std::realloc(p, next);
    if (q == nullptr) {
      FAIL("realloc(", current, " -> ", next, ") returned NULL");
    }
    p = q;
    const std::size_t bad = first_pattern_mismatch(p, current, seed);
    if (bad != current || !is_aligned(p, 16) || malloc_usable_size(p) < next ||
        preload::owns(p) != (next <= max)) {
      ++failures;
      CAPTURE(bad);
      CHECK_MESSAGE(false, "growing ", current, " -> ", next, ": first bad byte ", bad,
                    ", aligned ", is_aligned(p, 16), ", usable ", malloc_usable_size(p),
                    ", owned by bitslab ", preload::owns(p));
      if (failures > 5) break;
    }
    current = next;
    fill_pattern(p, current, ++seed);

    if (current <= 4096) {
      void* n = std::malloc(current);
      REQUIRE(n != nullptr);
      fill_pattern(n, current, seed + 1000000);
      neighbours.push_back({n, current, seed + 1000000});
    }
  }
  CHECK(failures == 0);

  long damaged = 0;
  for (const Neighbour& n : neighbours) {
    if (first_pattern_mismatch(n.p, n.n, n.seed) != n.n) ++damaged;
    std::free(n.p);
  }
  CHECK(damaged == 0);
  std::free(p);
}

TEST_CASE("shrinking a block step by step from glibc territory down to 1 byte keeps its prefix") {
  std::vector<std::size_t> sizes = growth_sizes();
  std::uint32_t seed = 500;
  std::size_t current = sizes.back();
  void* p = std::malloc(current);
  REQUIRE(p != nullptr);
  fill_pattern(p, current, seed);

  long failures = 0;
  for (std::size_t i = sizes.size() - 1; i-- > 0;) {
    const std::size_t next = sizes[i];
    void* q = std::realloc(p, next);
    if (q == nullptr) {
      FAIL("realloc(", current, " -> ", next, ") returned NULL");
    }
    p = q;
    const std::size_t bad = first_pattern_mismatch(p, next, seed);
    if (bad != next || !is_aligned(p, 16) || malloc_usable_size(p) < next) {
      ++failures;
      CHECK_MESSAGE(false, "shrinking ", current, " -> ", next, ": first bad byte ", bad,
                    ", aligned ", is_aligned(p, 16), ", usable ", malloc_usable_size(p));
      if (failures > 5) break;
    }
    current = next;
    fill_pattern(p, current, ++seed);
  }
  CHECK(failures == 0);
  std::free(p);
}

TEST_CASE("realloc jumps straight between far-apart size ranges") {
  const std::size_t max = preload::max_core_size();
  const std::size_t path[] = {16,  max + 1, 16,       1024, 1025,  max, max + 1, 1,
                              max, 1,       4 << 20,  2000, 4 << 20, 17, 1024, 1};
  std::uint32_t seed = 9000;
  std::size_t current = path[0];
  void* p = std::malloc(current);
  REQUIRE(p != nullptr);
  fill_pattern(p, current, seed);
  for (std::size_t next : path) {
    CAPTURE(current);
    CAPTURE(next);
    void* q = std::realloc(p, next);
    REQUIRE(q != nullptr);
    p = q;
    const std::size_t kept = current < next ? current : next;
    CHECK(first_pattern_mismatch(p, kept, seed) == kept);
    current = next;
    fill_pattern(p, current, ++seed);
  }
  std::free(p);
}
