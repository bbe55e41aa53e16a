// core/pool/chunk_pool.h — the chunks of one pool class (L3b).
//
// Regions (one granule each, core/pool/pool_region.h) hand out their available slots lowest
// first; the pool keeps a list of the regions that have some, and takes a new region from its
// GranuleSource when none does. Every change to a region's available slots happens under the
// pool's spin lock, which a thread takes only when its cache of chunks (core/thread) is empty
// or full, and then moves several chunks at once. A region whose slots are all available again
// is kept as it is, committed, on the pool's list of empty regions, while the pool set's budget
// of them allows: a program that frees a batch of chunks and allocates it again reuses them
// without a page fault. The purge gives empty regions back to the source once idle through the
// delay, or at once when the footprint grows elsewhere; past the budget one goes back at once.
// The pages of chunks that stay available through the delay are decommitted. A pool may be
// given a capacity in chunks, as the join seed's fixed-count pools have; past it the pool is
// exhausted and PoolSet promotes the request to the next class.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/base/compiler.h"
#include "core/base/fatal.h"
#include "core/base/spin_lock.h"
#include "core/os/heap_range.h"
#include "core/pool/pool_region.h"

namespace bitslab {

class ChunkPool;
// What the pools of a set share about their empty regions: how many more of them they may keep
// committed, and each other, so that a pool that takes a new region makes the others give theirs
// back at once: a program whose size mix moves from one class to another then reuses the first
// class's memory instead of holding it on top of the second's (sqlite3: peak RSS +1.7 MiB).
struct EmptyRegions {
  std::atomic<int> budget{0};
  ChunkPool* pools = nullptr;
  unsigned count = 0;
};

class ChunkPool {
 public:
  static constexpr size_t kUnlimited = 0;

  constexpr ChunkPool() = default;
  // source nullptr: HeapRange directly (DirectGranules).
  // empties: shared with the other pools of a set (nullptr: no empty region kept, each goes
  // back at once).
  void configure(unsigned cls, size_t capacity_chunks = kUnlimited, GranuleSource* source = nullptr,
                 EmptyRegions* empties = nullptr) {
    size_class_ = cls;
    capacity_ = capacity_chunks;
    source_ = source;
    empties_ = empties;
  }

  // A chunk; nullptr when the pool is exhausted (capacity reached, or no granule for a new
  // region: errno = ENOMEM).
  void* allocate() {
    void* chunk;
    uint8_t* state;
    return allocate_batch(&chunk, &state, 1) == 1 ? chunk : nullptr;
  }
  // Up to n chunks under one lock, in state `as` (handed out, or cached for a thread's cache),
  // into out[0, got) highest first, so that a cache popping from the top hands out the lowest
  // first; the addresses of their `state` bytes in states[0, got), by which the cache marks them
  // later. Returns got; 0 when exhausted.
  size_t allocate_batch(void** out, uint8_t** states, size_t n,
                        PoolRegion::SlotState as = PoolRegion::kHandedOut);
  // Takes back a chunk of this pool; aborts on a double free or a pointer never handed out.
  void deallocate(void* chunk) {
    check_handed_out(chunk);
    release_one(chunk);
  }

