// core/page/cached_page_allocator.h — keeps given-back pages for reuse (L2).
//
// A bounded cache in front of an upstream PageAllocator. Free pages sit in a Boost.Lockfree
// stack of compile-time capacity (its nodes are inline in this object: pushing or popping never
// allocates, which matters because this runs inside malloc). A stack, not a queue, so the page
// handed out next is the one given back last, whose lines are most likely still in cache.
// When the cache is full, pages go upstream; when it is empty, pages come from upstream.
//
// Purging: the fewest pages the cache held at any moment of a purge period (its low-water
// mark) sat there unused through the whole period, so they are not about to be reused; when
// the period ends they go upstream (a SystemPageAllocator decommits them). Periods end on the
// next allocate or deallocate after purge_delay: a cache nobody calls keeps its pages, since
// bitslab runs no thread of its own.
//
// Burst room (set_burst_room): the pages beyond the first `kept` are purged the same way on a
// short period of their own. A burst of pages given back and taken again within it (a thread
// that empties many slabs at once and fills as many again) never leaves the cache, and a
// burst that is not taken again goes back after one or two short periods, not the delay.
#pragma once
#include <atomic>
#include <cstddef>

#include <boost/lockfree/stack.hpp>

#include <cstdint>

#include "core/base/config.h"
#include "core/page/page_allocator.h"

namespace bitslab {

class CachedPageAllocator final : public PageAllocator {
 public:
  // Hits and calls counted per page requested: sum / num is the hit rate. Sampling it twice and
  // taking the difference gives the hit rate over an interval.
  struct CacheHitSummary {
    size_t sum;  // pages served from the cache
    size_t num;  // pages requested
  };

  // Upstream defaults to SystemPageAllocator::instance(); capacity to kPageCacheDefaultCapacity.
  CachedPageAllocator();
  ~CachedPageAllocator();  // returns every cached page upstream
  CachedPageAllocator(const CachedPageAllocator&) = delete;
  CachedPageAllocator& operator=(const CachedPageAllocator&) = delete;

  // Changing the upstream of a non-empty cache first hands the cached pages to the old one.
  void set_upstream(PageAllocator& upstream);
  PageAllocator& upstream() const { return *upstream_; }
  // Clamped to kPageCacheMaxCapacity; pages over a lowered capacity go upstream at once.
  void set_free_page_capacity(size_t capacity);
  size_t free_page_capacity() const { return capacity_.load(std::memory_order_relaxed); }
  size_t free_page_num() const { return cached_.load(std::memory_order_relaxed); }
  CacheHitSummary cache_hit_summary() const;
  // kNeverPurge keeps pages until capacity pushes them out. 0 purges at every call.
  static constexpr uint64_t kNeverPurge = ~uint64_t{0};
  void set_purge_delay_ms(uint64_t ms) {
    delay_.length_ns.store(ms == kNeverPurge ? ms : ms * 1000000, std::memory_order_relaxed);
  }
  // Pages over `kept` that stay in the cache through a period of `period_ms` go upstream when it
  // ends. Without a call, no burst room: every page waits for the purge delay.
  void set_burst_room(size_t kept, uint64_t period_ms);
  // Pages handed upstream by purging, in all (statistics).
  size_t pages_purged() const { return purged_.load(std::memory_order_relaxed); }

  size_t allocate(void** pages, size_t n) override;
  void deallocate(void* const* pages, size_t n) override;
  size_t page_size() const override { return upstream_->page_size(); }

  // Hands every cached page upstream (e.g. to return memory to the OS).
  void release_all() { release_beyond(0); }
  // The purge that allocate and deallocate run: when a purge period is up, the pages that stayed
  // in the cache through all of it go upstream. For a caller with no page to move (a timer).
  void purge_idle() { maybe_purge(); }

 private:
  using FreePages = boost::lockfree::stack<void*, boost::lockfree::capacity<kPageCacheMaxCapacity>>;
  bool take(void*& page);
  bool keep(void* page);
  void release_beyond(size_t keep);  // cached pages upstream until at most `keep` are left
  void note_low_water();
  void maybe_purge();
  // A purge period: when it ends, the pages beyond `kept` that stayed in the cache through all
  // of it (its low-water mark) go upstream, and the next one starts.
  struct PurgePeriod {
    std::atomic<uint64_t> length_ns{kNeverPurge};
    std::atomic<uint64_t> start_ns{0};
    std::atomic<size_t> low_water{0};  // the fewest pages cached since start_ns
    std::atomic<size_t> kept{0};
  };
  void end_period_if_due(PurgePeriod& period, uint64_t now);

  PageAllocator* upstream_;
  std::atomic<size_t> capacity_{kPageCacheDefaultCapacity};
  std::atomic<size_t> cached_{0};
  std::atomic<size_t> hits_{0};
  std::atomic<size_t> calls_{0};
  PurgePeriod delay_;  // the purge delay: every page idle through it goes
  PurgePeriod burst_;  // the burst room's: only pages beyond its `kept`
  std::atomic<size_t> purged_{0};
  std::atomic<bool> purging_{false};
  FreePages free_pages_;
};

}  // namespace bitslab
