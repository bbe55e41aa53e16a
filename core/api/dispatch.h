// core/api/dispatch.h — the inline entry points the shim compiles into malloc and free (L5).
// core/api/api.cc wraps the same functions for library users.
#pragma once
#include <cerrno>
#include <cstddef>

#include "core/base/compiler.h"
#include "core/base/config.h"
#include "core/large/guarded_blocks.h"
#include "core/os/heap_range.h"
#include "core/pool/pool_set.h"
#include "core/small/slab.h"
#include "core/thread/thread_heap.h"

namespace bitslab::dispatch {

// A large block between guard pages: only the hardened build makes them (core/large).
constexpr bool is_guarded(GranuleKind kind) {
  return kHardened && (kind == GranuleKind::kLarge || kind == GranuleKind::kLargeTail);
}

// size <= kMaxCoreSize.
BITSLAB_ALWAYS_INLINE void* alloc(size_t size) {
  ThreadHeap* heap = tls_heap;                     // 1 load (fs-relative)
  if (BITSLAB_LIKELY(size <= kSmallMax))           // predicted: most requests are small
    return heap->alloc_small(small_class_of(size));
  return heap->alloc_pool(size);
}

// p != nullptr and HeapRange::kind_of(p) == kind, as the caller just found out.
BITSLAB_ALWAYS_INLINE void free(void* p, GranuleKind kind) {
  if (BITSLAB_LIKELY(kind == GranuleKind::kSlabs)) {
    Slab* s = Slab::of(p);                         // mask
    if constexpr (kHardened)                       // the header's keyed tag: 1 load, 1 compare
      if (BITSLAB_UNLIKELY(!s->live()))
        fatal("free of a pointer into a slab that is not live (never handed out, freed already, "
              "or its header overwritten):", p);
    ThreadHeap* heap = tls_heap;
    if (BITSLAB_LIKELY(s->owner == heap))          // 1 load: same-thread free, no atomics
      return heap->free_small(s, p);
    return ThreadHeap::free_remote(s, p);          // another thread's slab: one CAS
  }
  if (kind == GranuleKind::kPool) return tls_heap->free_pool(p);
  if (is_guarded(kind)) return guarded::deallocate(p);  // hardened build only
  fatal("free of a pointer that bitslab never handed out:", p);  // our metadata pages
}

inline size_t usable_size(const void* p, GranuleKind kind) {
  if (kind == GranuleKind::kSlabs) return Slab::of(p)->block_size;
  if (is_guarded(kind)) return guarded::usable_size(p);
  return PoolSet::usable_size(p);
}

// Whether the core hands out blocks from where p points.
BITSLAB_ALWAYS_INLINE GranuleKind block_kind(const void* p) {
  const GranuleKind kind = HeapRange::kind_of(p);
  return kind == GranuleKind::kPages ? GranuleKind::kNone : kind;
}

// alignment is a power of two, > kMinAlign and <= kMaxCoreAlign; size <= kMaxCoreSize.
// Picks the smallest class, at least `size`, whose blocks are naturally that aligned.
// nullptr (errno = ENOMEM) when no class qualifies.
void* aligned_alloc(size_t alignment, size_t size);

// p is ours (kind from block_kind); size <= kMaxCoreSize.
void* realloc(void* p, GranuleKind kind, size_t size);

}  // namespace bitslab::dispatch
