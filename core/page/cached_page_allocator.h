// core/page/cached_page_allocator.h — keeps given-back pages for reuse (L2).
//
// A bounded cache in front of an upstream PageAllocator. Free pages sit in a Boost.Lockfree
// stack of compile-time capacity (its nodes are inline in this object: pushing or popping never
// allocates, which matters because this runs inside malloc). A stack, not a queue, so the page
// handed out next is the one given back last, whose lines are most likely still in cache.
// When the cache is full, pages go upstream; when it is empty, pages come from upstream.
#pragma once
#include <atomic>
#include <cstddef>

#include <boost/lockfree/stack.hpp>

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

  // Upstream defaults to SystemPageAllocator::instance(); capacity defaults to 128 pages.
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

  size_t allocate(void** pages, size_t n) override;
  void deallocate(void* const* pages, size_t n) override;
  size_t page_size() const override { return upstream_->page_size(); }

  // Hands every cached page upstream (e.g. to return memory to the OS).
  void release_all();

 private:
  using FreePages = boost::lockfree::stack<void*, boost::lockfree::capacity<kPageCacheMaxCapacity>>;
  bool take(void*& page);
  bool keep(void* page);

  PageAllocator* upstream_;
  std::atomic<size_t> capacity_{128};
  std::atomic<size_t> cached_{0};
  std::atomic<size_t> hits_{0};
  std::atomic<size_t> calls_{0};
  FreePages free_pages_;
};

}  // namespace bitslab
