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
  void set_purge_delay_ms(uint64_t ms) { purge_delay_ns_.store(ms == kNeverPurge ? ms : ms * 1000000, std::memory_order_relaxed); }
  // Pages handed upstream by purging, in all (statistics).
  size_t pages_purged() const { return purged_.load(std::memory_order_relaxed); }

  size_t allocate(void** pages, size_t n) override;
  void deallocate(void* const* pages, size_t n) override;
  size_t page_size() const override { return upstream_->page_size(); }

  // Hands every cached page upstream (e.g. to return memory to the OS).
  void release_all();
  // The purge that allocate and deallocate run: when a purge period is up, the pages that stayed
  // in the cache through all of it go upstream. For a caller with no page to move (a timer).
  void purge_idle() { maybe_purge(); }

 private:
  using FreePages = boost::lockfree::stack<void*, boost::lockfree::capacity<kPageCacheMaxCapacity>>;
  bool take(void*& page);
  bool keep(void* page);
  void note_low_water();
  void maybe_purge();

  PageAllocator* upstream_;
  std::atomic<size_t> capacity_{kPageCacheDefaultCapacity};
  std::atomic<size_t> cached_{0};
  std::atomic<size_t> hits_{0};
  std::atomic<size_t> calls_{0};
  std::atomic<uint64_t> purge_delay_ns_{kNeverPurge};
  std::atomic<uint64_t> period_start_ns_{0};
  std::atomic<size_t> low_water_{0};
  std::atomic<size_t> purged_{0};
  std::atomic<bool> purging_{false};
  FreePages free_pages_;
};

}  // namespace bitslab
