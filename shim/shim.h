// shim/shim.h — the routing rules shared by the C and C++ entry points.
//
// A request the core can serve (size <= kMaxCoreSize, alignment <= kMaxCoreAlign) goes to the
// core; anything bigger goes to glibc, or in the hardened build to the core's guarded large
// blocks (core/large). A pointer is the core's if its granule is ours (one load from
// HeapRange's map, which never faults), otherwise it is glibc's.
#pragma once
#include <cerrno>
#include <cstddef>

#include "core/api/dispatch.h"
#include "core/base/bits.h"
#include "core/base/compiler.h"
#include "core/base/config.h"
#include "core/thread/options.h"
#include "core/thread/stats_report.h"
#include "shim/system_malloc.h"

namespace bitslab::shim {

// Above the threshold (BITSLAB_LARGE_THRESHOLD, at most kMaxCoreSize), or aligned beyond the
// core: glibc's, or in the hardened build a guarded block; counted for the statistics either
// way. alignment 0: malloc's. (calloc has its own route to __libc_calloc, which knows when
// fresh pages are zero already.)
BITSLAB_NOINLINE inline void* large_alloc(size_t size, size_t alignment) {
  note_system_request(size);
  if constexpr (kHardened) return guarded::allocate(size, alignment);
  return alignment == 0 ? __libc_malloc(size) : __libc_memalign(alignment, size);
}

BITSLAB_ALWAYS_INLINE void* malloc_impl(size_t size) {
  if (BITSLAB_LIKELY(size <= large_threshold())) return dispatch::alloc(size);  // 1 load, compare
  return large_alloc(size, 0);
}

BITSLAB_ALWAYS_INLINE void free_impl(void* p) {
  const GranuleKind kind = HeapRange::kind_of(p);  // nullptr maps to kNone
  if (BITSLAB_LIKELY(kind != GranuleKind::kNone)) return dispatch::free(p, kind);
  if (p != nullptr) __libc_free(p);  // glibc's block, e.g. allocated before we were loaded
}

// alignment: a power of two (callers check). Small alignments are plain malloc.
inline void* aligned_impl(size_t alignment, size_t size) {
  if (alignment <= kMinAlign) return malloc_impl(size);
  if (alignment <= kMaxCoreAlign && size <= large_threshold()) return dispatch::aligned_alloc(alignment, size);
  return large_alloc(size, alignment);
}

}  // namespace bitslab::shim
