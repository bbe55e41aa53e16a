// core/api/bitslab.h — the core allocator's public C++ API (L6).
//
// Serves requests up to kMaxCoreSize (256 KiB); larger ones return nullptr with errno = ENOMEM
// (the shim sends them to the system allocator). Blocks are at least 16-byte aligned.
//
// Installed as <bitslab/bitslab.h>. Linking libbitslab.so (CMake: bitslab::bitslab; pkg-config:
// bitslab) gives these functions, and makes bitslab the program's malloc as well. The core is
// built with hidden visibility; BITSLAB_PUBLIC, the one export macro, marks what leaves the
// shared library (these functions, and the shim's malloc family and operators new/delete), and
// shim/exports.map lists the same names.
#pragma once
#include <cstddef>

#define BITSLAB_PUBLIC __attribute__((visibility("default")))

namespace bitslab {

// nullptr + ENOMEM when size > max_size() or the OS refuses memory. alloc(0) returns a unique
// block (of 16 bytes).
BITSLAB_PUBLIC void* alloc(size_t size) noexcept;
// p must come from this API (or be nullptr). A double free, or a pointer into our heap that is
// not a live block, aborts with one line on stderr naming the address.
BITSLAB_PUBLIC void free(void* p) noexcept;
// Bytes usable at p (>= the size asked for).
BITSLAB_PUBLIC size_t usable_size(const void* p) noexcept;
// alignment: a power of two up to max_alignment(); otherwise nullptr + EINVAL. nullptr + ENOMEM
// when size > max_size() or memory is short.
BITSLAB_PUBLIC void* aligned_alloc(size_t alignment, size_t size) noexcept;
// realloc(nullptr, n) == alloc(n). Keeps the block when the new size still fits its class and
// does not waste more than half of it; otherwise moves it. nullptr + ENOMEM (p untouched) when
// size > max_size(). realloc(p, 0) returns a minimal block, as glibc does not: the shim decides.
BITSLAB_PUBLIC void* realloc(void* p, size_t size) noexcept;
// Whether p lies in memory the core hands out blocks from. Never faults, for any p.
BITSLAB_PUBLIC bool owns(const void* p) noexcept;

BITSLAB_PUBLIC size_t max_size() noexcept;       // 262144
BITSLAB_PUBLIC size_t max_alignment() noexcept;  // 65536

struct Stats {
  size_t reserved_bytes;       // address space reserved from the OS
  size_t slab_pages_in_use;    // 64 KiB slab pages held by thread heaps
  size_t slab_pages_cached;    // empty slab pages kept for reuse
  size_t slab_cache_hits;      // slab page requests served from the cache
  size_t slab_cache_requests;
  size_t pool_regions;         // 4 MiB pool regions claimed
  size_t pool_chunks_carved;   // pool chunks ever handed out for the first time
  size_t heaps;                // thread heaps ever created
  size_t heaps_in_use;         // heaps owned by a running thread
};
BITSLAB_PUBLIC Stats stats() noexcept;

// Gives memory back to the OS now: this thread's cached blocks and chunks and its empty slabs,
// every empty slab page of the process's page cache, the pages of every free pool chunk, and
// every granule no kind holds (unmapped). Returns the bytes decommitted or unmapped.
BITSLAB_PUBLIC size_t trim() noexcept;

// With the heap profiler on (BITSLAB_PROFILE=1, in a process whose malloc is bitslab's): writes
// its profile now to `path`, in pprof's heap format (google-pprof --text PROGRAM PATH). Returns
// false with errno set if the file cannot be written, or EINVAL when the profiler is off.
BITSLAB_PUBLIC bool profile_dump(const char* path) noexcept;

}  // namespace bitslab
