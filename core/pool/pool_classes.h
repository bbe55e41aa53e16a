// core/pool/pool_classes.h — the pool size classes, kSmallMax < size <= kPoolMax (L3b).
//
// Four classes per power of two (1280, 1536, 1792, 2048, 2560, ... 262144): a request never
// gets more than 25% extra (1025 B → 1280 B), where pure powers of two as in the join seed
// would give up to 100% (1025 B → 2048 B). Memory use is judged against glibc and mimalloc.
#pragma once
#include <cstddef>

#include "core/base/bits.h"
#include "core/base/compiler.h"
#include "core/base/config.h"

namespace bitslab {

inline constexpr unsigned kPoolClassCount =
    4 * (log2_floor(kPoolMax) - log2_floor(kSmallMax));  // 32

constexpr size_t pool_class_bytes(unsigned cls) {
  // Class 4k+j (j = 0..3) is (5+j)/4 of 2^(10+k).
  return (5 + (cls & 3)) << ((cls >> 2) + log2_floor(kSmallMax) - 2);
}

// kSmallMax < size <= kPoolMax.
BITSLAB_ALWAYS_INLINE unsigned pool_class_of(size_t size) {
  const size_t s = size - 1;
  const unsigned lg = log2_floor(s);  // s in [2^lg, 2^(lg+1))
  return (lg - log2_floor(kSmallMax)) * 4 + static_cast<unsigned>(s >> (lg - 2)) - 4;
}

// Slots of a pool region start kPoolHeaderBytes after its granule-aligned start, so a slot
// is aligned to the largest power of two dividing its size, up to kPoolHeaderBytes.
constexpr size_t pool_class_alignment(unsigned cls) {
  const size_t a = pow2_factor(pool_class_bytes(cls));
  return a < kPoolHeaderBytes ? a : kPoolHeaderBytes;
}

static_assert(pool_class_bytes(0) == kSmallMax + kSmallMax / 4);
static_assert(pool_class_bytes(kPoolClassCount - 1) == kPoolMax);

}  // namespace bitslab