  // Any thread, no lock: the slot of chunk if it is the start of a chunk of a live region that
  // the program holds now; aborts otherwise: a chunk available in its region, or in a thread's
  // cache, was freed twice.
  BITSLAB_ALWAYS_INLINE static uint32_t check_handed_out(void* chunk) {
    uint32_t slot;
    if (BITSLAB_UNLIKELY(!is_handed_out(chunk, slot))) fatal(why_not_handed_out(chunk), chunk);
    return slot;
  }
  // check_handed_out for a fast path that aborts by a tail call: whether chunk passes, and its
  // slot if so. A pointer that is no carved chunk's start finds a state byte that says
  // kAvailable (PoolRegion::boundary_slot), as a double free's may: why_not_handed_out, on the
  // way to the abort, tells them apart.
  BITSLAB_ALWAYS_INLINE static bool is_handed_out(void* chunk, uint32_t& slot) {
    const PoolRegion* region = PoolRegion::of(chunk);
    if (BITSLAB_UNLIKELY(!region->live())) return false;
    slot = region->boundary_slot(chunk);
    // Available, cached by some thread, or a profiler's sample (which the caller tells apart).
    return slot != PoolRegion::kNoSlot && region->slot_state(slot) == PoolRegion::kHandedOut;
  }
  // What fatal is to say for a chunk is_handed_out refused: no carved chunk's start of a live
  // region (slot_index's bounds, which is_handed_out leaves out), or else a double free.
  static const char* why_not_handed_out(void* chunk) {
    if (PoolRegion::chunk_slot(chunk) == PoolRegion::kNoSlot)
      return "free of a pointer that bitslab never handed out:";
    return "double free of";
  }
  // Chunks of this pool that check_handed_out passed (from a cache, or just freed) become
  // available again, under one lock, and no longer cached; one that is available already
  // aborts (a double free that raced with the first).
  void release(void* const* chunks, size_t n);
  // The same for one chunk. Out of line, so that a caller's chunk need not go to its stack.
  void release_one(void* chunk);

  // Decommits the pages of chunks available since before now_ns - delay_ns (all, if force), and
  // gives back the empty regions kept since before now_ns - empty_delay_ns (all, if force).
  // Returns the bytes decommitted.
  size_t purge(uint64_t now_ns, uint64_t delay_ns, bool force, uint64_t empty_delay_ns = kKeepEmpty);
  static constexpr uint64_t kKeepEmpty = ~uint64_t{0};
  // Gives back to the source the empty regions this pool has kept since before
  // now_ns - idle_ns; every one if idle_ns is 0.
  void give_back_empty_regions(uint64_t now_ns, uint64_t idle_ns);

  unsigned size_class() const { return size_class_; }
  // Slots ever handed out, over the regions the pool holds now (statistics).
  size_t carved_chunks() const;
  size_t region_count() const { return regions_.load(std::memory_order_relaxed); }
  // Chunks handed out and not available again, from the regions' bitmaps: a chunk in a
  // thread's cache counts (the census subtracts those). Exact when no thread allocates or
  // frees meanwhile.
  size_t live_chunks() const;
  // Bytes decommitted by purges, in all; and an estimate of the bytes the regions hold in
  // memory now: every slot ever handed out, less what purges decommitted since (statistics).
  size_t decommitted_bytes() const { return decommitted_.load(std::memory_order_relaxed); }
  size_t resident_bytes() const;

  // The pool's lock; taken around fork() by core/thread/fork.cc.
  SpinLock& fork_lock() { return lock_; }

 private:
  GranuleSource& source() const;
  // Lock held; nullptr when no granule. Sets took_granule when it took a new one.
  PoolRegion* region_with_available(bool& took_granule);
  void list(PoolRegion* r);  // lock held: onto the list of regions with slots
  void unlist(PoolRegion* r);
  // Lock held: r's slots are all available; keeps it on the empty list if the budget allows, or
  // returns it to be given back (outside the lock).
  PoolRegion* retire_if_empty(PoolRegion* r);
  // Lock held: r leaves the empty list (to be used, or given back); its budget unit returns.
  void take_empty(PoolRegion* r);
  // Lock held: r leaves the pool (off the list of all regions, its magic cleared), for the
  // caller to give back to the source outside the lock.
  void forget(PoolRegion* r);

  unsigned size_class_ = 0;
  size_t capacity_ = kUnlimited;
  GranuleSource* source_ = nullptr;
  mutable SpinLock lock_;
  PoolRegion* partial_ = nullptr;    // regions with available slots, doubly linked
  PoolRegion* all_ = nullptr;        // every region, doubly linked
  PoolRegion* empty_ = nullptr;      // all-available regions kept committed, newest first
  EmptyRegions* empties_ = nullptr;  // shared by the pool set's pools
  size_t out_ = 0;                   // chunks out of their regions (for the capacity)
  std::atomic<size_t> regions_{0};
  std::atomic<size_t> decommitted_{0};
};

}  // namespace bitslab
