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

// A thread's clock lives in its heap (ThreadHeap::sample_clock), beside the lines the routed
// malloc reads anyway: a clock of its own in TLS cost a second TLS access on every malloc while
// profiling, 16% of a malloc+free in bench_fastpath's batches (the README's profiler section).
class SampleClock {
 public:
  // Counts `size` bytes off the clock's window; true (and nothing counted) when they reach the
  // window's end, and crossed() must decide. A window never exceeds the cap crossed() is given,
  // so every request of at least the cap asks too: the routed malloc needs no size test of its
  // own. A clock never started has a window of 0: every request asks, and the shared empty
  // heap's clock is never written. 1 load, 1 subtract, 1 branch, 1 store. (A malloc in a signal
  // handler between the load and the store goes uncounted: a sample point moves, nothing breaks.)
  BITSLAB_ALWAYS_INLINE bool count_down(size_t size) {
    uint64_t left = window_;
#if defined(__x86_64__) && defined(__GCC_ASM_FLAG_OUTPUTS__)
    // The subtract's own flags say whether it borrowed or reached 0; GCC's code for the test
    // below compares first and subtracts after: an instruction more on every malloc.
    bool reached;
    __asm__("subq %[size], %[left]" : [left] "+r"(left), "=@ccbe"(reached) : [size] "r"(size));
    if (BITSLAB_UNLIKELY(reached)) return true;
#else
    if (BITSLAB_UNLIKELY(left <= size)) return true;
    left -= size;
#endif
    window_ = left;
    return false;
  }

  // After count_down() said so: whether this allocation of `size` bytes is a sample (it reaches
  // the sample point). Counts it, or at a sample draws the distance to the next point from the
  // end of this allocation (memoryless, so this is the same process), and re-arms the window
  // at no more than `cap` bytes. On the first call (not seeded yet) it seeds and draws first.
  // Rate 1: always yes, the window stays 0.
  BITSLAB_NOINLINE bool crossed(size_t size, uint64_t rate, uint64_t cap);

 private:
  void seed();  // from AT_RANDOM, the clock's address and a counter: no two clocks draw alike
  // An exponential variate of mean `rate`, at least 1: -ln(U) * rate for U uniform in (0, 1].
  uint64_t draw(uint64_t rate);
  uint64_t next();  // xorshift64*

  uint64_t window_ = 0;  // bytes count_down() may count before it asks
  uint64_t beyond_ = 0;  // the rest of the distance to the sample point, past the window
  uint64_t rng_ = 0;     // 0 until seeded
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
