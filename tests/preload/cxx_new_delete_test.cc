// The 20 replaceable C++ operator new/delete variants under LD_PRELOAD, plus
// new-expressions, std::bad_alloc, the new_handler loop and nothrow new.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "tests/preload/preload.h"
#include "tests/support/child.h"

namespace {

using preload::is_aligned;
using preload::opaque;

// Writes the whole block and reads it back: catches blocks that are not
// really n bytes long (a neighbour would be overwritten, or this would fault).
bool scribble(void* p, std::size_t n, unsigned char value) {
  std::memset(p, value, n);
  const auto* bytes = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (bytes[i] != value) return false;
  return true;
}

// Sizes in bitslab's small and pool ranges (owned by bitslab) and one beyond
// them (served by glibc).
struct SizeCase {
  std::size_t size;
  bool bitslab_serves_it;
};
std::vector<SizeCase> size_cases() {
  const std::size_t max = preload::max_core_size();
  return {{1, true},      {16, true},       {100, true},        {1024, true},
          {1025, true},   {5000, true},     {max, true},        {max + 1, false},
          {1u << 20, false}};
}

const std::size_t kHuge = SIZE_MAX / 2;

}  // namespace

TEST_CASE("plain, array, nothrow and sized new/delete variants") {
  for (const SizeCase& c : size_cases()) {
    const std::size_t n = c.size;
    CAPTURE(n);

    void* p1 = ::operator new(n);  // new(size_t)
    void* p2 = ::operator new[](n);  // new[](size_t)
    void* p3 = ::operator new(n, std::nothrow);  // new(size_t, nothrow_t)
    void* p4 = ::operator new[](n, std::nothrow);  // new[](size_t, nothrow_t)
    void* p5 = ::operator new(n);
    void* p6 = ::operator new[](n);
    for (void* p : {p1, p2, p3, p4, p5, p6}) {
      REQUIRE(p != nullptr);
      CHECK(is_aligned(p, __STDCPP_DEFAULT_NEW_ALIGNMENT__));
      CHECK(preload::owns(p) == c.bitslab_serves_it);
      CHECK(scribble(p, n, 0x3C));
    }
    ::operator delete(p1);  // delete(void*)
    ::operator delete[](p2);  // delete[](void*)
    ::operator delete(p3, std::nothrow);  // delete(void*, nothrow_t)
    ::operator delete[](p4, std::nothrow);  // delete[](void*, nothrow_t)
    ::operator delete(p5, n);  // delete(void*, size_t)
    ::operator delete[](p6, n);  // delete[](void*, size_t)
  }
}

TEST_CASE("std::align_val_t new/delete variants, alone and combined with nothrow and size") {
  std::vector<std::size_t> alignments;
  for (std::size_t a = 16; a <= 65536; a *= 2) alignments.push_back(a);
  alignments.push_back(std::size_t{1} << 20);
  for (std::size_t a : alignments) {
    const auto alignment = static_cast<std::align_val_t>(a);
    for (const SizeCase& c : size_cases()) {
      const std::size_t n = c.size;
      CAPTURE(a);
      CAPTURE(n);
      void* p1 = ::operator new(n, alignment);  // new(size_t, align_val_t)
      void* p2 = ::operator new[](n, alignment);  // new[](size_t, align_val_t)
      void* p3 = ::operator new(n, alignment, std::nothrow);  // new(size_t, align_val_t, nothrow_t)
      void* p4 = ::operator new[](n, alignment, std::nothrow);  // new[](size_t, align_val_t, nothrow_t)
      void* p5 = ::operator new(n, alignment);
      void* p6 = ::operator new[](n, alignment);
      for (void* p : {p1, p2, p3, p4, p5, p6}) {
        REQUIRE(p != nullptr);
        CHECK(is_aligned(p, a));
        CHECK(scribble(p, n, 0xC3));
      }
      ::operator delete(p1, alignment);  // delete(void*, align_val_t)
      ::operator delete[](p2, alignment);  // delete[](void*, align_val_t)
      ::operator delete(p3, alignment, std::nothrow);  // delete(void*, align_val_t, nothrow_t)
      ::operator delete[](p4, alignment, std::nothrow);  // delete[](void*, align_val_t, nothrow_t)
      ::operator delete(p5, n, alignment);  // delete(void*, size_t, align_val_t)
      ::operator delete[](p6, n, alignment);  // delete[](void*, size_t, align_val_t)
    }
  }
}

