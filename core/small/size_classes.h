// core/small/size_classes.h — the small size classes, 1..1024 B (L3a).
//
// 16 B apart up to 128 B (where most C and C++ objects are), then four classes per power of two
// up to 512 B (the spacing jemalloc uses), then 64 B apart (as tcmalloc spaces them there). Up to
// 128 B a block wastes at most 15 bytes; above, at most 19.7% (a 257 B request in a 320 B
// block). tests/unit/small_test.cc measures the mean over every request size 1..1024 (6.9%; 8.8%
// with 128 B steps above 512 B) and checks the table's invariants.
//
// Why 64 B steps above 512 B: a block's next occupant is mostly of another size within the class,
// and with 128 B steps the end it writes is seldom on the line the last one's end was on, so
// it misses in cache. In bench_server (larson-style, sizes 16-1024 B uniform; cachegrind with
// a 1 MiB last level) the program's own misses on its blocks fell from 1.47 M to 1.18 M per
// 1 M ops; its time by 4% with one thread and 2% with four (7 and 5 interleaved runs), for
// 0.5 MiB more RSS of 31 (a partly used slab per thread in each new class).
//
//   class:  0   1   2   3   4   5   6   7   8   9  10  11  12  13  14  15  16  17  18  19  20  21  22   23
//   bytes: 16  32  48  64  80  96 112 128 160 192 224 256 320 384 448 512 576 640 704 768 832 896 960 1024
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/base/compiler.h"
#include "core/base/config.h"

namespace bitslab {

inline constexpr unsigned kSmallClassCount = 24;

inline constexpr uint16_t kSmallClassBytes[kSmallClassCount] = {16,  32,  48,  64,  80,  96,  112, 128,
                                                                160, 192, 224, 256, 320, 384, 448, 512,
                                                                576, 640, 704, 768, 832, 896, 960, 1024};

namespace detail {
// class_of_granule[g] is the class of a request of (g-1)*16+1 .. g*16 bytes; g = (size+15)/16.
struct SmallClassLookup {
  uint8_t class_of_granule[kSmallMax / kMinAlign + 1];
  constexpr SmallClassLookup() : class_of_granule{} {
    unsigned cls = 0;
    for (unsigned g = 0; g <= kSmallMax / kMinAlign; ++g) {
      while (kSmallClassBytes[cls] < g * kMinAlign) ++cls;
      class_of_granule[g] = static_cast<uint8_t>(cls);
    }
  }
};
inline constexpr SmallClassLookup kSmallClassLookup{};
}  // namespace detail

// size <= kSmallMax. One add, one shift, one byte load. malloc(0) gets the 16 B class.
BITSLAB_ALWAYS_INLINE unsigned small_class_of(size_t size) {
  return detail::kSmallClassLookup.class_of_granule[(size + kMinAlign - 1) / kMinAlign];
}

// Whether a thread that frees another heap's block of this class keeps it for its own next
// malloc of the class (any heap's cache may take it: Slab::owner_only, set from this when the
// slab is made), as tcmalloc and jemalloc keep every block. A block whose size is a multiple of
// the cache line is alone on its lines (block 0 is line-aligned, core/small/slab.h); a block of
// 128 B or more that is not shares at most its first and last line, with the ends of its
// neighbours, and has a line of its own between them: reused by the freeing thread, it writes
// mostly lines that no other thread writes. A smaller block (16-112 B but 64 B) shares its
// lines with blocks the owner may be writing (passive false sharing: bench_false_sharing ran
// 2.1x slower when these were kept too), so it goes back to its owner.
inline constexpr size_t kCacheLineBytes = 64;
constexpr bool small_class_kept_by_freeing_thread(unsigned cls) {
  return kSmallClassBytes[cls] >= 2 * kCacheLineBytes || kSmallClassBytes[cls] % kCacheLineBytes == 0;
}

static_assert(kSmallClassBytes[kSmallClassCount - 1] == kSmallMax);
static_assert(kSmallClassBytes[0] == kMinAlign);

}  // namespace bitslab
