// core/pool/pool_classes.h — the pool size classes, kSmallMax < size <= kPoolMax (L3b).
//
// Eight classes per power of two (1152, 1280, ... 2048, 2304, ... 262144): a request never gets
// more than 12.5% extra (1025 B → 1152 B), where pure powers of two as in the join seed would
// give up to 100% (1025 B → 2048 B). Memory use is judged against glibc and mimalloc: with four
// classes per power of two (25%), sqlite3's 1032 B and 4104-4368 B blocks took 1280 and 5120 B,
// and its peak RSS was 1.22x glibc's.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/base/bits.h"
#include "core/base/compiler.h"
#include "core/base/config.h"

namespace bitslab {

inline constexpr unsigned kPoolClassShift = 3;
inline constexpr unsigned kPoolClassesPerDoubling = 1u << kPoolClassShift;
inline constexpr unsigned kPoolClassCount =
    kPoolClassesPerDoubling * (log2_floor(kPoolMax) - log2_floor(kSmallMax));  // 64

constexpr size_t pool_class_bytes(unsigned cls) {
  // Class Pk+j (P classes per doubling, j = 0..P-1) is (P+1+j)/P of 2^(10+k).
  constexpr unsigned P = kPoolClassesPerDoubling;
  return size_t{P + 1 + (cls & (P - 1))}
         << ((cls >> kPoolClassShift) + log2_floor(kSmallMax) - kPoolClassShift);
}

// kSmallMax < size <= kPoolMax.
BITSLAB_ALWAYS_INLINE constexpr unsigned pool_class_of(size_t size) {
  const size_t s = size - 1;
  const unsigned lg = log2_floor(s);  // s in [2^lg, 2^(lg+1))
  return (lg - log2_floor(kSmallMax)) * kPoolClassesPerDoubling +
         static_cast<unsigned>(s >> (lg - kPoolClassShift)) - kPoolClassesPerDoubling;
}

namespace detail {
// The classes of 1 KiB - 32 KiB, by (size - 1) / 128: the finest step of a class there is 128 B
// (1152, 1280, ... 2048), so one byte load replaces pool_class_of's bit scan and shifts on
// the sizes programs ask for most.
inline constexpr size_t kPoolLookupStep = 128;
inline constexpr size_t kPoolLookupMax = 32 * 1024;
struct PoolClassLookup {
  uint8_t class_of_step[kPoolLookupMax / kPoolLookupStep];
  constexpr PoolClassLookup() : class_of_step{} {
    for (size_t i = kSmallMax / kPoolLookupStep; i < kPoolLookupMax / kPoolLookupStep; ++i)
      class_of_step[i] = static_cast<uint8_t>(pool_class_of(i * kPoolLookupStep + 1));
  }
};
inline constexpr PoolClassLookup kPoolClassLookup{};
}  // namespace detail

// kSmallMax < size <= kPoolMax: pool_class_of, by table up to 32 KiB (1 compare, 1 load).
BITSLAB_ALWAYS_INLINE unsigned pool_class_of_fast(size_t size) {
  if (BITSLAB_LIKELY(size <= detail::kPoolLookupMax))
    return detail::kPoolClassLookup.class_of_step[(size - 1) / detail::kPoolLookupStep];
  return pool_class_of(size);
}

// Slots of a pool region start kPoolHeaderBytes after its granule-aligned start, so a slot
// is aligned to the largest power of two dividing its size, up to kPoolHeaderBytes.
constexpr size_t pool_class_alignment(unsigned cls) {
  const size_t a = pow2_factor(pool_class_bytes(cls));
  return a < kPoolHeaderBytes ? a : kPoolHeaderBytes;
}

static_assert(pool_class_bytes(0) == kSmallMax + kSmallMax / kPoolClassesPerDoubling);
static_assert(pool_class_bytes(kPoolClassCount - 1) == kPoolMax);

}  // namespace bitslab