TEST_CASE("every delete variant accepts nullptr") {
  // In a child, so that a variant that faults or aborts on nullptr is reported by name (its
  // stderr) rather than taking the test binary down. Each delete is a no-op: the child exits 0
  // with nothing on stderr.
  const auto child = bitslab::test::run_in_child([] {
    // A fresh opaque null for every call (the compiler cannot prove it null).
    auto null = [] { return opaque<void*>(nullptr); };
    const auto alignment = static_cast<std::align_val_t>(64);
    ::operator delete(null());
    ::operator delete[](null());
    ::operator delete(null(), std::nothrow);
    ::operator delete[](null(), std::nothrow);
    ::operator delete(null(), std::size_t{16});
    ::operator delete[](null(), std::size_t{16});
    ::operator delete(null(), alignment);
    ::operator delete[](null(), alignment);
    ::operator delete(null(), alignment, std::nothrow);
    ::operator delete[](null(), alignment, std::nothrow);
    ::operator delete(null(), std::size_t{64}, alignment);
    ::operator delete[](null(), std::size_t{64}, alignment);
  });
  CHECK_MESSAGE((child.exited && child.exit_code == 0 && child.stderr_text.empty()),
                bitslab::test::describe(child));
}

TEST_CASE("operator new(0) returns distinct non-null pointers") {
  void* a = ::operator new(opaque<std::size_t>(0));
  void* b = ::operator new[](opaque<std::size_t>(0));
  void* c = ::operator new(opaque<std::size_t>(0), static_cast<std::align_val_t>(32));
  CHECK(a != nullptr);
  CHECK(b != nullptr);
  CHECK(c != nullptr);
  CHECK(a != b);
  CHECK(is_aligned(c, 32));
  ::operator delete(a);
  ::operator delete[](b);
  ::operator delete(c, static_cast<std::align_val_t>(32));
}

namespace {
struct alignas(256) OverAligned {
  unsigned char bytes[300];
};
struct Tracked {
  static inline int live = 0;
  std::string name;
  explicit Tracked(std::string n) : name(std::move(n)) { ++live; }
  ~Tracked() { --live; }
};
}  // namespace

TEST_CASE("new-expressions route through the preloaded operators") {
  int* one = new int(42);
  int* array = new int[1000]();
  int* nothrow_one = new (std::nothrow) int(7);
  OverAligned* aligned = new OverAligned();
  OverAligned* aligned_array = new OverAligned[5]();
  REQUIRE(nothrow_one != nullptr);

  CHECK(*one == 42);
  CHECK(array[999] == 0);
  CHECK(*nothrow_one == 7);
  CHECK(preload::owns(one));
  CHECK(preload::owns(array));
  CHECK(preload::owns(nothrow_one));
  CHECK(is_aligned(aligned, 256));
  CHECK(is_aligned(aligned_array, 256));
  CHECK(scribble(aligned_array, 5 * sizeof(OverAligned), 0x77));

  delete one;
  delete[] array;
  delete nothrow_one;
  delete aligned;  // sized + aligned delete (C++17)
  delete[] aligned_array;

  // Library containers and smart pointers.
  std::vector<std::unique_ptr<Tracked>> objects;
  for (int i = 0; i < 2000; ++i)
    objects.push_back(std::make_unique<Tracked>("object number " + std::to_string(i)));
  CHECK(Tracked::live == 2000);
  CHECK(objects[1234]->name == "object number 1234");
  CHECK(preload::owns(objects[5].get()));
  objects.clear();
  CHECK(Tracked::live == 0);
}

