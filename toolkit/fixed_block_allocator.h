// toolkit/fixed_block_allocator.h — blocks of one size carved from a PageArena's pages, with a
// free list and O(1) allocate and free (the hpalloc seed's Fixed_Block).
//
//   bitslab::PageArena arena(1 << 20);
//   bitslab::FixedBlockAllocator blocks(arena, 64);
//   void* p = blocks.allocate();   // nullptr (errno = ENOMEM) once the arena is used up
//   blocks.deallocate(p);
//
// Each page starts with a small header, then as many blocks as fit:
//
//   [ magic ^ owner | block count | bitmap, 1 bit per block (1 = free) | block | block | ... ]
//
// Free blocks are linked through their first word (the seed's free list), so allocate and
// deallocate are a pop and a push. The header is what lets deallocate refuse a bad pointer
// before it can corrupt the list: the page must be one of this allocator's (owner check), the
// pointer a block start, and the block's bit clear (set means a double free). Each refusal
// aborts with one line naming the address, as bitslab's malloc does. The overhead is the header
// shared by the page's blocks: 1.0 B per 64 B block on 4 KiB pages (toolkit.fixed_block tests).
//
// Not thread-safe, like the seed: one allocator per thread, or a lock around it. Several
// allocators (of different block sizes) may share one arena.
#pragma once
#include <cstddef>
#include <cstdint>

#include "toolkit/page_arena.h"

namespace bitslab {

class FixedBlockAllocator {
 public:
  // block_size: a multiple of 16 (so a block holds any type, aligned), at least 16, and small
  // enough that a page holds its header and one block; otherwise std::invalid_argument.
  explicit FixedBlockAllocator(PageArena& arena, size_t block_size = 64);
  FixedBlockAllocator(const FixedBlockAllocator&) = delete;
  FixedBlockAllocator& operator=(const FixedBlockAllocator&) = delete;

  // A block of block_size() bytes, 16-byte aligned; nullptr (errno = ENOMEM) when the free list
  // is empty and the arena has no page left.
  void* allocate();
  // p: a block from this allocator, or nullptr (no-op). Anything else aborts naming p.
  void deallocate(void* p);

  size_t block_size() const { return block_bytes_; }
  size_t blocks_per_page() const { return blocks_per_page_; }
  size_t pages_used() const { return pages_; }
  size_t live_blocks() const { return live_; }
  // Bytes of each page spent on the header and the tail that no block fits, per block.
  double overhead_per_block() const;

 private:
  struct PageHeader;
  struct FreeBlock {
    FreeBlock* next;
  };
  bool refill();  // one more page from the arena, its blocks pushed on the free list
  PageHeader* header_of(const void* p) const;
  uint64_t page_magic() const;

  PageArena& arena_;
  size_t block_bytes_;
  size_t blocks_per_page_ = 0;
  size_t header_bytes_ = 0;  // offset of the first block in a page
  FreeBlock* free_ = nullptr;
  size_t pages_ = 0;
  size_t live_ = 0;
};

}  // namespace bitslab
