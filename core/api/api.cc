#include <cerrno>
#include <cstring>

#include "core/api/bitslab.h"
#include "core/api/dispatch.h"
#include "core/pool/pool_classes.h"
#include "core/thread/backend.h"
#include "core/thread/bootstrap.h"
#include "core/thread/heap_registry.h"

namespace bitslab {

namespace dispatch {

void* aligned_alloc(size_t alignment, size_t size) {
  if (size <= kSmallMax && alignment <= kSmallMax) {
    for (unsigned cls = small_class_of(size); cls < kSmallClassCount; ++cls) {
      if (small_class_alignment(cls) >= alignment) return tls_heap->alloc_small(cls);
    }
  }
  // Pool classes start above kSmallMax; a smaller request just takes the first that fits.
  const size_t pool_size = size > kSmallMax ? size : kSmallMax + 1;
  for (unsigned cls = pool_class_of(pool_size); cls < kPoolClassCount; ++cls) {
    if (pool_class_alignment(cls) >= alignment) return tls_heap->alloc_pool(pool_class_bytes(cls));
  }
  errno = ENOMEM;
  return nullptr;
}

void* realloc(void* p, GranuleKind kind, size_t size) {
  const size_t old_usable = usable_size(p, kind);
  // Stay in place if the block fits and at most half of it would go unused.
  if (size <= old_usable && size >= old_usable / 2) return p;
  void* fresh = alloc(size);
  if (fresh == nullptr) return nullptr;
  memcpy(fresh, p, size < old_usable ? size : old_usable);
  free(p, kind);
  return fresh;
}

}  // namespace dispatch

void* alloc(size_t size) noexcept {
  if (size > kMaxCoreSize) {
    errno = ENOMEM;
    return nullptr;
  }
  return dispatch::alloc(size);
}

void free(void* p) noexcept {
  if (p == nullptr) return;
  const GranuleKind kind = dispatch::block_kind(p);
  if (kind == GranuleKind::kNone) fatal("free of a pointer that bitslab never handed out:", p);
  dispatch::free(p, kind);
}

size_t usable_size(const void* p) noexcept {
  if (p == nullptr) return 0;
  const GranuleKind kind = dispatch::block_kind(p);
  if (kind == GranuleKind::kNone) fatal("usable_size of a pointer that bitslab never handed out:", p);
  return dispatch::usable_size(p, kind);
}

void* aligned_alloc(size_t alignment, size_t size) noexcept {
  if (!is_pow2(alignment) || alignment > kMaxCoreAlign) {
    errno = EINVAL;
    return nullptr;
  }
  if (size > kMaxCoreSize) {
    errno = ENOMEM;
    return nullptr;
  }
  if (alignment <= kMinAlign) return dispatch::alloc(size);
  return dispatch::aligned_alloc(alignment, size);
}

void* realloc(void* p, size_t size) noexcept {
  if (p == nullptr) return alloc(size);
  const GranuleKind kind = dispatch::block_kind(p);
  if (kind == GranuleKind::kNone) fatal("realloc of a pointer that bitslab never handed out:", p);
  if (size > kMaxCoreSize) {
    errno = ENOMEM;
    return nullptr;
  }
  return dispatch::realloc(p, kind, size);
}

bool owns(const void* p) noexcept { return dispatch::block_kind(p) != GranuleKind::kNone; }

size_t max_size() noexcept { return kMaxCoreSize; }
size_t max_alignment() noexcept { return kMaxCoreAlign; }

size_t trim() noexcept {
  process_init();
  SystemPageAllocator& system = backend::slab_system_pages();
  const size_t before = system.bytes_returned();
  if (tls_heap != &kEmptyHeap) tls_heap->flush();
  backend::slab_pages().release_all();
  return system.bytes_returned() - before;
}

Stats stats() noexcept {
  process_init();
  Stats s{};
  s.reserved_bytes = HeapRange::reserved_bytes();
  CachedPageAllocator& cache = backend::slab_pages();
  s.slab_pages_cached = cache.free_page_num();
  s.slab_pages_in_use = backend::slab_system_pages().pages_in_use() - s.slab_pages_cached;
  const CachedPageAllocator::CacheHitSummary hits = cache.cache_hit_summary();
  s.slab_cache_hits = hits.sum;
  s.slab_cache_requests = hits.num;
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls) {
    s.pool_regions += backend::pools().pool(cls).region_count();
    s.pool_chunks_carved += backend::pools().pool(cls).carved_chunks();
  }
  s.heaps = HeapRegistry::heap_count();
  s.heaps_in_use = HeapRegistry::heaps_in_use();
  return s;
}

}  // namespace bitslab
