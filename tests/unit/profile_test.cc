// The heap profiler's parts (core/profile/), without a process to profile: its arithmetic
// without libm, the sample clock's distribution, and its mapped tables.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "core/profile/mapped_table.h"
#include "core/profile/profile_table.h"
#include "core/profile/sample_clock.h"

using namespace bitslab::profile;

TEST_CASE("profile: the libm-free logarithm and exponential agree with libm") {
  for (double u = 1e-300; u < 1; u *= 1.37)
    CHECK(negative_log(u) == doctest::Approx(-std::log(u)).epsilon(1e-6));
  CHECK(negative_log(1.0) == 0.0);
  for (double x = 1e-9; x < 60; x *= 1.21)
    CHECK(one_minus_exp_negative(x) == doctest::Approx(-std::expm1(-x)).epsilon(1e-8));
  CHECK(sample_weight(1000, 1) == 1.0);
  CHECK(sample_weight(524288, 524288) == doctest::Approx(1 / (1 - std::exp(-1.0))));
}

constexpr uint64_t kNoCap = uint64_t{1} << 40;

// The clock's contract: an allocation of s bytes is a sample with probability 1 - exp(-s/R),
// whatever came before it (a Poisson process over the bytes). Checked for three sizes
// interleaved, so that a clock that forgot the remainder at a sample, or restarted per size,
// would show; and with a cap on the window below two of the sizes (the routed malloc's, which
// makes every large request ask), so that a clock that lost the distance beyond the window
// would show.
TEST_CASE("profile: the sample clock picks each allocation with probability 1 - exp(-size/rate)") {
  constexpr uint64_t kRate = 4096;
  const size_t sizes[] = {64, 1000, 9000};
  for (const uint64_t cap : {kNoCap, uint64_t{700}}) {
    SampleClock clock;
    std::map<size_t, std::pair<double, double>> seen;  // size -> (samples, allocations)
    for (int i = 0; i < 600000; ++i) {
      const size_t size = sizes[(i * 7) % 3];
      const bool sampled = clock.count_down(size) && clock.crossed(size, kRate, cap);
      seen[size].first += sampled;
      seen[size].second += 1;
    }
    for (size_t size : sizes) {
      const double expected = 1 - std::exp(-static_cast<double>(size) / kRate);
      const double n = seen[size].second;
      const double got = seen[size].first / n;
      INFO("cap ", cap, ", size ", size, ": sampled ", got, ", expected ", expected);
      CHECK(std::fabs(got - expected) < 5 * std::sqrt(expected * (1 - expected) / n));
    }
  }
}

// The routed malloc sends a request on to the core's fast path only when the clock did not ask:
// a request of the cap (the core's limit + 1) or more must always ask, however far the next
// sample point is.
TEST_CASE("profile: a request of at least the clock's cap always asks") {
  constexpr uint64_t kCap = 5000;
  SampleClock clock;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const size_t size = rng() % 2 ? rng() % kCap : kCap + rng() % 3 * kCap;
    const bool asked = clock.count_down(size);
    if (size >= kCap) REQUIRE(asked);
    if (asked) clock.crossed(size, uint64_t{1} << 30, kCap);  // a sample point far away
  }
}

TEST_CASE("profile: rate 1 samples every allocation") {
  SampleClock clock;
  for (int i = 0; i < 1000; ++i) {
    const size_t size = 1 + i % 50;
    CHECK((clock.count_down(size) && clock.crossed(size, 1, kNoCap)));
  }
}

// Linear probing with backward-shift erase: every key inserted and not erased stays findable,
// every erased one is gone, through growth, against a std::set.
TEST_CASE("profile: the hash index keeps every entry reachable through erases and growth") {
  HashIndex index;
  std::set<uint64_t> model;
  std::mt19937_64 rng(42);
  auto same = [](uint64_t) { return true; };
  for (int step = 0; step < 200000; ++step) {
    // Keys from a small range collide often; step by 64 like block addresses.
    const uint64_t key = ((rng() % 5000) + 1) * 64;
    if (rng() % 3 != 0) {
      REQUIRE(index.make_room());
      HashIndex::Slot* slot = index.find(key, same);
      if (slot->key == 0) {
        *slot = HashIndex::Slot{key, key / 64};
        index.added();
      }
      model.insert(key);
    } else if (model.count(key) != 0) {
      HashIndex::Slot* slot = index.find(key, same);
      REQUIRE(slot->key == key);
      index.erase(slot);
      model.erase(key);
    }
    if (step % 10000 == 0) {
      for (uint64_t k = 64; k <= 5000 * 64; k += 64) {
        HashIndex::Slot* slot = index.find(k, same);
        REQUIRE((slot->key == k) == (model.count(k) != 0));
        if (slot->key == k) CHECK(slot->value == k / 64);
      }
    }
  }
  CHECK(index.size() == model.size());
}

TEST_CASE("profile: the table counts samples per site and forgets freed blocks") {
  ProfileTable table;
  REQUIRE(table.init());
  const uintptr_t stack_a[] = {0x1000, 0x2000, 0x3000};
  const uintptr_t stack_b[] = {0x1000, 0x2000, 0x4000};
  for (uintptr_t block = 1; block <= 300; ++block) {
    const uintptr_t* stack = block % 3 == 0 ? stack_b : stack_a;
    REQUIRE(table.add(block * 16, block % 2 == 0 ? 64 : 128, stack, 3));
  }
  CHECK(table.site_count() == 4);  // two stacks, two sizes
  CHECK(table.live_blocks() == 300);
  for (uintptr_t block = 1; block <= 300; block += 2) CHECK(table.remove(block * 16));
  CHECK_FALSE(table.remove(16));          // freed already
  CHECK_FALSE(table.remove(99999 * 16));  // never sampled
  uint64_t allocated = 0, live = 0;
  for (size_t i = 0; i < table.site_count(); ++i) {
    allocated += table.site(i).allocated;
    live += table.site(i).live;
    CHECK(table.site(i).depth == 3);
    CHECK(table.frames(table.site(i))[0] == 0x1000);
    if (table.site(i).size == 128) CHECK(table.site(i).live == 0);  // the odd blocks, all freed
  }
  CHECK(allocated == 300);
  CHECK(live == 150);
  CHECK(table.live_blocks() == 150);
}
