// core/profile/sample_clock.h — when the heap profiler samples: once every BITSLAB_PROFILE_RATE
// bytes on average, at exponentially distributed distances (L3).
//
// Each thread counts down the bytes it allocates to its next sample point. The distances
// between points are drawn from an exponential distribution: the points form a Poisson process
// over the bytes allocated, so an allocation of s bytes is sampled with probability
// 1 - exp(-s / rate) whatever came before it, and no periodic pattern in the program can hide
// from (or line up with) the sampler. A sample's weight, 1 / that probability, makes the totals
// unbiased (sample_weight() below). Rate 1 samples every allocation, with weight 1.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/base/compiler.h"

namespace bitslab::profile {

class SampleClock {
 public:
  // Counts `size` bytes off the clock (on x86-64, one subtract into memory): true when that
  // reached a sample point, or the clock was never started (it starts at 0), and crossed() must
  // decide.
  BITSLAB_ALWAYS_INLINE bool count_down(size_t size) {
#if defined(__x86_64__) && defined(__GCC_ASM_FLAG_OUTPUTS__)
    // One subtract into memory whose flags are the answer. GCC's own code for the lines below
    // loads, subtracts, stores and tests: 3 instructions more on every malloc while profiling.
    bool expired;
    __asm__("subq %[size], %[left]" : [left] "+m"(bytes_left_), "=@ccle"(expired) : [size] "r"(size));
    return expired;
#else
    bytes_left_ -= static_cast<int64_t>(size);
    return bytes_left_ <= 0;
#endif
  }

  // After count_down() said so: whether this allocation is a sample. Draws the distance to the
  // next point from the end of this allocation (memoryless, so this is the same process). On
  // the thread's first call (not seeded yet) it seeds, draws, and counts this allocation
  // against the fresh distance instead. Rate 1: always yes, the count stays at 0.
  BITSLAB_NOINLINE bool crossed(uint64_t rate);

 private:
  void seed();  // from AT_RANDOM, the thread and a counter: no two threads draw alike
  // An exponential variate of mean `rate`, at least 1: -ln(U) * rate for U uniform in (0, 1].
  int64_t draw(uint64_t rate);
  uint64_t next();  // xorshift64*

  int64_t bytes_left_ = 0;
  uint64_t rng_ = 0;  // 0 until seeded
};

// -ln(u) for u in (0, 1], without libm (the library links nothing but libc): the exponent of
// u plus ln of its mantissa by the atanh series, to about 1e-7.
double negative_log(double u);
// 1 - exp(-x) for x >= 0, without libm, to about 1e-9 relative.
double one_minus_exp_negative(double x);
// How many allocations of `size` bytes one sample stands for: 1 / P(sampled) =
// 1 / (1 - exp(-size / rate)); 1 at rate 1. pprof's heap_v2 reader applies the same.
inline double sample_weight(uint64_t size, uint64_t rate) {
  if (rate == 1) return 1;
  const double p = one_minus_exp_negative(static_cast<double>(size) / static_cast<double>(rate));
  return p > 0 ? 1 / p : 0;
}

}  // namespace bitslab::profile
