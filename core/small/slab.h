// core/small/slab.h — a slab: one 64 KiB page of blocks of one size class (L3a).
//
//   [ Slab header | bitmap (1 = free) ][ pad to block alignment ][ block 0 ][ block 1 ] ...
//   ^ kSlabBytes-aligned: slab_of(p) is p with the low 16 bits cleared
//
// The header's identity fields (class, geometry, owner) are written once when the slab is
// created and then only read, by any thread. Everything else (bitmap, used count, list links,
// state) belongs to the owning thread's heap (core/thread) and is touched by no other thread:
// a block freed by another thread is handed to the owner, which sets its bit.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/base/bitmap.h"
#include "core/base/bits.h"
#include "core/base/compiler.h"
#include "core/base/config.h"
#include "core/base/hardening.h"
#include "core/small/size_classes.h"

namespace bitslab {

class Slab {
 public:
  enum State : uint8_t {
    kCurrent,  // its heap allocates from it
    kPartial,  // on its heap's partial list for the class
    kFull,     // no free block when last looked; on no list until a block comes back
  };
  // Identifies a live slab header; cleared when the slab page is given back, so a stale or
  // forged pointer into a released slab is reported rather than trusted. The hardened build
  // keys it with the process secret and the slab's address (header_tag, core/base/hardening.h).
  static constexpr uint32_t kLiveMagic = 0x5ab1ab5a;

  // Builds a slab of class `cls` in `page` (kSlabBytes, kSlabBytes-aligned) for `owner`.
  static Slab* create(void* page, unsigned cls, void* owner);
  // Marks the header dead before the page is given back.
  void retire() { magic = 0; owner = nullptr; }

  static Slab* of(const void* p) {
    return reinterpret_cast<Slab*>(reinterpret_cast<uintptr_t>(p) & ~(kSlabBytes - 1));
  }
  bool live() const {
    return __atomic_load_n(&magic, __ATOMIC_ACQUIRE) == header_tag(this, kLiveMagic);
  }

  // The index of the block that starts at p, or kNoBlock if p is not the start of one of this
  // slab's blocks (an interior pointer, a pointer into the header or the tail).
  static constexpr uint32_t kNoBlock = ~uint32_t{0};
  BITSLAB_ALWAYS_INLINE uint32_t block_index(const void* p) const {
    const size_t offset = static_cast<size_t>(static_cast<const char*>(p) -
                                              reinterpret_cast<const char*>(this)) - first_offset;
    // One multiply gives both the quotient and the divisibility test (Lemire, "Faster
    // remainder by direct computation"): with c = ceil(2^32 / d) and offset < 2^16, the high
    // half of offset * c is offset / d, and offset is a multiple of d iff the low 32 bits are
    // below c. A pointer into the header wraps offset, giving a quotient >= capacity.
    const uint64_t product = uint64_t{offset} * div_magic;
    const uint32_t index = static_cast<uint32_t>(product >> 32);
    if (BITSLAB_UNLIKELY(index >= capacity || static_cast<uint32_t>(product) >= div_magic)) return kNoBlock;
    return index;
  }
  void* block_at(size_t index) {
    return reinterpret_cast<char*>(this) + first_offset + index * block_size;
  }

  // The first free block at or after word `hint`, or nullptr. Owner only.
  BITSLAB_ALWAYS_INLINE void* take_from(size_t word) {
    const size_t index = free.take_first(word);
    if (index == Bitmap<kSlabBitmapWords>::kNoBit) return nullptr;
    hint = static_cast<uint32_t>(index / 64);
    return block_at(index);
  }
  // Blocks handed out, from the bitmap: for when the slab stops being its heap's current one.
  uint32_t count_used() const { return capacity - static_cast<uint32_t>(free.count_free()); }

  // --- identity: written once by create(), read by any thread -------------------------------
  uint32_t magic;
  uint16_t size_class;
  uint16_t block_size;
  uint16_t first_offset;  // where block 0 starts; a multiple of the class's natural alignment
  uint16_t capacity;      // blocks in this slab
  uint32_t div_magic;     // ceil(2^32 / block_size)
  void* owner;            // the heap (core/thread) that allocates from and frees into it
  // --- owner-only state ---------------------------------------------------------------------
  // Blocks handed out and not yet freed back to this bitmap, kept only while the slab is not
  // its heap's current one (so the hot path of the current slab does not count): set by
  // count_used() when it stops being current, decremented by each free after that. On a line
  // of its own, apart from the identity above: every free, by any thread, reads the identity,
  // and the owner's writes here (and to the bitmap) would otherwise take the line from them.
  alignas(kCacheLineBytes) uint32_t used;
  uint32_t hint;   // allocation scans from this bitmap word; words before it may be zero
  State state;
  Slab* prev;      // links on the owner's partial list
  Slab* next;
  Bitmap<kSlabBitmapWords> free;  // 1 = free; bits >= capacity stay 0
};

// Natural alignment of a class's blocks: the largest power of two dividing the block size,
// capped at 1024 (block 0 is placed on such a boundary, see first_offset_of).
constexpr size_t small_class_alignment(unsigned cls) {
  const size_t a = pow2_factor(kSmallClassBytes[cls]);
  return a < kSmallMax ? a : kSmallMax;
}
constexpr size_t small_first_offset(unsigned cls) {
  return align_up(sizeof(Slab), small_class_alignment(cls));
}
constexpr size_t small_capacity(unsigned cls) {
  return (kSlabBytes - small_first_offset(cls)) / kSmallClassBytes[cls];
}
static_assert(small_capacity(0) <= kMaxSlabBlocks, "the bitmap covers the 16 B class");
static_assert(small_first_offset(kSmallClassCount - 1) <= kSlabBytes / 8,
              "the header costs at most an eighth of the largest class's slab");
constexpr bool line_owning_classes_are_line_aligned() {
  for (unsigned cls = 0; cls < kSmallClassCount; ++cls)
    if (small_class_owns_its_lines(cls) && small_first_offset(cls) % kCacheLineBytes != 0) return false;
  return true;
}
static_assert(line_owning_classes_are_line_aligned(), "a block of a line-sized class is alone on its lines");

}  // namespace bitslab
