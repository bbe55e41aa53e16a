#include "core/pool/chunk_pool.h"

#include <cerrno>

#include "core/base/fatal.h"
#include "core/os/heap_range.h"

namespace bitslab {

void ChunkPool::check_and_mark_free(void* chunk) {
  PoolRegion* region = PoolRegion::of(chunk);
  if (!region->live())
    fatal("free of a pointer that bitslab never handed out:", chunk);
  const uint32_t slot = region->slot_index(chunk);
  if (slot == PoolRegion::kNoSlot) fatal("free of a pointer that bitslab never handed out:", chunk);
  if (!region->mark_free(slot)) fatal("double free of", chunk);
}

void ChunkPool::mark_allocated(void* chunk) {
  PoolRegion* region = PoolRegion::of(chunk);
  if constexpr (kHardened)  // the chunk came through links a heap overflow could have rewritten
    if (HeapRange::kind_of(chunk) != GranuleKind::kPool || !region->live())
      fatal("heap corruption: a pool free list leads outside the pool:", chunk);
  const uint32_t slot = region->slot_index(chunk);
  if (slot == PoolRegion::kNoSlot || !region->mark_allocated(slot))
    fatal("heap corruption: a chunk on a free list was in use:", chunk);
}

void* ChunkPool::allocate() {
  // The hardened build checks each link it follows (encoded, so an overwrite decodes to junk).
  auto valid_link = []([[maybe_unused]] void* chunk, [[maybe_unused]] void* next) {
    if constexpr (kHardened)
      if (next != nullptr && (HeapRange::kind_of(next) != GranuleKind::kPool || !PoolRegion::of(next)->live()))
        fatal("heap corruption: the free-list link in this chunk was overwritten:", chunk);
  };
  if (void* chunk = free_.pop(valid_link)) {
    mark_allocated(chunk);
    return chunk;
  }
  return carve();
}

void* ChunkPool::carve() {
  // Reserve a chunk against the capacity first, so racing threads cannot overshoot it.
  size_t carved = carved_.load(std::memory_order_relaxed);
  do {
    if (capacity_ != kUnlimited && carved >= capacity_) return nullptr;
  } while (!carved_.compare_exchange_weak(carved, carved + 1, std::memory_order_relaxed));

  for (;;) {
    PoolRegion* region = current_.load(std::memory_order_acquire);
    if (region != nullptr) {
      uint32_t slot = region->carved.load(std::memory_order_relaxed);
      while (slot < region->slot_count) {
        if (region->carved.compare_exchange_weak(slot, slot + 1, std::memory_order_acq_rel))
          return region->slot_at(slot);  // never freed yet: its bit is already 0 (allocated)
      }
    }
    SpinGuard guard(grow_lock_);
    if (current_.load(std::memory_order_relaxed) != region) continue;  // another thread grew it
    void* granule = HeapRange::claim(1, GranuleKind::kPool);
    if (granule == nullptr) {
      carved_.fetch_sub(1, std::memory_order_relaxed);
      errno = ENOMEM;
      return nullptr;
    }
    PoolRegion* fresh = PoolRegion::create(granule, size_class_);
    fresh->next_region = region;
    regions_.fetch_add(1, std::memory_order_relaxed);
    current_.store(fresh, std::memory_order_release);
  }
}

}  // namespace bitslab
