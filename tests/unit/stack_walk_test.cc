// The profiler's cached stack walk (core/profile/stack_trace.h, frame_rule*.h) against libgcc's
// unwinder: from the same frame, both must find the same return addresses, through every kind
// of frame compiled code makes (frames kept in rsp, frames kept in rbp by alloca, libc's own,
// a thread's outermost, stacks deeper than kept), and the cached walk must decline, not guess,
// where it cannot follow (a signal frame).
#include <doctest/doctest.h>
#include <pthread.h>
#include <signal.h>

#include <alloca.h>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "core/base/compiler.h"
#include "core/profile/stack_trace.h"

using namespace bitslab::profile;

#if defined(__x86_64__)
namespace {

struct Walks {
  bool cached_ok = false;
  size_t cached = 0, libgcc = 0, captured = 0;
  uintptr_t a[kMaxFrames], b[kMaxFrames], c[kMaxFrames];
  bool same() const { return cached == libgcc && memcmp(a, b, cached * sizeof a[0]) == 0; }
  bool captured_same() const { return captured == libgcc && memcmp(c, b, captured * sizeof c[0]) == 0; }
};

// Takes all three walks from one frame: the stack above it is the test's own.
BITSLAB_NOINLINE void walk_here(Walks& w) {
  const auto below = reinterpret_cast<uintptr_t>(__builtin_dwarf_cfa());
  w.cached_ok = detail::walk_with_rules(w.a, w.cached, below, detail::walk_start_here());
  w.libgcc = detail::walk_with_libgcc(w.b, below);
  w.captured = capture_stack(w.c, __builtin_dwarf_cfa());
  asm volatile("" ::: "memory");  // no tail call: this frame is the one walked from
}

BITSLAB_NOINLINE int recurse(Walks& w, int depth) {
  volatile int level = depth;  // read after the call: every level keeps a frame of its own
  if (depth == 0)
    walk_here(w);
  else
    recurse(w, depth - 1);
  return level;
}

// alloca moves rsp by a run-time amount: the compiler keeps the CFA in rbp, and saves the
// caller's rbp. Nested, so that stepping out of the inner frame needs the outer's rbp back.
BITSLAB_NOINLINE int with_alloca(Walks& w, size_t n, int levels) {
  volatile char* buf = static_cast<char*>(alloca(n));
  buf[0] = 1;
  if (levels == 0)
    walk_here(w);
  else
    with_alloca(w, n + 8, levels - 1);
  return buf[0];
}

Walks* g_sorting;
int compare_and_walk(const void* x, const void* y) {
  if (g_sorting != nullptr) {
    walk_here(*g_sorting);
    g_sorting = nullptr;
  }
  return *static_cast<const int*>(x) - *static_cast<const int*>(y);
}

Walks* g_signalled;
void on_signal(int) { walk_here(*g_signalled); }

}  // namespace

TEST_CASE("profile: the cached stack walk finds the frames libgcc's unwinder finds") {
  REQUIRE(load_unwinder());
  SUBCASE("frames kept in rsp, at depths 0 to 20, twice (the second from the cache)") {
    for (int round = 0; round < 2; ++round)
      for (int depth = 0; depth <= 20; ++depth) {
        Walks w;
        recurse(w, depth);
        CHECK(w.cached_ok);
        CHECK(w.libgcc >= static_cast<size_t>(depth) + 2);  // the levels, the test, doctest...
        CHECK(w.same());
        CHECK(w.captured_same());
      }
  }
  SUBCASE("frames kept in rbp (alloca)") {
    for (size_t n : {16, 1000, 100000}) {
      Walks w;
      with_alloca(w, n, 2);
      CHECK(w.cached_ok);
      CHECK(w.same());
    }
  }
  SUBCASE("through libc's frames (qsort's comparator)") {
    int values[64];
    for (int i = 0; i < 64; ++i) values[i] = (i * 37) % 64;
    Walks w;
    g_sorting = &w;
    qsort(values, 64, sizeof values[0], compare_and_walk);
    REQUIRE(w.libgcc > 3);
    CHECK(w.cached_ok);
    CHECK(w.same());
  }
  SUBCASE("to a thread's outermost frame") {
    Walks w;
    pthread_t t;
    REQUIRE(pthread_create(
                &t, nullptr,
                [](void* arg) -> void* {
                  recurse(*static_cast<Walks*>(arg), 3);
                  return nullptr;
                },
                &w) == 0);
    pthread_join(t, nullptr);
    CHECK(w.cached_ok);
    CHECK(w.same());
  }
  SUBCASE("deeper than kMaxFrames: both keep the innermost 64") {
    Walks w;
    recurse(w, 100);
    CHECK(w.cached_ok);
    CHECK(w.cached == kMaxFrames);
    CHECK(w.same());
  }
  SUBCASE("through a signal frame: the cached walk declines, and capture_stack is libgcc's") {
    Walks w;
    g_signalled = &w;
    struct sigaction action {
    }, old{};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    REQUIRE(sigaction(SIGUSR1, &action, &old) == 0);
    raise(SIGUSR1);
    sigaction(SIGUSR1, &old, nullptr);
    CHECK_FALSE(w.cached_ok);
    CHECK(w.libgcc > 3);  // the handler, the signal frame, raise, the test...
    CHECK(w.captured_same());
  }
}
#endif
