// Blocks that glibc allocated itself, bypassing the shim (here through the
// __libc_* entry points, as a library or early startup code might), must be
// accepted by the shim's free, realloc and malloc_usable_size.
#include <doctest/doctest.h>

#include <dlfcn.h>
#include <malloc.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "tests/preload/preload.h"

extern "C" {
// glibc's own allocator entry points (exported by libc.so.6).
void* __libc_malloc(std::size_t size);
void* __libc_calloc(std::size_t count, std::size_t size);
void* __libc_memalign(std::size_t alignment, std::size_t size);
void* __libc_valloc(std::size_t size);
}

namespace {

unsigned char pattern_byte(std::size_t i, unsigned seed) {
  return static_cast<unsigned char>((i * 29u) ^ (i >> 8) ^ (seed * 0x3bu));
}

void fill_pattern(void* p, std::size_t n, unsigned seed) {
  auto* bytes = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) bytes[i] = pattern_byte(i, seed);
}

bool pattern_intact(const void* p, std::size_t n, unsigned seed) {
  const auto* bytes = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (bytes[i] != pattern_byte(i, seed)) return false;
  return true;
}

// glibc's own count of the bytes it has handed out and not had back: heap chunks in use plus
// mmapped blocks. Asked of libc's mallinfo2 itself: the preloaded one adds bitslab's bytes. A
// free that the shim dropped instead of passing to glibc stays in this count.
std::size_t glibc_bytes_in_use() {
  using MallInfo2 = struct mallinfo2 (*)();
  static const auto libc_mallinfo2 = reinterpret_cast<MallInfo2>(
      dlsym(dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD), "mallinfo2"));
  REQUIRE(reinterpret_cast<void*>(libc_mallinfo2) != nullptr);
  const struct mallinfo2 m = libc_mallinfo2();
  return m.uordblks + m.hblkhd;
}
// Slack for what glibc keeps counted as in use although freed (its tcache: at most 7 chunks of
// each size up to 1032 B). Each test below frees at least 5 MiB of glibc's blocks, so a leak of
// them is far past it.
constexpr std::size_t kGlibcSlack = std::size_t{1} << 20;

// Small, pool-sized and large requests: glibc serves all of them here, so
// the shim sees foreign pointers of every magnitude.
std::vector<std::size_t> glibc_sizes() {
  const std::size_t max = preload::max_core_size();
  return {1, 16, 24, 100, 1000, 1024, 1025, 4096, 50000, max, max + 1, 1u << 20};
}

}  // namespace

TEST_CASE("__libc_malloc blocks are not bitslab's, and free() through the shim releases them") {
  const std::size_t in_use_before = glibc_bytes_in_use();
  for (int round = 0; round < 3; ++round) {
    std::vector<void*> blocks;
    for (std::size_t n : glibc_sizes()) {
      void* p = __libc_malloc(n);
      REQUIRE(p != nullptr);
      CAPTURE(n);
      CHECK_FALSE(preload::owns(p));
      std::memset(p, 0x6B, n);
      blocks.push_back(p);
    }
    for (void* p : blocks) std::free(p);
  }
  // Many of them (20 MB in all): had free() leaked them, glibc's count would have grown by that.
  for (int i = 0; i < 20000; ++i) std::free(__libc_malloc(static_cast<std::size_t>(i % 2000) + 1));
  const std::size_t in_use_after = glibc_bytes_in_use();
  CAPTURE(in_use_before);
  CHECK(in_use_after <= in_use_before + kGlibcSlack);
  void* check = std::malloc(64);
  REQUIRE(check != nullptr);
  CHECK(preload::owns(check));
  std::free(check);
}

TEST_CASE("malloc_usable_size of a __libc_malloc block is at least the request") {
  for (std::size_t n : glibc_sizes()) {
    CAPTURE(n);
    void* p = __libc_malloc(n);
    REQUIRE(p != nullptr);
    const std::size_t usable = malloc_usable_size(p);
    CHECK(usable >= n);
    // The usable size glibc reports must be writable.
    std::memset(p, 0x11, usable);
    std::free(p);
  }
}

TEST_CASE("realloc of a __libc_malloc block to every size range keeps the contents") {
  unsigned seed = 0;
  for (std::size_t from : glibc_sizes()) {
    for (std::size_t to : glibc_sizes()) {
      CAPTURE(from);
      CAPTURE(to);
      void* p = __libc_malloc(from);
      REQUIRE(p != nullptr);
      fill_pattern(p, from, ++seed);
      void* q = std::realloc(p, to);
      REQUIRE(q != nullptr);
      const std::size_t kept = from < to ? from : to;
      CHECK(pattern_intact(q, kept, seed));
      CHECK(malloc_usable_size(q) >= to);
      std::memset(q, 0x22, to);
      std::free(q);
    }
  }
}

TEST_CASE("realloc(__libc_malloc block, 0) frees it and returns NULL, as glibc does") {
  const std::size_t in_use_before = glibc_bytes_in_use();
  for (int i = 0; i < 20; ++i) {
    void* p = __libc_malloc(300);
    REQUIRE(p != nullptr);
    CHECK(std::realloc(p, 0) == nullptr);
    void* q = __libc_malloc(300000);
    REQUIRE(q != nullptr);
    CHECK(std::realloc(q, 0) == nullptr);
  }
  CHECK(glibc_bytes_in_use() <= in_use_before + kGlibcSlack);  // 6 MB if they were kept
}

TEST_CASE("__libc_calloc, __libc_memalign and __libc_valloc blocks are freed through the shim") {
  for (std::size_t n : glibc_sizes()) {
    CAPTURE(n);
    void* z = __libc_calloc(1, n);
    REQUIRE(z != nullptr);
    CHECK(static_cast<unsigned char*>(z)[n - 1] == 0);
    std::free(z);

    // Aligned glibc blocks do not start at a chunk boundary the usual way;
    // a shim that parses glibc's headers must still handle them.
    for (std::size_t alignment : {64, 4096, 65536}) {
      void* a = __libc_memalign(alignment, n);
      REQUIRE(a != nullptr);
      CHECK(reinterpret_cast<std::uintptr_t>(a) % alignment == 0);
      CHECK(malloc_usable_size(a) >= n);
      fill_pattern(a, n, 5);
      void* grown = std::realloc(a, n + 5000);
      REQUIRE(grown != nullptr);
      CHECK(pattern_intact(grown, n, 5));
      std::free(grown);
    }
    void* v = __libc_valloc(n);
    REQUIRE(v != nullptr);
    std::free(v);
  }
}
