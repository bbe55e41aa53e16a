// core/pool/chunk_pool.h — the chunks of one pool class (L3b).
//
// Free chunks sit on a lock-free, ABA-safe stack (core/base/tagged_stack.h). When it is empty
// the pool carves a never-used slot from its newest region, and claims a new region (one
// granule) when that one is used up. A pool may be given a capacity in chunks, as the join
// seed's fixed-count pools have; past it, the pool is exhausted and PoolSet promotes the
// request to the next class.
#pragma once
#include <atomic>
#include <cstddef>

#include "core/base/spin_lock.h"
#include "core/base/tagged_stack.h"
#include "core/pool/pool_region.h"

namespace bitslab {

class ChunkPool {
 public:
  static constexpr size_t kUnlimited = 0;

  constexpr ChunkPool() = default;
  void configure(unsigned cls, size_t capacity_chunks = kUnlimited) {
    size_class_ = cls;
    capacity_ = capacity_chunks;
  }

  // A free chunk, or nullptr when the pool is exhausted (capacity reached, or the OS refused
  // a new region: errno = ENOMEM).
  void* allocate();
  // Takes back a chunk of this pool; aborts on a double free or a pointer never handed out.
  void deallocate(void* chunk) {
    check_and_mark_free(chunk);
    push_free(chunk);
  }

  // The two halves of deallocate/allocate, for the thread cache that keeps free chunks of its
  // own: a chunk is marked free when the program frees it, and allocated when it is reused.
  static void check_and_mark_free(void* chunk);
  static void mark_allocated(void* chunk);
  void push_free(void* chunk) { free_.push(chunk); }

  unsigned size_class() const { return size_class_; }
  size_t carved_chunks() const { return carved_.load(std::memory_order_relaxed); }
  size_t region_count() const { return regions_.load(std::memory_order_relaxed); }
  // Chunks handed out and not freed, from the regions' bitmaps (a chunk in a thread's cache
  // is free there). Exact when no thread allocates or frees meanwhile.
  size_t live_chunks() const {
    size_t n = 0;
    for (const PoolRegion* r = current_.load(std::memory_order_acquire); r != nullptr; r = r->next_region)
      n += r->live_slots();
    return n;
  }

  // The lock held while a new region is claimed; taken around fork() by core/thread/fork.cc.
  SpinLock& fork_lock() { return grow_lock_; }

 private:
  void* carve();

  unsigned size_class_ = 0;
  size_t capacity_ = kUnlimited;
  TaggedStack free_;
  std::atomic<PoolRegion*> current_{nullptr};
  std::atomic<size_t> carved_{0};
  std::atomic<size_t> regions_{0};
  SpinLock grow_lock_;
};

}  // namespace bitslab
