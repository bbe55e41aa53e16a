// core/pool/pool_set.h — every pool class, and the choice of pool for a request (L3b).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/pool/chunk_pool.h"
#include "core/pool/pool_classes.h"

namespace bitslab {

class PoolSet {
 public:
  // Every pool unlimited, its regions from `source` (nullptr: HeapRange directly). Call before
  // first use (not constexpr: the pools learn their class).
  void init(GranuleSource* source = nullptr);
  // Limits one class to `chunks` chunks (for promotion tests and bounded pools).
  void set_capacity(unsigned cls, size_t chunks) { pools_[cls].configure(cls, chunks, source_, &empties_); }

  // kSmallMax < size <= kPoolMax. The smallest class that fits, promoted to the next larger
  // class (and the next...) while a pool is exhausted. nullptr if every candidate is.
  void* allocate(size_t size);
  // The smallest class that fits, never promoted.
  void* try_allocate(size_t size) { return pools_[pool_class_of(size)].allocate(); }
  // A chunk of any pool: it goes back to the pool it came from, whatever size was asked.
  void deallocate(void* chunk) { pools_[PoolRegion::of(chunk)->size_class].deallocate(chunk); }
  // A chunk of any pool that ChunkPool::check_handed_out passed, back to its region.
  void release_one(void* chunk) { pools_[PoolRegion::of(chunk)->size_class].release_one(chunk); }
  static size_t usable_size(const void* chunk) { return PoolRegion::of(chunk)->slot_bytes; }

  ChunkPool& pool(unsigned cls) { return pools_[cls]; }
  const ChunkPool& pool(unsigned cls) const { return pools_[cls]; }

  // Every pool's purge (ChunkPool::purge). Returns the bytes decommitted.
  size_t purge(uint64_t now_ns, uint64_t delay_ns, bool force, uint64_t empty_delay_ns);

 private:
  ChunkPool pools_[kPoolClassCount];
  GranuleSource* source_ = nullptr;
  // The empty regions the pools may still keep committed, all classes together
  // (kEmptyRegionBudget), and the pools themselves.
  EmptyRegions empties_;
};

}  // namespace bitslab
