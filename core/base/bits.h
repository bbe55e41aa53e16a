// core/base/bits.h — constexpr bit arithmetic (L0).
#pragma once
#include <cstddef>
#include <cstdint>

namespace bitslab {

constexpr bool is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }
constexpr size_t align_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }
constexpr size_t align_down(size_t x, size_t a) { return x & ~(a - 1); }
constexpr unsigned ctz64(uint64_t x) { return static_cast<unsigned>(__builtin_ctzll(x)); }
// Bit count without __builtin_popcountll, which (short of -mpopcnt) calls libgcc's
// __popcountdi2: libbitslab.so must need nothing but libc. Only on slow paths.
constexpr unsigned popcount64(uint64_t x) {
  x = x - ((x >> 1) & 0x5555555555555555ull);
  x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
  x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
  return static_cast<unsigned>((x * 0x0101010101010101ull) >> 56);
}
constexpr unsigned log2_floor(size_t x) { return 63u - static_cast<unsigned>(__builtin_clzll(x)); }
// Largest power of two that divides x (x != 0): the natural alignment of a block size.
constexpr size_t pow2_factor(size_t x) { return x & (~x + 1); }

}  // namespace bitslab
