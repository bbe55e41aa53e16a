#include "toolkit/size_class_allocator.h"

#include <malloc.h>

#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <system_error>

#include "core/base/bitmap.h"
#include "core/base/bits.h"
#include "core/base/fatal.h"
#include "core/os/os.h"

namespace bitslab {

SizeClassAllocator::SizeClassAllocator(size_t blocks_per_class, size_t class_spacing)
    : blocks_per_class_(blocks_per_class), class_spacing_(class_spacing) {
  if (blocks_per_class == 0 || blocks_per_class > kMaxBlocksPerClass)
    throw std::invalid_argument("bitslab::SizeClassAllocator: blocks_per_class must be 1 .. 2^24");
  if (class_spacing != 0 && (!is_pow2(class_spacing) || class_spacing < 16 || class_spacing > kMaxManagedSize))
    throw std::invalid_argument(
        "bitslab::SizeClassAllocator: class_spacing must be 0 or a power of two from 16 to 1024");
  class_count_ = class_spacing == 0 ? kSmallClassCount : static_cast<unsigned>(kMaxManagedSize / class_spacing);
  for (unsigned cls = 0; cls < class_count_; ++cls)
    class_bytes_[cls] = class_spacing == 0 ? kSmallClassBytes[cls] : (cls + 1) * class_spacing;
  // Each class's region starts on a cache line: its bitmap, then its blocks.
  bitmap_bytes_per_class_ = align_up((blocks_per_class + 63) / 64 * 8, 64);
  size_t offset = 0;
  for (unsigned cls = 0; cls < class_count_; ++cls) {
    region_begin_[cls] = offset;
    offset += align_up(bitmap_bytes_per_class_ + blocks_per_class * class_size(cls), 64);
  }
  region_begin_[class_count_] = offset;
  reserved_bytes_ = align_up(offset, os::page_size());
  base_ = static_cast<char*>(os::reserve_aligned(reserved_bytes_, os::page_size()));
  if (base_ == nullptr)
    throw std::system_error(errno ? errno : ENOMEM, std::generic_category(),
                            "bitslab::SizeClassAllocator: mmap");
  for (unsigned cls = 0; cls < class_count_; ++cls) {
    init_free_bits(bitmap(cls), (blocks_per_class + 63) / 64, blocks_per_class);  // 1 = free
    free_count_[cls] = blocks_per_class;
    hint_word_[cls] = 0;
  }
}

SizeClassAllocator::~SizeClassAllocator() { os::release(base_, reserved_bytes_); }

unsigned SizeClassAllocator::class_of(size_t size) const {
  if (class_spacing_ == 0) return small_class_of(size);  // one table load
  return size == 0 ? 0 : static_cast<unsigned>((size - 1) >> log2_floor(class_spacing_));
}

void* SizeClassAllocator::take_block(unsigned cls) {
  // Next fit: start at the word where the last block was found, so a run of allocations costs
  // one word test each, and wrap around once. free_count_ says there is a free bit somewhere.
  uint64_t* bits = bitmap(cls);
  const size_t words = (blocks_per_class_ + 63) / 64;
  size_t w = hint_word_[cls];
  while (bits[w] == 0) w = w + 1 == words ? 0 : w + 1;
  const unsigned bit = ctz64(bits[w]);
  bits[w] &= bits[w] - 1;
  hint_word_[cls] = w;
  --free_count_[cls];
  return blocks(cls) + (w * 64 + bit) * class_size(cls);
}

void* SizeClassAllocator::allocate(size_t size) {
  if (size <= kMaxManagedSize) {
    const unsigned cls = class_of(size);
    if (free_count_[cls] != 0) return take_block(cls);
  }
  ++fallbacks_;  // too big for a class, or its blocks are all in use
  return std::malloc(size);  // nullptr + ENOMEM if malloc fails
}

bool SizeClassAllocator::owns(const void* p) const {
  return reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(base_) < reserved_bytes_;
}

unsigned SizeClassAllocator::class_of_address(uintptr_t offset) const {
  unsigned lo = 0, hi = class_count_;  // region_begin_[lo] <= offset < region_begin_[hi]
  while (hi - lo > 1) {
    const unsigned mid = (lo + hi) / 2;
    (offset >= region_begin_[mid] ? lo : hi) = mid;
  }
  return lo;
}

void SizeClassAllocator::deallocate(void* p) {
  if (p == nullptr) return;
  if (!owns(p)) return std::free(p);  // a fallback block from malloc
  const uintptr_t offset = reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(base_);
  const unsigned cls = class_of_address(offset);
  const size_t in_blocks = offset - region_begin_[cls] - bitmap_bytes_per_class_;
  // An offset inside the bitmap wraps to a huge in_blocks and fails the range check.
  if (in_blocks >= blocks_per_class_ * class_size(cls) || in_blocks % class_size(cls) != 0)
    fatal("SizeClassAllocator: pointer not at the start of a block:", p);
  const size_t index = in_blocks / class_size(cls);
  if (!set_free_bit(bitmap(cls), index)) fatal("SizeClassAllocator: double free of", p);
  ++free_count_[cls];
}

size_t SizeClassAllocator::usable_size(const void* p) const {
  if (p == nullptr) return 0;
  if (!owns(p)) return malloc_usable_size(const_cast<void*>(p));
  const uintptr_t offset = reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(base_);
  return class_size(class_of_address(offset));
}

}  // namespace bitslab
