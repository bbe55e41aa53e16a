// FixedBufferAllocator (the Zig seed's): a caller's buffer, exhaustion = ENOMEM with the state
// unchanged, last-block free and resize, reset.
#include <doctest/doctest.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <utility>

#include "tests/toolkit/allocator_test_support.h"
#include "toolkit/fixed_buffer_allocator.h"

using bitslab::FixedBufferAllocator;
using namespace bitslab::test;

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
