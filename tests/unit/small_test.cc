// Layer 3a: size classes, the bitmap, and slabs.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/base/bitmap.h"
#include "core/small/size_classes.h"
#include "core/small/slab.h"

using namespace bitslab;

TEST_CASE("size classes: every request 0..1024 gets the smallest class that fits") {
  for (size_t size = 0; size <= kSmallMax; ++size) {
    const unsigned cls = small_class_of(size);
    REQUIRE(cls < kSmallClassCount);
    CHECK(kSmallClassBytes[cls] >= size);
    if (cls > 0) CHECK(kSmallClassBytes[cls - 1] < size);
  }
}

TEST_CASE("size classes: 16 B apart up to 128 B, at most 25% apart above, all 16-aligned") {
  for (unsigned c = 0; c < kSmallClassCount; ++c) {
    CHECK(kSmallClassBytes[c] % kMinAlign == 0);
    if (c == 0) continue;
    const size_t step = kSmallClassBytes[c] - kSmallClassBytes[c - 1];
    if (kSmallClassBytes[c] <= 128) CHECK(step == 16);
    else CHECK(step * 4 <= kSmallClassBytes[c - 1]);
  }
}

TEST_CASE("size classes: measured internal waste") {
  // Waste = unused bytes of the block / block size. Up to 128 B the 16 B spacing bounds the
  // waste in bytes (at most 15); above it the four-per-power-of-two spacing bounds it in percent.
  double waste_sum = 0, worst_above_128 = 0;
  size_t worst_bytes_to_128 = 0;
  for (size_t size = 1; size <= kSmallMax; ++size) {
    const size_t block = kSmallClassBytes[small_class_of(size)];
    const double waste = double(block - size) / double(block);
    waste_sum += waste;
    if (size > 128 && waste > worst_above_128) worst_above_128 = waste;
    if (size <= 128 && block - size > worst_bytes_to_128) worst_bytes_to_128 = block - size;
  }
  const double mean = waste_sum / kSmallMax;
  MESSAGE("internal waste over request sizes 1..1024: mean " << mean * 100 << "%, worst above 128 B "
                                                             << worst_above_128 * 100 << "%");
  CHECK(mean < 0.09);
  CHECK(worst_above_128 < 0.20);  // 257 B in a 320 B block: 19.7%
  CHECK(worst_bytes_to_128 == 15);
}

TEST_CASE("bitmap: 1 = free, padding bits stay 0, a second free of a bit is refused") {
  Bitmap<4> bm;
  bm.init_free(130);
  CHECK(bm.count_free() == 130);
  CHECK(bm.words[2] == 0b11);
  CHECK(bm.words[3] == 0);
  for (size_t i = 0; i < 130; ++i) CHECK(bm.take_first(0) == i);
  CHECK(bm.take_first(0) == Bitmap<4>::kNoBit);
  CHECK(bm.set_free(77));
  CHECK_FALSE(bm.set_free(77));
  CHECK(bm.is_free(77));
  CHECK(bm.first_nonzero_word(0) == 1);
  CHECK(bm.take_first(2) == Bitmap<4>::kNoBit);  // the scan starts at the word given
  CHECK(bm.take_first(0) == 77);
}

namespace {
// A granule-shaped region from libc, for layer-3 tests that do not need the page layer: its
// page `index` (not 0, the header page) is a slab page, its header in the header page's slot.
struct Granule {
  char* bytes = static_cast<char*>(aligned_alloc(kGranuleBytes, kGranuleBytes));
  ~Granule() { free(bytes); }
  void* page(size_t index) const { return bytes + index * kSlabBytes; }
};
}  // namespace

TEST_CASE("slab geometry: blocks fill the page, and the headers of a granule lie side by side") {
  for (unsigned cls = 0; cls < kSmallClassCount; ++cls) {
    const size_t bs = kSmallClassBytes[cls];
    // The 16 B class's remote words take the page's end; every other class's fit its header.
    const size_t room = kSlabBytes - (remote_words_in_tail(cls) ? kRemoteTailBytes : 0);
    CHECK(remote_words_in_tail(cls) == (bs == 16));
    CHECK(small_capacity(cls) * bs <= room);
    CHECK((small_capacity(cls) + 1) * bs > room);  // no room left for one more
    CHECK((small_capacity(cls) + 63) / 64 <=
          (remote_words_in_tail(cls) ? kSlabBitmapWords : Slab::kRemoteWordsInHeader));
    CHECK(small_capacity(cls) <= kMaxSlabBlocks);
    CHECK(kSlabBytes % small_class_alignment(cls) == 0);  // block 0 at the page start: aligned
  }
  Granule g;
  const size_t slot = side_room_bytes(kSlabBytes);
  CHECK(slot == 1024);
  for (size_t i = 1; i < kGranuleBytes / kSlabBytes; ++i) {
    // Every address of page i, first and last byte included, finds slot i of the header page.
    CHECK(reinterpret_cast<char*>(Slab::of(g.page(i))) == g.bytes + i * slot);
    CHECK(reinterpret_cast<char*>(Slab::of(static_cast<char*>(g.page(i)) + kSlabBytes - 1)) ==
          g.bytes + i * slot);
  }
}

