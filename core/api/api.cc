#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/api/bitslab.h"
#include "core/api/dispatch.h"
#include "core/api/stats.h"
#include "core/backend/backend.h"
#include "core/base/line_writer.h"
#include "core/pool/pool_classes.h"
#include "core/thread/bootstrap.h"

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

void* resize(void* p, GranuleKind kind, size_t size) {
  const size_t old_usable = usable_size(p, kind);
  // Stay in place if the block fits and at most half of it would go unused.
  if (size <= old_usable && size >= old_usable / 2) return p;
  void* fresh = alloc(size);
  if (fresh == nullptr) return nullptr;
  memcpy(fresh, p, size < old_usable ? size : old_usable);
  free(p, kind);
  return fresh;
}

bool size_selects_block(void* p, GranuleKind kind, size_t size, size_t alignment, size_t large_threshold) {
  if (size > usable_size(p, kind)) return false;
  if (alignment != 0) return true;  // an aligned new may take a larger class: size fits is all
  if (kind == GranuleKind::kSlabs) return size <= kSmallMax && small_class_of(size) == Slab::of(p)->size_class;
  if (kind == GranuleKind::kPool)
    return size > kSmallMax && size <= kPoolMax && pool_class_of(size) == PoolRegion::of(p)->size_class;
  return size > large_threshold;  // a guarded large block: only a large request makes one
}

void wrong_size_delete(void* p, size_t size) {
  LineWriter line;
  line.text("bitslab: sized delete with a wrong size (").dec(size)
      .text(" bytes) of ").hex(reinterpret_cast<unsigned long>(p));
  line.flush();
  abort();
}

}  // namespace dispatch

namespace {
// The C++ API serves the core's blocks only: nothing above kMaxCoreSize (ENOMEM), and a pointer
// that is not one of its blocks aborts (the malloc family, in the shim, hands those to glibc).
struct NoSystem {
  static constexpr bool kServesLarge = false;
  static constexpr bool kReallocZeroFrees = false;  // realloc(p, 0) gives a minimal block
  static constexpr size_t threshold() { return kMaxCoreSize; }
  static void* alloc(size_t, size_t) { return nullptr; }  // never called: kServesLarge
  static void* calloc(size_t, size_t) { return nullptr; }
  [[noreturn]] static void* realloc(void* p, size_t) {
    fatal("realloc of a pointer that bitslab never handed out:", p);
  }
  [[noreturn]] static void free(void* p) { fatal("free of a pointer that bitslab never handed out:", p); }
  [[noreturn]] static size_t usable_size(void* p, bool) {
    fatal("usable_size of a pointer that bitslab never handed out:", p);
  }
};
}  // namespace

void* alloc(size_t size) noexcept { return dispatch::malloc<NoSystem>(size); }

void free(void* p) noexcept { dispatch::free<NoSystem>(p); }

size_t usable_size(const void* p) noexcept { return dispatch::usable_size<NoSystem>(const_cast<void*>(p)); }

void* aligned_alloc(size_t alignment, size_t size) noexcept {
  if (!is_pow2(alignment) || alignment > kMaxCoreAlign) {
    errno = EINVAL;
    return nullptr;
  }
  return dispatch::aligned<NoSystem>(alignment, size);
}

void* realloc(void* p, size_t size) noexcept { return dispatch::realloc<NoSystem>(p, size); }

bool owns(const void* p) noexcept { return dispatch::owns(p); }

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
  const ProcessStats p = collect_stats(StatsDetail::kTotals);
  Stats s{};
  s.reserved_bytes = p.reserved_bytes;
  s.slab_pages_in_use = p.slab_pages_in_use;
  s.slab_pages_cached = p.page_cache_pages;
  s.slab_cache_hits = p.page_cache_hits;
  s.slab_cache_requests = p.page_cache_calls;
  s.pool_regions = p.pool_regions;
  s.pool_chunks_carved = p.pool_chunks_carved;
  s.heaps = p.heaps;
  s.heaps_in_use = p.heaps_in_use;
  return s;
}

}  // namespace bitslab
