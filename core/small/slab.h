// core/small/slab.h — a slab: one 64 KiB page of blocks of one size class (L3a).
//
//   granule (4 MiB):  [ header page           | slab page 1 | slab page 2 | ... slab page 63 ]
//                       slot 0: granule header   [ block 0 ][ block 1 ] ... [ tail ]
//                       slot i: Slab header of page i (1 KiB: identity, bitmap 1 = free,
//                               remote words 1 = freed by another thread, not yet applied)
//
// Blocks fill the page from its first byte; the header lives apart, in the page's side room
// (core/base/side_room.h), found from any block address by arithmetic alone
// (Slab::of). Headers in the pages themselves would all lie kSlabBytes apart, which the CPU's
// caches index alike: with a few hundred slabs in use, every free missed the L2 cache twice
// (the owner and the bitmap word; cachegrind, bench_server with 20 MB live).
//
// The header's identity fields (class, geometry, owner) are written once when the slab is
// created and then only read, by any thread; beside them, the frontier (blocks handed out at
// least once), which the owner writes until the slab has been carved once and any freeing
// thread reads. The bitmap, used count, list links and state belong to the owning thread's
// heap (core/thread) and are touched by no other thread: a block freed by another thread gets
// its bit in the remote words, on lines of their own, which the owner ORs into the bitmap
// (core/small/remote_frees.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/base/bitmap.h"
#include "core/base/bits.h"
#include "core/base/compiler.h"
#include "core/base/config.h"
#include "core/base/hardening.h"
#include "core/base/side_room.h"
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
  // Remote-free words that fit in the header's slot, after everything else (a static_assert
  // below checks the sum): enough for every class but 16 B (remote_words_in_tail).
  static constexpr size_t kRemoteWordsInHeader = 46;

  // Builds a slab of class `cls` over `page` (a kSlabBytes page of a SystemPageAllocator of
  // kSlabBytes pages) for `owner`, whose cache mark is `owner_mark`; the header goes into the
  // page's side room.
  static Slab* create(void* page, unsigned cls, void* owner, uint64_t owner_mark);
  // Marks the header dead before the page is given back: its frontier 0, so that a free into
  // the page finds no block (handed_out_index), and only its owner, now none, may cache.
  void retire() {
    magic = 0;
    owner = nullptr;
    owner_only = ~uint64_t{0};
    __atomic_store_n(&frontier, uint16_t{0}, __ATOMIC_RELAXED);
  }

  // The header of the slab whose page holds p: shifts, masks, an or; no load.
  BITSLAB_ALWAYS_INLINE static Slab* of(const void* p) {
    return static_cast<Slab*>(side_room<kSlabBytes>(p));
  }
  // The page the blocks are in.
  void* page() const { return base; }
  // Whether `heap`'s block cache may take a block of this slab that its thread frees: its
  // owner's always; any heap's if the class is one a freeing thread keeps. One test for both,
  // so that a free does not branch on who owns the block (a quarter of mstress's frees are of
  // another thread's block, at random: the owner test missed on 0.44 of all frees):
  // xor, and, on the identity line. Only for a slab whose handed_out_index passed (live).
  BITSLAB_ALWAYS_INLINE bool cacheable_by(const void* heap) const {
    return ((reinterpret_cast<uintptr_t>(owner) ^ reinterpret_cast<uintptr_t>(heap)) & owner_only) == 0;
  }
  bool live() const {
    return __atomic_load_n(&magic, __ATOMIC_ACQUIRE) == header_tag(this, kLiveMagic);
  }

  // The index of the block that starts at p (an address in this slab's page), or kNoBlock if p
  // is not the start of one of its blocks (an interior pointer, a pointer into the tail).
  static constexpr uint32_t kNoBlock = ~uint32_t{0};
  BITSLAB_ALWAYS_INLINE uint32_t block_index(const void* p) const { return index_below(p, capacity); }
  // The same, and kNoBlock too if the slab has never handed the block out (at or past the
  // frontier). Any thread: a block the owner handed out before the program passed it to the
  // freeing thread is below the frontier that thread reads, and the frontier only grows.
  BITSLAB_ALWAYS_INLINE uint32_t handed_out_index(const void* p) const {
    return index_below(p, __atomic_load_n(&frontier, __ATOMIC_RELAXED));
  }
  // The owner hands out block `index`: the frontier moves past it the first time (a compare on
  // the bitmap's allocation paths; a store only while the slab is carved for the first time).
  BITSLAB_ALWAYS_INLINE void note_handed_out(uint32_t index) {
    if (BITSLAB_UNLIKELY(index >= __atomic_load_n(&frontier, __ATOMIC_RELAXED)))
      __atomic_store_n(&frontier, static_cast<uint16_t>(index + 1), __ATOMIC_RELAXED);
  }
  void* block_at(size_t index) { return base + index * block_size; }

  // The first free block at or after word `hint`, or nullptr. Owner only. Its first word is
  // wiped: every free leaves a mark there (core/thread/thread_heap.h).
  BITSLAB_ALWAYS_INLINE void* take_from(size_t word) {
    const size_t index = free.take_first(word, bitmap_words());
    if (index == Bitmap<kSlabBitmapWords>::kNoBit) return nullptr;
    hint = static_cast<uint32_t>(index / 64);
    note_handed_out(static_cast<uint32_t>(index));
    void* p = block_at(index);
    *static_cast<uint64_t*>(p) = 0;
    return p;
  }
  // Whether the canary in front of remote words kept past the last block (remote_words_in_tail)
  // is whole; true for words in the header. Keyed with the page's address, so that no slab's
  // copy passes in another.
  bool remote_tail_intact() const {
    if (remote_words == remote_in_header) return true;
    return remote_words[-2] == remote_tail_canary() && remote_words[-1] == remote_tail_canary();
  }
  // The value create() writes into both words of that canary.
  uint64_t remote_tail_canary() const { return 0x7a11ca9a4d5e3b1f ^ reinterpret_cast<uintptr_t>(base); }
  // Blocks handed out, from the bitmap: for when the slab stops being its heap's current one.
  uint32_t count_used() const { return capacity - static_cast<uint32_t>(free.count_free(bitmap_words())); }
  // The bitmap words that hold a block's bit: the rest are 0, and scans stop before them (a
  // 1024 B slab has 64 blocks, one word of the 64).
  uint32_t bitmap_words() const { return (uint32_t{capacity} + 63) / 64; }
  // Whether no block is handed out. Stops at the first word with a block out: cheap on a slab
  // in use, which is what flush asks about most.
  bool all_free() const {
    const uint32_t full_words = capacity / 64;
    for (uint32_t w = 0; w < full_words; ++w)
      if (free.words[w] != ~uint64_t{0}) return false;
    const uint32_t rest = capacity % 64;
    return rest == 0 || free.words[full_words] == (uint64_t{1} << rest) - 1;
  }

  // --- identity: written once by create(), read by any thread -------------------------------
  uint32_t magic;
  uint16_t size_class;
  uint16_t block_size;
  uint16_t capacity;      // blocks in this slab
  // Blocks [0, frontier) have been handed out at least once since create(): the owner's, on
  // this line so that its free, which reads the identity anyway, checks "never handed out"
  // without the bitmap's line. Exact because the allocation paths take a word's lowest free bit
  // and a fresh word only when every word before it is used up, so fresh blocks go out in
  // address order. Written until the slab has been carved once, then only read. The hardened
  // build's pick is random, which breaks that order: its frontier is the slab's end, and the
  // bitmap, which every free of that build reaches, decides.
  uint16_t frontier;
  uint32_t div_magic;     // ceil(2^32 / block_size)
  char* base;             // the page: block i is at base + i * block_size
  void* owner;            // the heap (core/thread) that allocates from and frees into it
  // The owner's cache mark (core/thread/thread_heap.h), copied: a free by another thread marks
  // the block with it, reading it here, on the line it reads anyway, not through owner.
  uint64_t owner_mark;
  // Where the remote-free words are (core/small/remote_frees.h): remote_in_header below, or,
  // for the 16 B class, whose 64 words do not fit the header's slot, the page's last bytes.
  uint64_t* remote_words;
  // 0 if any thread's heap may cache a freed block of this slab (its class has cache lines of
  // its own: small_class_kept_by_freeing_thread), all ones if only its owner's may (a smaller
  // class, and a retired slab). cacheable_by() folds it into the owner test.
  uint64_t owner_only;
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

  // --- frees by other threads (core/small/remote_frees.h): any thread, atomically --------------
  // A line of their own: freeing threads write here, and neither the identity nor the owner's
  // state above should move with them.
  alignas(kCacheLineBytes) uint64_t remote_summary;  // bit w: remote word w may hold bits
  Slab* remote_next;                                 // on the owner's list of slabs with remote frees
  uint64_t remote_in_header[kRemoteWordsInHeader];   // bit i: block i freed, not yet applied

 private:
  // The index of the block that starts at p if it is below `limit`, else kNoBlock.
  BITSLAB_ALWAYS_INLINE uint32_t index_below(const void* p, uint32_t limit) const {
    const uint32_t offset = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p) & (kSlabBytes - 1));
    // One multiply gives both the quotient and the divisibility test (Lemire, "Faster
    // remainder by direct computation"): with c = ceil(2^32 / d) and offset < 2^16, the high
    // half of offset * c is offset / d, and offset is a multiple of d iff the low 32 bits are
    // below c.
    const uint64_t product = uint64_t{offset} * div_magic;
    const uint32_t index = static_cast<uint32_t>(product >> 32);
    if (BITSLAB_UNLIKELY(index >= limit || static_cast<uint32_t>(product) >= div_magic)) return kNoBlock;
    return index;
  }
};

