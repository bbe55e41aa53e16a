#include "core/profile/sample_clock.h"

#include <sys/auxv.h>

#include <atomic>
#include <cstring>

namespace bitslab::profile {

void SampleClock::seed() {
  static std::atomic<uint64_t> g_threads{0};
  uint64_t seed = 0x9e3779b97f4a7c15;
  if (const void* random = reinterpret_cast<const void*>(getauxval(AT_RANDOM)))
    memcpy(&seed, static_cast<const char*>(random) + 8, sizeof seed);  // bytes the heaps' marks do not use
  seed ^= reinterpret_cast<uintptr_t>(this) * 0xbf58476d1ce4e5b9;
  seed ^= (g_threads.fetch_add(1, std::memory_order_relaxed) + 1) * 0x94d049bb133111eb;
  rng_ = seed | 1;  // xorshift's state must not be 0
}

bool SampleClock::crossed(size_t size, uint64_t rate, uint64_t cap) {
  if (rate == 1) return true;
  uint64_t left = window_ + beyond_;  // to the sample point, before this allocation
  if (rng_ == 0) {
    seed();
    left = draw(rate);
  }
  const bool sample = size >= left;
  left = sample ? draw(rate) : left - size;
  window_ = left < cap ? left : cap;
  beyond_ = left - window_;
  return sample;
}

uint64_t SampleClock::next() {
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return rng_ * 0x2545f4914f6cdd1d;
}

uint64_t SampleClock::draw(uint64_t rate) {
  const double u = static_cast<double>((next() >> 11) + 1) * 0x1.0p-53;  // (0, 1]
  const double distance = negative_log(u) * static_cast<double>(rate);
  if (distance >= 0x1.0p62) return uint64_t{1} << 62;
  return distance < 1 ? 1 : static_cast<uint64_t>(distance);
}

double negative_log(double u) {
  // u = m * 2^e with m in [1, 2): ln u = e ln 2 + ln m, and ln m = 2 atanh((m - 1) / (m + 1)),
  // whose series in z = (m - 1) / (m + 1) <= 1/3 has converged to 1e-7 by z^11.
  uint64_t bits;
  memcpy(&bits, &u, sizeof bits);
  const int e = static_cast<int>((bits >> 52) & 0x7ff) - 1023;
  bits = (bits & ((uint64_t{1} << 52) - 1)) | (uint64_t{1023} << 52);
  double m;
  memcpy(&m, &bits, sizeof m);
  const double z = (m - 1) / (m + 1), z2 = z * z;
  const double ln_m =
      2 * z * (1 + z2 * (1.0 / 3 + z2 * (1.0 / 5 + z2 * (1.0 / 7 + z2 * (1.0 / 9 + z2 / 11)))));
  const double ln_u = e * 0.6931471805599453 + ln_m;
  return ln_u >= 0 ? 0 : -ln_u;
}

double one_minus_exp_negative(double x) {
  if (x <= 0) return 0;
  if (x > 40) return 1;  // exp(-40) is below a double's resolution of 1
  // exp(-x) = exp(-x / 2^k)^(2^k), with x / 2^k < 1/16 where the Taylor series is exact to
  // 1e-9 by its 5th term. Small x keeps 1 - exp(-x) from the series directly (no cancellation).
  int k = 0;
  double y = x;
  while (y > 0.0625) {
    y *= 0.5;
    ++k;
  }
  // expm1(-y), then (1 + a)^2 - 1 = a (2 + a) for each squaring, still without cancellation.
  double a = -y * (1 - y / 2 * (1 - y / 3 * (1 - y / 4 * (1 - y / 5 * (1 - y / 6)))));
  for (int i = 0; i < k; ++i) a = a * (2 + a);
  return -a;
}

}  // namespace bitslab::profile