TEST_CASE("slab: block_index is exact for every offset of every class") {
  Granule g;
  void* page = g.page(5);
  for (unsigned cls = 0; cls < kSmallClassCount; ++cls) {
    Slab* s = Slab::create(page, cls, nullptr, 1);
    const char* base = static_cast<char*>(page);
    size_t wrong = 0;
    for (size_t off = 0; off < kSlabBytes; ++off) {
      const uint32_t got = s->block_index(base + off);
      const bool is_start = off % s->block_size == 0 && off / s->block_size < s->capacity;
      const uint32_t want = is_start ? static_cast<uint32_t>(off / s->block_size) : Slab::kNoBlock;
      if (got != want) ++wrong;
    }
    CHECK_MESSAGE(wrong == 0, "class " << cls);
  }
}

TEST_CASE("slab: take_from hands out every block once, in address order") {
  Granule g;
  void* page = g.page(63);
  Slab* s = Slab::create(page, small_class_of(48), nullptr, 1);
  CHECK(s->live());
  CHECK(Slab::of(static_cast<char*>(page) + 5000) == s);
  CHECK(s->page() == page);
  CHECK(s->block_at(0) == page);
  std::vector<void*> blocks;
  while (void* b = s->take_from(s->hint)) blocks.push_back(b);
  CHECK(blocks.size() == s->capacity);
  CHECK(s->count_used() == s->capacity);
  for (size_t i = 0; i < blocks.size(); ++i) CHECK(s->block_index(blocks[i]) == i);
  CHECK_FALSE(s->all_free());
  for (size_t i = 0; i + 1 < blocks.size(); ++i) CHECK(s->free.set_free(i));
  CHECK_FALSE(s->all_free());  // the last block, in the last, partial word, is still out
  CHECK(s->free.set_free(blocks.size() - 1));
  CHECK(s->all_free());
  s->retire();
  CHECK_FALSE(s->live());
}

// What free relies on before it looks at a slab's owner: a page with no live slab has no
// block (a frontier of 0), and a slab's blocks go into the freeing thread's cache only if it is
// the owner's or its class is kept by freeing threads (Slab::cacheable_by).
TEST_CASE("slab: a page with no live slab has no block, and who may cache a slab's blocks") {
  Granule g;
  memset(g.bytes, 0, kSlabBytes);  // the header page, as a granule comes: zero-filled
  char* never = static_cast<char*>(g.page(7));
  CHECK(Slab::of(never)->handed_out_index(never) == Slab::kNoBlock);

  int owner = 0, other = 0;
  const unsigned kept = small_class_of(128), shared = small_class_of(48);
  REQUIRE(small_class_kept_by_freeing_thread(kept));
  REQUIRE_FALSE(small_class_kept_by_freeing_thread(shared));
  for (unsigned cls : {kept, shared}) {
    void* page = g.page(5);
    Slab* s = Slab::create(page, cls, &owner, 1);
    s->note_handed_out(0);  // block 0 handed out
    CHECK(s->handed_out_index(page) == 0);
    CHECK(s->cacheable_by(&owner));
    CHECK(s->cacheable_by(&other) == (cls == kept));
    s->retire();  // given back: no block, and nobody's cache takes one
    CHECK(s->handed_out_index(page) == Slab::kNoBlock);
    CHECK_FALSE(s->cacheable_by(&owner));
    CHECK_FALSE(s->cacheable_by(&other));
  }
}

TEST_CASE("popcount64 counts bits") {
  CHECK(bitslab::popcount64(0) == 0);
  CHECK(bitslab::popcount64(~uint64_t{0}) == 64);
  CHECK(bitslab::popcount64(0x8000000000000001ull) == 2);
  for (unsigned i = 0; i < 64; ++i) CHECK(bitslab::popcount64((uint64_t{1} << i) - 1) == i);
}
