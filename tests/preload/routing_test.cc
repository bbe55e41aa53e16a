// Proof of routing: with libbitslab.so preloaded, small (<= 1024 B) and pool
// (1025 .. bitslab_max_core_size()) requests are served from bitslab's heap,
// larger ones by glibc, and free() takes each kind back.
#include <doctest/doctest.h>

#include <malloc.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/preload/preload.h"

namespace {

using preload::opaque;
int g_global_object = 0;

}  // namespace

TEST_CASE("every small size is served by bitslab") {
  std::vector<void*> blocks;
  for (std::size_t n = 0; n <= 1024; ++n) {
    void* p = std::malloc(opaque(n));
    REQUIRE(p != nullptr);
    CAPTURE(n);
    CHECK(preload::owns(p));
    std::memset(p, 0xEE, n);
    blocks.push_back(p);
  }
  for (void* p : blocks) std::free(p);
}

TEST_CASE("pool sizes up to bitslab_max_core_size() are served by bitslab") {
  const std::size_t max = preload::max_core_size();
  std::vector<std::size_t> sizes = {1025, 1026, 1040, 1500, 2047, 2048, 2049, 4096, 4097};
  // About 200 sizes spread over the pool range, plus its upper end.
  for (std::size_t n = 4100; n < max; n += max / 200 + 7) sizes.push_back(n);
  for (std::size_t n : {max - 16, max - 1, max}) sizes.push_back(n);

  std::vector<void*> blocks;
  for (std::size_t n : sizes) {
    void* p = std::malloc(n);
    REQUIRE(p != nullptr);
    CAPTURE(n);
    CHECK(preload::owns(p));
    // Touch the first and last byte: the block must really be n bytes.
    static_cast<char*>(p)[0] = 1;
    static_cast<char*>(p)[n - 1] = 2;
    blocks.push_back(p);
  }
  for (void* p : blocks) std::free(p);
}

TEST_CASE("requests above bitslab_max_core_size() are served by glibc and freed through the shim") {
  const std::size_t max = preload::max_core_size();
  for (std::size_t n : {max + 1, max + 16, max + 4096, 2 * max, std::size_t{8} << 20}) {
    CAPTURE(n);
    void* p = std::malloc(n);
    REQUIRE(p != nullptr);
    CHECK_FALSE(preload::owns(p));
    static_cast<char*>(p)[0] = 1;
    static_cast<char*>(p)[n - 1] = 2;
    CHECK(malloc_usable_size(p) >= n);
    std::free(p);

    void* z = std::calloc(1, n);
    REQUIRE(z != nullptr);
    CHECK_FALSE(preload::owns(z));
    std::free(z);
  }
}

TEST_CASE("calloc, realloc and operator new follow the same routing") {
  const std::size_t max = preload::max_core_size();
  void* small = std::calloc(10, 10);
  void* pool = std::calloc(1, 3000);
  void* large = std::calloc(1, max + 1);
  CHECK(preload::owns(small));
  CHECK(preload::owns(pool));
  CHECK_FALSE(preload::owns(large));

  // Growing a bitslab block past the limit moves it to glibc.
  void* grown = std::realloc(pool, max + 100);
  REQUIRE(grown != nullptr);
  CHECK_FALSE(preload::owns(grown));
  // Growing a small block into the pool range keeps it in bitslab.
  void* pooled = std::realloc(small, 2000);
  REQUIRE(pooled != nullptr);
  CHECK(preload::owns(pooled));

  void* obj = ::operator new(64);
  void* big_obj = ::operator new(max + 1);
  CHECK(preload::owns(obj));
  CHECK_FALSE(preload::owns(big_obj));

  auto* text = new std::string(5000, 'x');
  CHECK(preload::owns(text));
  CHECK(preload::owns(text->data()));

  delete text;
  ::operator delete(obj);
  ::operator delete(big_obj);
  std::free(pooled);
  std::free(grown);
  std::free(large);
}

TEST_CASE("bitslab_owns rejects addresses outside bitslab's heap") {
  int on_stack = 0;
  CHECK_FALSE(preload::owns(nullptr));
  CHECK_FALSE(preload::owns(&on_stack));
  CHECK_FALSE(preload::owns(&g_global_object));
  CHECK_FALSE(preload::owns(reinterpret_cast<const void*>(&std::malloc)));
}

TEST_CASE("libc-internal allocations go through the shim too") {
  // strdup and friends call malloc from inside libc; with the preload those
  // calls must reach bitslab, and free() must take the results back.
  char* copy = strdup("a string duplicated inside libc");
  REQUIRE(copy != nullptr);
  CHECK(preload::owns(copy));
  std::free(copy);

  char* formatted = nullptr;
  REQUIRE(asprintf(&formatted, "%d-%s", 12345, "formatted") > 0);
  CHECK(std::string(formatted) == "12345-formatted");
  CHECK(preload::owns(formatted));
  std::free(formatted);
}
