// toolkit/size_class_allocator.h — the Custom Memory Allocator seed as a standalone object:
// size classes up to 1024 B, one chunk of blocks per class reserved up front, a bitmap per
// class (1 = free), and malloc for anything larger.
//
//   bitslab::SizeClassAllocator events(4096);   // 4096 blocks of each class
//   void* e = events.allocate(sizeof(Event));   // a block of the class that fits
//   events.deallocate(e);                       // a pointer from malloc goes to free()
//
// The seed's parameters: BLOCK_MAX_MANGED_SIZE is kMaxManagedSize (1024), BLOCK_CHUNK_COUNT is
// blocks_per_class, BLOCK_SIMPLE_RANGE is class_spacing. class_spacing 0 (the default) uses the
// core's class table (core/small/size_classes.h, the one libbitslab.so serves small blocks
// from: 24 classes, 16 B apart up to 128 B, four per power of two to 512 B, then 64 B apart); a spacing of
// 16, 32, 64 ... 1024 gives 1024 / spacing classes that far apart, as the seed does.
//
//   reservation: [ class 0: bitmap | blocks ][ class 1: bitmap | blocks ] ... [ last class ]
//
// The reservation is address space only (mmap, MAP_NORESERVE): a class's pages are committed
// when its blocks are first used, so 1024 blocks of each class (6.3 MiB with the core's table)
// cost nothing until they are used.
//
// Overhead per block: 1 bit of bitmap (0.125 B) and no header; the rest is rounding up to the
// class. Measured over every request size 1..1024 (toolkit.SizeClassAllocator: per-block
// overhead, in the same run as glibc's 8 B header plus rounding, 15.6 B): 7.6 B with
// class_spacing 16 (the seed states 9 B for its settings), 42.6 B with the core's table, whose
// classes above 128 B are up to 25% apart so that a heap fills fewer, fuller slabs.
//
// A class whose blocks are all in use sends its requests to malloc too (counted as fallbacks),
// so allocate only fails when malloc does. Not thread-safe, like the seed: one per thread, or a
// lock around it.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/small/size_classes.h"

namespace bitslab {

class SizeClassAllocator {
 public:
  static constexpr size_t kMaxManagedSize = kSmallMax;  // 1024: larger requests go to malloc
  static constexpr size_t kDefaultBlocksPerClass = 1024;
  static constexpr size_t kMaxBlocksPerClass = size_t{1} << 24;
  static constexpr size_t kMaxClasses = kMaxManagedSize / 16;  // with class_spacing 16

  // blocks_per_class: 1 .. kMaxBlocksPerClass. class_spacing: 0 (the core's table) or a power
  // of two from 16 to 1024. Anything else throws std::invalid_argument; a refused reservation
  // throws std::system_error.
  explicit SizeClassAllocator(size_t blocks_per_class = kDefaultBlocksPerClass,
                              size_t class_spacing = 0);
  // Gives the reservation back. Blocks still allocated from it become invalid; blocks that came
  // from malloc stay valid and must still be given to deallocate (or free).
  ~SizeClassAllocator();
  SizeClassAllocator(const SizeClassAllocator&) = delete;
  SizeClassAllocator& operator=(const SizeClassAllocator&) = delete;

  // A block of at least size bytes, 16-byte aligned (size 0 gets a unique 16 B block). Above
  // kMaxManagedSize, or when the class is full, from malloc. nullptr + ENOMEM only if malloc
  // fails.
  void* allocate(size_t size);
  // p from allocate (or nullptr: no-op). A pointer inside the reservation that is not a live
  // block (a double free, an interior pointer) aborts with one line naming it; any other
  // pointer is passed to free().
  void deallocate(void* p);
  // Whether p lies in this allocator's reservation (and so is not malloc's).
  bool owns(const void* p) const;
  // The class size for a block of ours; malloc_usable_size for malloc's.
  size_t usable_size(const void* p) const;

  unsigned class_count() const { return class_count_; }
  size_t class_size(unsigned cls) const { return class_bytes_[cls]; }
  unsigned class_of(size_t size) const;  // size <= kMaxManagedSize
  size_t blocks_per_class() const { return blocks_per_class_; }
  size_t live_blocks(unsigned cls) const { return blocks_per_class_ - free_count_[cls]; }
  size_t fallbacks() const { return fallbacks_; }          // requests sent to malloc
  size_t reserved_bytes() const { return reserved_bytes_; }
  size_t bitmap_bytes() const { return bitmap_bytes_per_class_ * class_count_; }

 private:
  uint64_t* bitmap(unsigned cls) const {
    return reinterpret_cast<uint64_t*>(base_ + region_begin_[cls]);
  }
  char* blocks(unsigned cls) const { return base_ + region_begin_[cls] + bitmap_bytes_per_class_; }
  unsigned class_of_address(uintptr_t offset) const;
  void* take_block(unsigned cls);

  char* base_ = nullptr;
  size_t blocks_per_class_;
  size_t class_spacing_;
  unsigned class_count_;
  size_t bitmap_bytes_per_class_;
  size_t reserved_bytes_ = 0;
  size_t class_bytes_[kMaxClasses];
  size_t region_begin_[kMaxClasses + 1];  // offsets from base_; [class_count_] is the end
  size_t free_count_[kMaxClasses];
  size_t hint_word_[kMaxClasses];         // where the next search for a free bit starts
  size_t fallbacks_ = 0;
};

}  // namespace bitslab
