// core/backend/page_heap.h — the granules no kind holds, kept for any kind to reuse (L4).
//
// Every kind of memory gets its granules here and gives them back here: slab granules when all
// their slab pages are free, pool regions when all their chunks are, the metadata of thread
// heaps. A granule given back is decommitted at once (its memory goes back to the kernel; only
// the page holding its free-list link is touched again) and marked free in HeapRange's map, so
// a pointer into it is no block of ours. The next request of any kind reuses it, newest first;
// one that stays free through the purge delay is unmapped, and the address space goes back too.
//
// The free list runs through the free granules themselves (a granule stays mapped while it is
// on the list). One spin lock guards it; no system call runs under it.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/base/spin_lock.h"
#include "core/os/heap_range.h"

namespace bitslab {

class PageHeap final : public GranuleSource {
 public:
  constexpr PageHeap() = default;

  // `count` zero-filled granules: a free run of exactly that length if one is kept (a hit),
  // else fresh ones from HeapRange. nullptr + ENOMEM when the kernel refuses.
  void* take(size_t count, GranuleKind first, GranuleKind rest) override;
  using GranuleSource::take;
  void give(void* start, size_t count) override;

  // Unmaps the runs free for at least delay_ns (every run if force). Returns the bytes unmapped.
  size_t purge(uint64_t now_ns, uint64_t delay_ns, bool force);

  struct Counts {
    size_t takes;              // granule runs asked for
    size_t hits;               // of them, served from the free list
    size_t free_granules;      // kept now, mapped and decommitted
    size_t decommitted_bytes;  // decommitted when given back, in all
  };
  Counts counts() const;

  // Whether a granule was taken since the last call (and clears it): the footprint is growing
  // (a kept granule is decommitted: it fills in as it is used), and the backend's purge then
  // gives back what other kinds hold free, at once.
  bool grew() { return grew_.exchange(false, std::memory_order_relaxed); }

  SpinLock& fork_lock() { return lock_; }

 private:
  struct FreeRun {
    static constexpr uint32_t kMagic = 0xf4eeb10c;
    uint32_t magic;
    uint32_t count;     // granules in the run
    uint64_t freed_ns;  // when it was given back (coarse clock)
    FreeRun* next;
  };

  SpinLock lock_;
  FreeRun* free_ = nullptr;  // newest first
  size_t free_granules_ = 0;
  size_t takes_ = 0;
  size_t hits_ = 0;
  size_t decommitted_ = 0;
  std::atomic<bool> grew_{false};
};

}  // namespace bitslab