TEST_CASE("new of an impossible size throws std::bad_alloc") {
  const auto alignment = static_cast<std::align_val_t>(64);
  CHECK_THROWS_AS(static_cast<void>(::operator new(opaque(kHuge))), std::bad_alloc);
  CHECK_THROWS_AS(static_cast<void>(::operator new[](opaque(kHuge))), std::bad_alloc);
  CHECK_THROWS_AS(static_cast<void>(::operator new(opaque(kHuge), alignment)), std::bad_alloc);
  CHECK_THROWS_AS(static_cast<void>(::operator new[](opaque(kHuge), alignment)), std::bad_alloc);
  CHECK_THROWS_AS(static_cast<void>(::operator new(opaque(SIZE_MAX))), std::bad_alloc);
  // Rounding SIZE_MAX - 1 up to a class or an alignment must not wrap around.
  CHECK_THROWS_AS(static_cast<void>(::operator new(opaque(SIZE_MAX - 1))), std::bad_alloc);
  CHECK_THROWS_AS(static_cast<void>(::operator new(opaque(SIZE_MAX - 1), alignment)), std::bad_alloc);
}

TEST_CASE("nothrow new of an impossible size returns nullptr") {
  const auto alignment = static_cast<std::align_val_t>(64);
  CHECK(::operator new(opaque(kHuge), std::nothrow) == nullptr);
  CHECK(::operator new[](opaque(kHuge), std::nothrow) == nullptr);
  CHECK(::operator new(opaque(kHuge), alignment, std::nothrow) == nullptr);
  CHECK(::operator new[](opaque(kHuge), alignment, std::nothrow) == nullptr);
}

namespace {
int g_handler_calls = 0;
// Gives up after three calls by uninstalling itself: operator new must keep
// calling the handler while one is installed, then throw bad_alloc.
void uninstall_after_three_calls() {
  if (++g_handler_calls == 3) std::set_new_handler(nullptr);
}
void throwing_handler() {
  ++g_handler_calls;
  throw std::bad_alloc();
}
}  // namespace

TEST_CASE("operator new calls the installed new_handler until it gives up, then throws") {
  struct Variant {
    const char* name;
    void* (*allocate)(std::size_t);
  };
  const Variant variants[] = {
      {"new", [](std::size_t n) { return ::operator new(n); }},
      {"new[]", [](std::size_t n) { return ::operator new[](n); }},
      {"new aligned", [](std::size_t n) { return ::operator new(n, static_cast<std::align_val_t>(128)); }},
      {"new[] aligned", [](std::size_t n) { return ::operator new[](n, static_cast<std::align_val_t>(128)); }},
  };
  for (const Variant& v : variants) {
    CAPTURE(v.name);
    g_handler_calls = 0;
    std::set_new_handler(uninstall_after_three_calls);
    CHECK_THROWS_AS(static_cast<void>(v.allocate(opaque(kHuge))), std::bad_alloc);
    CHECK(g_handler_calls == 3);
    const bool handler_uninstalled = std::get_new_handler() == nullptr;
    CHECK(handler_uninstalled);
  }
}

TEST_CASE("nothrow new calls the new_handler and returns nullptr when it throws") {
  const auto alignment = static_cast<std::align_val_t>(128);
  std::set_new_handler(throwing_handler);
  g_handler_calls = 0;
  CHECK(::operator new(opaque(kHuge), std::nothrow) == nullptr);
  CHECK(g_handler_calls == 1);
  g_handler_calls = 0;
  CHECK(::operator new[](opaque(kHuge), std::nothrow) == nullptr);
  CHECK(g_handler_calls == 1);
  g_handler_calls = 0;
  CHECK(::operator new(opaque(kHuge), alignment, std::nothrow) == nullptr);
  CHECK(g_handler_calls == 1);
  g_handler_calls = 0;
  CHECK(::operator new[](opaque(kHuge), alignment, std::nothrow) == nullptr);
  CHECK(g_handler_calls == 1);
  std::set_new_handler(nullptr);
}

TEST_CASE("the new_handler is not called for requests that succeed") {
  g_handler_calls = 0;
  std::set_new_handler(throwing_handler);
  void* p = ::operator new(4096);
  void* q = ::operator new(preload::max_core_size() + 1);
  CHECK(g_handler_calls == 0);
  ::operator delete(p);
  ::operator delete(q);
  std::set_new_handler(nullptr);
}
