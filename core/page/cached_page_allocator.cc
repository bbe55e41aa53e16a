#include "core/page/cached_page_allocator.h"

#include <cstdint>

#include "core/base/fatal.h"
#include "core/os/os.h"
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
  release_beyond(capacity);
}

CachedPageAllocator::CacheHitSummary CachedPageAllocator::cache_hit_summary() const {
  return {hits_.load(std::memory_order_relaxed), calls_.load(std::memory_order_relaxed)};
}

bool CachedPageAllocator::take(void*& page) {
  if (!free_pages_.pop(page)) return false;
  cached_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

void CachedPageAllocator::set_burst_room(size_t kept, uint64_t period_ms) {
  burst_.kept.store(kept, std::memory_order_relaxed);
  burst_.length_ns.store(period_ms * 1000000, std::memory_order_relaxed);
}

void CachedPageAllocator::note_low_water() {
  // Approximate under races (a relaxed min): purging a page too few or too many is harmless.
  const size_t now = cached_.load(std::memory_order_relaxed);
  for (PurgePeriod* period : {&delay_, &burst_})
    if (now < period->low_water.load(std::memory_order_relaxed))
      period->low_water.store(now, std::memory_order_relaxed);
}

void CachedPageAllocator::maybe_purge() {
  if (delay_.length_ns.load(std::memory_order_relaxed) == kNeverPurge &&
      burst_.length_ns.load(std::memory_order_relaxed) == kNeverPurge)
    return;
  const uint64_t now = os::coarse_now_ns();
  end_period_if_due(burst_, now);
  end_period_if_due(delay_, now);
}

void CachedPageAllocator::end_period_if_due(PurgePeriod& period, uint64_t now) {
  const uint64_t length = period.length_ns.load(std::memory_order_relaxed);
  if (length == kNeverPurge || now - period.start_ns.load(std::memory_order_relaxed) < length) return;
  if (purging_.exchange(true, std::memory_order_acquire)) return;  // another thread is at it
  const size_t low_water = period.low_water.load(std::memory_order_relaxed);
  const size_t kept = period.kept.load(std::memory_order_relaxed);
  size_t idle = low_water > kept ? low_water - kept : 0;
  void* page;
  while (idle > 0 && take(page)) {
    upstream_->deallocate(&page, 1);
    purged_.fetch_add(1, std::memory_order_relaxed);
    --idle;
  }
  note_low_water();  // the other period's mark too: what went here was not idle through it
  period.low_water.store(free_page_num(), std::memory_order_relaxed);
  period.start_ns.store(now, std::memory_order_relaxed);
  purging_.store(false, std::memory_order_release);
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
  note_low_water();
  maybe_purge();
  if (got < n) got += upstream_->allocate(pages + got, n - got);
  return got;
}

void CachedPageAllocator::deallocate(void* const* pages, size_t n) {
  // A cached page is handed out again unchecked, so a pointer that is not even aligned to the
  // page size is stopped here rather than given to the next caller. Ownership (and a page given
  // back twice) is checked by the upstream when the page leaves the cache.
  const uintptr_t misaligned = upstream_->page_size() - 1;
  for (size_t j = 0; j < n; ++j) {
    if (reinterpret_cast<uintptr_t>(pages[j]) & misaligned)
      fatal("page given back to the page cache is not aligned to a page:", pages[j]);
  }
  size_t i = 0;
  while (i < n && keep(pages[i])) ++i;
  if (i < n) upstream_->deallocate(pages + i, n - i);
  maybe_purge();
}

void CachedPageAllocator::release_beyond(size_t keep) {
  void* page;
  while (free_page_num() > keep && take(page)) upstream_->deallocate(&page, 1);
}

}  // namespace bitslab
