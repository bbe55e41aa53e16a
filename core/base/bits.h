// core/base/bits.h — constexpr bit arithmetic (L0).
#pragma once
#include <cstddef>
#include <cstdint>

namespace bitslab {

constexpr bool is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }
constexpr size_t align_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }
constexpr size_t align_down(size_t x, size_t a) { return x & ~(a - 1); }
constexpr unsigned ctz64(uint64_t x) { return static_cast<unsigned>(__builtin_ctzll(x)); }
constexpr unsigned popcount64(uint64_t x) { return static_cast<unsigned>(__builtin_popcountll(x)); }
constexpr unsigned log2_floor(size_t x) { return 63u - static_cast<unsigned>(__builtin_clzll(x)); }
// Largest power of two that divides x (x != 0): the natural alignment of a block size.
constexpr size_t pow2_factor(size_t x) { return x & (~x + 1); }

}  // namespace bitslab
