// Layer 5: the core API's contract (sizes, alignment, realloc, ownership, errors).
#include <doctest/doctest.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/api/bitslab.h"
#include "tests/support/child.h"

TEST_CASE("api: alloc(0) is unique, and sizes beyond max_size fail with ENOMEM") {
  void* a = bitslab::alloc(0);
  void* b = bitslab::alloc(0);
  REQUIRE((a && b));
  CHECK(a != b);
  CHECK(bitslab::owns(a));
  errno = 0;
  CHECK(bitslab::alloc(bitslab::max_size() + 1) == nullptr);
  CHECK(errno == ENOMEM);
  CHECK(bitslab::alloc(bitslab::max_size()) != nullptr);
  bitslab::free(a);
  bitslab::free(b);
  bitslab::free(nullptr);
}

TEST_CASE("api: owns() is true for our blocks only and never faults") {
  void* mine = bitslab::alloc(100);
  void* pooled = bitslab::alloc(100000);
  void* theirs = malloc(100);
  int local = 0;
  CHECK(bitslab::owns(mine));
  CHECK(bitslab::owns(pooled));
  CHECK_FALSE(bitslab::owns(theirs));
  CHECK_FALSE(bitslab::owns(&local));
  CHECK_FALSE(bitslab::owns(nullptr));
  CHECK_FALSE(bitslab::owns(reinterpret_cast<void*>(uintptr_t{0xdeadbeefcafe0000})));
  bitslab::free(mine);
  bitslab::free(pooled);
  free(theirs);
}

TEST_CASE("api: aligned_alloc honours every power of two up to max_alignment") {
  for (size_t align = 1; align <= bitslab::max_alignment(); align *= 2) {
    for (size_t size : {size_t{1}, size_t{24}, size_t{100}, size_t{1000}, size_t{5000}, size_t{70000}}) {
      void* p = bitslab::aligned_alloc(align, size);
      REQUIRE(p != nullptr);
      CHECK(reinterpret_cast<uintptr_t>(p) % align == 0);
      CHECK(bitslab::usable_size(p) >= size);
      memset(p, 0x77, size);
      bitslab::free(p);
    }
  }
  errno = 0;
  CHECK(bitslab::aligned_alloc(48, 10) == nullptr);
  CHECK(errno == EINVAL);
  errno = 0;
  CHECK(bitslab::aligned_alloc(bitslab::max_alignment() * 2, 10) == nullptr);
  CHECK(errno == EINVAL);
}

TEST_CASE("api: realloc keeps contents across every class boundary, both ways") {
  char* p = static_cast<char*>(bitslab::realloc(nullptr, 1));
  REQUIRE(p != nullptr);
  p[0] = 0;
  size_t size = 1;
  while (size < bitslab::max_size()) {
    const size_t next = size + size / 7 + 1 < bitslab::max_size() ? size + size / 7 + 1 : bitslab::max_size();
    p = static_cast<char*>(bitslab::realloc(p, next));
    REQUIRE(p != nullptr);
    for (size_t i = 0; i < size; ++i)
      if (p[i] != static_cast<char>(i * 31)) FAIL("contents lost growing to " << next << " at " << i);
    for (size_t i = size; i < next; ++i) p[i] = static_cast<char>(i * 31);
    size = next;
  }
  while (size > 1) {
    size = size / 3;
    if (size == 0) size = 1;
    p = static_cast<char*>(bitslab::realloc(p, size));
    REQUIRE(p != nullptr);
    CHECK(bitslab::usable_size(p) >= size);
    for (size_t i = 0; i < size; ++i)
      if (p[i] != static_cast<char>(i * 31)) FAIL("contents lost shrinking to " << size);
  }
  errno = 0;
  CHECK(bitslab::realloc(p, bitslab::max_size() + 1) == nullptr);  // p is untouched
  CHECK(errno == ENOMEM);
  CHECK(p[0] == 0);
  bitslab::free(p);
}

TEST_CASE("api: freeing memory that is not ours aborts naming it") {
  int local = 0;
  auto result = bitslab::test::run_in_child([&] { bitslab::free(&local); });
  CHECK(result.signaled);
  CHECK(result.stderr_text.find(bitslab::test::hex_address(&local)) != std::string::npos);
}

TEST_CASE("api: stats reflect what was allocated") {
  const auto before = bitslab::stats();
  void* p = bitslab::alloc(200000);
  const auto after = bitslab::stats();
  CHECK(after.reserved_bytes >= before.reserved_bytes);
  CHECK(after.pool_chunks_carved >= before.pool_chunks_carved);
  CHECK(after.reserved_bytes > 0);
  CHECK(after.heaps >= 1);
  CHECK(after.heaps_in_use >= 1);
  bitslab::free(p);
}
