// core/base/bitmap.h — a fixed-size bitmap where 1 = free (L0): a slab's blocks (core/small)
// and a granule's pages (core/page/system_page_allocator.cc); its two basic operations also
// serve the toolkit's run-time-sized bitmaps (toolkit/fixed_block_allocator.cc,
// toolkit/size_class_allocator.cc).
//
// Bits past the number of blocks stay 0 (never free), so "find a free block" is a scan for a
// non-zero word and one count-trailing-zeros, and a free of a bit that is already 1 is a double
// free. Not thread-safe: each user guards its own (a slab's owner thread, the page allocator's lock).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/base/bits.h"

namespace bitslab {

// The two operations on a bitmap of any length (word_count words), for bitmaps whose size is
// only known at run time (the toolkit's per-page and per-class bitmaps); Bitmap below is the
// fixed-size one the core uses.
// Marks bits [0, count) free and the rest of the word_count words not free.
// Three plain fill loops, no branch per word (a 4096-bit bitmap of a 16-block slab is one
// store of its own and 63 of zeros, which the compiler turns into a memset).
inline void init_free_bits(uint64_t* words, size_t word_count, size_t count) {
  size_t w = 0;
  for (; w < count / 64; ++w) words[w] = ~uint64_t{0};
  if (count % 64 != 0) words[w++] = (uint64_t{1} << (count % 64)) - 1;
  for (; w < word_count; ++w) words[w] = 0;
}
// Sets bit i; returns false (and changes nothing) if it was already set: a double free.
inline bool set_free_bit(uint64_t* words, size_t i) {
  const uint64_t bit = uint64_t{1} << (i % 64);
  if (words[i / 64] & bit) return false;
  words[i / 64] |= bit;
  return true;
}

template <size_t kWords>
struct Bitmap {
  static constexpr size_t kNoBit = ~size_t{0};
  uint64_t words[kWords];

  // Marks bits [0, count) free and the rest not free.
  void init_free(size_t count) { init_free_bits(words, kWords, count); }
  bool is_free(size_t i) const { return (words[i / 64] >> (i % 64)) & 1; }
  // Sets bit i; returns false (and changes nothing) if it was already set.
  bool set_free(size_t i) { return set_free_bit(words, i); }
  // Index of the first free bit in words [from_word, end_word), cleared; kNoBit if none. A
  // user whose bits past some word are all 0 passes that word as end_word, and the scan stops
  // there.
  size_t take_first(size_t from_word, size_t end_word = kWords) {
    for (size_t w = from_word; w < end_word; ++w) {
      if (words[w] != 0) {
        const unsigned b = ctz64(words[w]);
        words[w] &= words[w] - 1;
        return w * 64 + b;
      }
    }
    return kNoBit;
  }
  // First word at or after `from` with a free bit; kWords if none.
  size_t first_nonzero_word(size_t from) const {
    while (from < kWords && words[from] == 0) ++from;
    return from;
  }
  bool any_free() const { return first_nonzero_word(0) < kWords; }
  size_t count_free(size_t end_word = kWords) const {
    size_t n = 0;
    for (size_t w = 0; w < end_word; ++w) n += popcount64(words[w]);
    return n;
  }
};

}  // namespace bitslab
