// The hardened build (libbitslab-hardened.so): each defence, shown to stop the attack it is
// for. Runs only under that library (the first case refuses to go on otherwise).
#include <doctest/doctest.h>

#include <dlfcn.h>
#include <malloc.h>

#include <unistd.h>
#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/preload/preload.h"
#include "tests/support/child.h"

namespace {

using bitslab::test::ChildResult;
using bitslab::test::run_in_child;

bool hardened() {
  using Fn = int (*)();
  auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "bitslab_hardened"));
  return fn != nullptr && fn() == 1;
}

// The child aborted with one line that says `what` and names `address`.
void check_abort(const ChildResult& r, const char* what, const void* address) {
  INFO(bitslab::test::describe(r));
  CHECK(bitslab::test::aborted_naming(r, address, what));
}

void check_fault(const ChildResult& r) {
  INFO(r.stderr_text);
  CHECK(r.signaled);
  CHECK(r.signal == SIGSEGV);
}

constexpr size_t kLarge = 300000;  // above the core's classes: a guarded block

}  // namespace

TEST_CASE("hardened: this is the hardened library") {
  REQUIRE(hardened());
}

TEST_CASE("hardened: a large block is ours, right against a guard page") {
  for (size_t size : {size_t{262145}, size_t{300000}, size_t{1} << 20, size_t{5} << 20, size_t{9000000}}) {
    char* p = static_cast<char*>(malloc(size));
    REQUIRE(p != nullptr);
    CHECK(preload::owns(p));
    CHECK(preload::is_aligned(p, 16));
    CHECK(malloc_usable_size(p) >= size);
    CHECK(malloc_usable_size(p) < size + 16);
    memset(p, 0x5a, size);
    char* q = static_cast<char*>(realloc(p, size * 2));
    REQUIRE(q != nullptr);
    CHECK(q[size - 1] == 0x5a);
    free(q);
  }
  void* z = calloc(1, kLarge);
  REQUIRE(z != nullptr);
  for (size_t i = 0; i < kLarge; ++i) REQUIRE(static_cast<char*>(z)[i] == 0);
  free(z);
  void* a = nullptr;
  REQUIRE(posix_memalign(&a, 1 << 16, kLarge) == 0);
  CHECK(preload::is_aligned(a, 1 << 16));
  free(a);
}

TEST_CASE("hardened: an overflow or underflow of a large block faults at once") {
  check_fault(run_in_child([] {
    char* p = static_cast<char*>(malloc(kLarge));  // 300000 = 16 * 18750: ends at the guard
    preload::opaque(p)[kLarge] = 1;
  }));
  check_fault(run_in_child([] {
    char* p = static_cast<char*>(malloc(size_t{128} << 12));  // whole pages: starts at the front guard
    preload::opaque(p)[-1] = 1;
  }));
}

TEST_CASE("hardened: a large block used after free faults, and freed twice it aborts") {
  check_fault(run_in_child([] {
    char* p = static_cast<char*>(malloc(kLarge));
    free(p);
    preload::opaque(p)[100] = 1;
  }));
  static char* p;
  p = static_cast<char*>(malloc(kLarge));
  check_abort(run_in_child([] {
    free(p);
    free(p);
  }), "double free of", p);
  check_abort(run_in_child([] { free(p + 4096); }), "never handed out", p + 4096);
  free(p);
}

TEST_CASE("hardened: an overwritten slab header is caught before it is trusted") {
  static char* p;
  p = static_cast<char*>(malloc(100));
  check_abort(run_in_child([] {
                // A stray write into p's slab header, which starts with a keyed tag. The header is slot
                // (p's 64 KiB page in its 4 MiB granule) of the granule's first page, 1 KiB each
                // (core/base/side_room.h): an overflow from a block cannot reach it.
                const uintptr_t a = reinterpret_cast<uintptr_t>(p);
                auto* header = reinterpret_cast<uint32_t*>((a & ~uintptr_t{0x3fffff}) | ((a >> 6) & 0xfc00));
                *header = 0x5ab1ab5a;  // the default build's constant tag: no longer enough
                free(p);
              }),
              "not live", p);
  free(p);
}

TEST_CASE("hardened: blocks come in no predictable order, and a double free still aborts") {
  std::thread([] {  // a fresh thread: a fresh heap, a fresh slab
    std::vector<uintptr_t> order;
    for (int i = 0; i < 64; ++i) order.push_back(reinterpret_cast<uintptr_t>(malloc(32)));
    int ascending = 0;
    for (size_t i = 1; i < order.size(); ++i) ascending += order[i] == order[i - 1] + 32;
    CHECK(ascending < 32);  // the default build hands out 63 of 63 in address order
    // Nothing cached: a freed block is not simply the next one handed out.
    void* a = reinterpret_cast<void*>(order[10]);
    free(a);
    int same = 0;
    for (int i = 0; i < 8; ++i) {
      void* b = malloc(32);
      same += b == a;
      order.push_back(reinterpret_cast<uintptr_t>(b));
    }
    CHECK(same <= 1);
    for (size_t i = 0; i < order.size(); ++i)
      if (i != 10) free(reinterpret_cast<void*>(order[i]));
  }).join();
  static void* p;
  p = malloc(32);
  check_abort(run_in_child([] {
    free(p);
    free(p);
  }), "double free of", p);
  free(p);
}

TEST_CASE("hardened: sized delete with the right size passes, with a wrong size aborts") {
  struct Base { char data[24]; };
  for (size_t size : {size_t{1}, size_t{24}, size_t{100}, size_t{1024}, size_t{1025}, size_t{3000},
                      size_t{262144}, size_t{262145}, size_t{1} << 20}) {
    void* p = ::operator new(size);
    ::operator delete(p, size);
    void* a = ::operator new[](size);
    ::operator delete[](a, size);
    void* aligned = ::operator new(size, std::align_val_t{256});
    ::operator delete(aligned, size, std::align_val_t{256});
  }
  auto* object = new Base;
  delete object;  // sized: 24
  static char* p;
  static size_t claimed;
  for (auto [real, wrong] : {std::pair<size_t, size_t>{24, 200}, {200, 24}, {3000, 5000},
                             {3000, 100}, {100000, 300000}, {300000, 3000}}) {
    p = static_cast<char*>(::operator new(real));
    claimed = wrong;
    CAPTURE(real);
    CAPTURE(wrong);
    check_abort(run_in_child([] { ::operator delete(p, claimed); }),
                ("sized delete with a wrong size (" + std::to_string(wrong) + " bytes) of").c_str(), p);
    ::operator delete(p, real);
  }
}