// The header lives in its page's side room; blocks start at the page's first byte, so each is
// aligned to the largest power of two dividing its size, and a block of a line-sized class is
// alone on its cache lines.
static_assert(sizeof(Slab) <= side_room_bytes(kSlabBytes), "the header fits its slot");
// A pointer into the granule's header page finds slot 0, the granule's header, whose bytes
// there are zero (side_room.h): a frontier of 0, no block. So does one into a page never made a
// slab (its slot zero) or given back (retire()).
static_assert(offsetof(Slab, frontier) >= kSlotZeroBegin &&
                  offsetof(Slab, frontier) + sizeof(uint16_t) <= kSlotZeroEnd,
              "the frontier lies in slot 0's zero bytes");
static_assert(side_room_bytes(kSlabBytes) % kCacheLineBytes == 0, "headers side by side share no cache line");
// Whether a slab of class cls keeps its remote-free words at its page's end, the header's slot
// having no room for them: the 16 B class only, whose 64 words and a 16 B canary in front of
// them take 33 blocks' room (0.8%). The canary is there because an overflow out of the last
// block would otherwise write straight into the words, which the owner would apply as frees.
constexpr bool remote_words_in_tail(unsigned cls) {
  return (kSlabBytes / kSmallClassBytes[cls] + 63) / 64 > Slab::kRemoteWordsInHeader;
}
constexpr size_t kRemoteTailCanaryBytes = 2 * sizeof(uint64_t);
constexpr size_t kRemoteTailBytes = kRemoteTailCanaryBytes + kSlabBitmapWords * sizeof(uint64_t);
constexpr size_t small_capacity(unsigned cls) {
  return (kSlabBytes - (remote_words_in_tail(cls) ? kRemoteTailBytes : 0)) / kSmallClassBytes[cls];
}
// The alignment every block of a class has: the largest power of two dividing its size, capped
// at 1024 (aligned_alloc picks a class by it).
constexpr size_t small_class_alignment(unsigned cls) {
  const size_t a = pow2_factor(kSmallClassBytes[cls]);
  return a < kSmallMax ? a : kSmallMax;
}
static_assert(small_capacity(0) <= kMaxSlabBlocks, "the bitmap covers the 16 B class");
static_assert((small_capacity(0) + 63) / 64 * sizeof(uint64_t) <= kRemoteTailBytes - kRemoteTailCanaryBytes,
              "the tail holds its words");

}  // namespace bitslab
