#include "core/page/cached_page_allocator.h"

#include "core/page/system_page_allocator.h"

namespace bitslab {

CachedPageAllocator::CachedPageAllocator() : upstream_(&SystemPageAllocator::instance()) {}

CachedPageAllocator::~CachedPageAllocator() { release_all(); }

void CachedPageAllocator::set_upstream(PageAllocator& upstream) {
  release_all();
  upstream_ = &upstream;
}

void CachedPageAllocator::set_free_page_capacity(size_t capacity) {
  if (capacity > kPageCacheMaxCapacity) capacity = kPageCacheMaxCapacity;
  capacity_.store(capacity, std::memory_order_relaxed);
  void* page;
  while (free_page_num() > capacity && take(page)) upstream_->deallocate(&page, 1);
}

CachedPageAllocator::CacheHitSummary CachedPageAllocator::cache_hit_summary() const {
  return {hits_.load(std::memory_order_relaxed), calls_.load(std::memory_order_relaxed)};
}

bool CachedPageAllocator::take(void*& page) {
  if (!free_pages_.pop(page)) return false;
  cached_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

bool CachedPageAllocator::keep(void* page) {
  // Reserve a place first so concurrent deallocations cannot overshoot the capacity.
  size_t count = cached_.load(std::memory_order_relaxed);
  do {
    if (count >= capacity_.load(std::memory_order_relaxed)) return false;
  } while (!cached_.compare_exchange_weak(count, count + 1, std::memory_order_relaxed));
  if (free_pages_.bounded_push(page)) return true;  // bounded: never allocates a node
  cached_.fetch_sub(1, std::memory_order_relaxed);
  return false;
}

size_t CachedPageAllocator::allocate(void** pages, size_t n) {
  size_t got = 0;
  while (got < n && take(pages[got])) ++got;
  hits_.fetch_add(got, std::memory_order_relaxed);
  calls_.fetch_add(n, std::memory_order_relaxed);
  if (got < n) got += upstream_->allocate(pages + got, n - got);
  return got;
}

void CachedPageAllocator::deallocate(void* const* pages, size_t n) {
  size_t i = 0;
  while (i < n && keep(pages[i])) ++i;
  if (i < n) upstream_->deallocate(pages + i, n - i);
}

void CachedPageAllocator::release_all() {
  void* page;
  while (take(page)) upstream_->deallocate(&page, 1);
}

}  // namespace bitslab
