// shim/system_malloc.h — the only route to glibc's allocator (never dlsym on the malloc path),
// and glibc as the front end's System (core/api/dispatch.h): it serves the requests above the
// core's classes and owns every block the core did not make.
//
// glibc 2.36 still exports the __libc_ names as GLIBC_2.2.5 entry points; because the shim does
// not define them, they reach glibc's own malloc directly, with no chance of recursing into us.
#pragma once
#include <atomic>
#include <cstddef>

#include "core/base/options.h"

extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* p, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
void __libc_free(void* p);
}

namespace bitslab::shim {

// glibc's malloc_usable_size for a pointer it made (no __libc_ alias exists for it); looked up
// with dlsym once, outside any malloc call.
size_t system_usable_size(void* p);
// glibc's malloc_trim, or 0 if it cannot be found.
int system_trim(size_t pad);

// Set when a block goes back to glibc; the purge's trim hook (system_malloc.cc) clears it and
// trims glibc's heap. Written only when it changes: the flag's line is not bounced between
// threads that free large blocks.
extern std::atomic<bool> g_system_heap_freed;
inline void note_system_free() {
  if (!g_system_heap_freed.load(std::memory_order_relaxed))
    g_system_heap_freed.store(true, std::memory_order_relaxed);
}

struct Glibc {
  static constexpr bool kServesLarge = true;
  static constexpr bool kReallocZeroFrees = true;  // glibc's realloc(p, 0) frees p, returns NULL
  // BITSLAB_LARGE_THRESHOLD, at most the core's largest class, or 0 while the heap profiler
  // samples: one load on every malloc.
  static size_t threshold() { return route_threshold(); }
  static size_t core_limit() { return large_threshold(); }
  static void* alloc(size_t size, size_t alignment) {
    return alignment == 0 ? __libc_malloc(size) : __libc_memalign(alignment, size);
  }
  static void* calloc(size_t count, size_t size) { return __libc_calloc(count, size); }
  static void* realloc(void* p, size_t size) {
    note_system_free();  // it may shrink or move the block
    return __libc_realloc(p, size);
  }
  // The flag first, then a tail call: free's fast paths then need no stack frame.
  static void free(void* p) {
    note_system_free();
    __libc_free(p);
  }
  // A pointer into our own metadata is no block: 0, as glibc answers for what is not its block.
  static size_t usable_size(void* p, bool core_metadata) { return core_metadata ? 0 : system_usable_size(p); }
};

}  // namespace bitslab::shim
