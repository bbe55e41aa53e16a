// core/api/dispatch.h — the API's front end (L6): every allocation entry point, inline, for the
// shim's malloc family and operator new/delete and for the C++ API (core/api/api.cc). Callers
// name who serves what the core does not (a System, below) and never the core's internals:
// which granule a pointer is in, the class tables and the large route stay behind this header.
//
// The two halves: the core's own blocks (alloc, free(p, kind), ...: the hot path), and the
// front end over them (malloc<S>, free<S>, calloc<S>, realloc<S>, ...), where each policy —
// the large route, ownership of foreign pointers, realloc, the sized-delete check — is written
// once for both callers.
#pragma once
#include <cerrno>
#include <cstddef>
#include <cstring>

#include "core/api/stats.h"
#include "core/base/compiler.h"
#include "core/base/config.h"
#include "core/large/guarded_blocks.h"
#include "core/os/heap_range.h"
#include "core/os/os.h"
#include "core/pool/pool_set.h"
#include "core/profile/profiler.h"
#include "core/small/slab.h"
#include "core/thread/thread_heap.h"

namespace bitslab::dispatch {

// ---- the core's own blocks -----------------------------------------------------------------

// A large block between guard pages: only the hardened build makes them (core/large).
constexpr bool is_guarded(GranuleKind kind) {
  return kHardened && (kind == GranuleKind::kLarge || kind == GranuleKind::kLargeTail);
}
// Ours, but no block: metadata pages, and granules the page heap keeps for reuse.
constexpr bool is_not_a_block(GranuleKind kind) {
  return kind == GranuleKind::kPages || kind == GranuleKind::kFree;
}

// size <= kMaxCoreSize.
BITSLAB_ALWAYS_INLINE void* alloc(size_t size) {
  ThreadHeap* heap = tls_heap;                     // 1 load (fs-relative)
  if (BITSLAB_LIKELY(size <= kSmallMax))           // predicted: most requests are small
    return heap->alloc_small(small_class_of(size));
  return ThreadHeap::alloc_pool(size, heap);
}

// p is in a granule of slabs (HeapRange::kind_of(p) == kSlabs).
BITSLAB_ALWAYS_INLINE void free_in_slab(void* p) {
  Slab* s = Slab::of(p);    // mask
  if constexpr (kHardened)  // the header's keyed tag: 1 load, 1 compare
    if (BITSLAB_UNLIKELY(!s->live()))
      fatal(
          "free of a pointer into a slab that is not live (never handed out, freed already, "
          "or its header overwritten):",
          p);
  // Any thread's check, on the identity line both paths read: imul, shift, 2 compares.
  const uint32_t index = s->handed_out_index(p);
  if (BITSLAB_UNLIKELY(index == Slab::kNoBlock))
    return fatal_tail("free of a pointer that bitslab never handed out:", p);
  ThreadHeap* heap = tls_heap;
  // Ours, or a class any thread keeps: into this thread's cache, no atomics (load, xor, and).
  if (BITSLAB_LIKELY(heap->takes_free_of(s))) return heap->free_small(s, p, index);
  return ThreadHeap::free_remote(s, p, heap, index);  // another heap's: sent back
}

// p != nullptr and HeapRange::kind_of(p) == kind, as the caller just found out.
BITSLAB_ALWAYS_INLINE void free(void* p, GranuleKind kind) {
  if (BITSLAB_LIKELY(kind == GranuleKind::kSlabs)) return free_in_slab(p);
  if (kind == GranuleKind::kPool) return tls_heap->free_pool(p);
  if (is_guarded(kind)) return guarded::deallocate(p);  // hardened build only
  return fatal_tail("free of a pointer that bitslab never handed out:", p);  // our metadata pages
}

inline size_t usable_size(const void* p, GranuleKind kind) {
  if (kind == GranuleKind::kSlabs) return Slab::of(p)->block_size;
  if (is_guarded(kind)) return guarded::usable_size(p);
  return PoolSet::usable_size(p);
}

// realloc's move of the core's block p (of `kind`) to `moved`, a new block of `size` bytes:
// copies what fits, frees p, returns moved. moved == nullptr (out of memory): p stays.
inline void* move_block(void* p, GranuleKind kind, size_t size, void* moved) {
  if (moved == nullptr) return nullptr;
  const size_t old_usable = usable_size(p, kind);
  memcpy(moved, p, size < old_usable ? size : old_usable);
  free(p, kind);
  return moved;
}

// alignment is a power of two, > kMinAlign and <= kMaxCoreAlign; size <= kMaxCoreSize.
// Picks the smallest class, at least `size`, whose blocks are naturally that aligned.
// nullptr (errno = ENOMEM) when no class qualifies.
void* aligned_alloc(size_t alignment, size_t size);

// A core block p of `kind` resized to size <= kMaxCoreSize: in place if it fits and at most
// half of it would go unused, else moved.
void* resize(void* p, GranuleKind kind, size_t size);

// Whether `size` (and `alignment`, 0 for none) could have made p's block: the class that size
// selects is p's class (any class at least that large for an aligned request). large_threshold:
// the caller's (a guarded block only comes from a request above it).
bool size_selects_block(void* p, GranuleKind kind, size_t size, size_t alignment, size_t large_threshold);
[[noreturn]] void wrong_size_delete(void* p, size_t size);

// ---- the front end -------------------------------------------------------------------------
//
// A System serves what the core does not. The shim's is glibc (shim/system_malloc.h); the C++
// API's is NoSystem (core/api/api.cc: nothing beyond the core, foreign pointers abort).
//   static constexpr bool kServesLarge;       false: a request above the threshold is ENOMEM
//   static constexpr bool kReallocZeroFrees;  realloc(p, 0) frees p and returns NULL (glibc)
//   static size_t threshold();                larger requests leave the fast path (the shim's:
//                                             0 while the heap profiler samples)
//   static size_t core_limit();               larger requests take the large route
//   static void* alloc(size_t size, size_t alignment);  the large route (alignment 0: malloc's)
//   static void* calloc(size_t count, size_t size);     the same, zeroed
//   static void* realloc(void* p, size_t size);         p is not the core's
//   static void free(void* p);                          p is not the core's (never nullptr)
//   static size_t usable_size(void* p, bool core_metadata);  p is not a block of the core's

// The System's heap holds the blocks given back to it, in the same RSS as ours: `trim` (the
// System's, may be nullptr) hands them to the OS, called after each purge of the core's own
// memory (core/backend/backend.h). Registered once, before or after the first allocation.
void set_system_trim(void (*trim)());

// Above the core's limit, or aligned beyond the core: the System's, or in the hardened build a
// guarded block; counted for the statistics either way.
template <class System>
BITSLAB_NOINLINE void* system_alloc(size_t size, size_t alignment) {
  note_system_request(size);
  auto once = [&] {
    if constexpr (kHardened) return guarded::allocate(size, alignment);
    return System::alloc(size, alignment);
  };
  if (void* p = once()) return p;
  // Out of memory (often address space, under a limit): give back what we hold, then once
  // more, so that a program that freed its small blocks can have a large one.
  reclaim_memory();
  return once();
}

// ---- the heap profiler's routes (core/profile/profiler.h) ----------------------------------
// While the profiler samples, the shim's threshold is 0: every request leaves the fast path and
// comes here, where the sample clock runs first. The fast paths never ask whether it is on.

// A sample, recorded at `stack`. A pool chunk (above kSmallMax, within the core, no alignment)
// is ours, marked sampled: its free leaves free_pool's fast path at the check a double free
// fails, and finds the profiler there (ThreadHeap::free_pool_sample_or_abort). Any other is
// the System's, whose free reaches free_foreign: a small block's sample in a pool chunk would
// waste up to 1 KiB a block at rate 1.
template <class System>
BITSLAB_NOINLINE void* sampled_alloc(size_t size, size_t alignment, bool zero, const profile::Stack& stack) {
  void* p;
  if (alignment <= kMinAlign && size > kSmallMax && size <= System::core_limit()) {
    p = alloc(size);
    if (p == nullptr) return nullptr;
    if (zero) memset(p, 0, size);
    PoolRegion::mark_sampled(p);
  } else {
    note_system_request(size);
    p = zero ? System::calloc(1, size) : System::alloc(size, alignment);
    if (p == nullptr) return nullptr;
  }
  profile::record(p, size, stack);
  return p;
}

// An allocation the profiler did not sample, off the common case: aligned, zeroed, or beyond
// the core. Served where it would have been without the profiler.
template <class System>
BITSLAB_NOINLINE void* unsampled_alloc(size_t size, size_t alignment, bool zero) {
  if (size <= System::core_limit() && alignment <= kMaxCoreAlign) {
    void* p = alignment <= kMinAlign ? alloc(size) : aligned_alloc(alignment, size);
    if (zero && p != nullptr) memset(p, 0, size);
    return p;
  }
  if (!zero || kHardened) return system_alloc<System>(size, alignment);  // guarded: zero already
  note_system_request(size);
  return System::calloc(1, size);
}

// The profiler's sample clock, in the calling thread's heap (ThreadHeap::sample_clock). Its
// window never reaches past the core's limit, so a request beyond the core always finds it
// expired; while the profiler is off, no clock ever starts, and every request finds it expired.
BITSLAB_ALWAYS_INLINE bool sample_clock_expired(size_t size) {
  return tls_heap->sample_clock().count_down(size);
}
// After the clock expired: whether this request is a sample (the clock then re-armed).
template <class System>
inline bool take_sample(size_t size) {
  return profile::sampling() &&
         profile::take_sample(ThreadHeap::this_threads_sample_clock(), size, System::core_limit() + 1);
}
template <class System>
inline bool should_sample(size_t size) {
  return sample_clock_expired(size) && take_sample<System>(size);
}

// The sample clock expired: a sample, or else served as unsampled_alloc would (a request beyond
// the core's limit always comes here). cfa: the routed entry's own frame (profiled_alloc's),
// above which the stack is the program's.
template <class System>
BITSLAB_NOINLINE void* profiled_alloc_slow(size_t size, size_t alignment, bool zero, const void* cfa) {
  if (!take_sample<System>(size)) return unsampled_alloc<System>(size, alignment, zero);
  profile::Stack stack;
  profile::capture(stack, cfa);
  return sampled_alloc<System>(size, alignment, zero, stack);
}

// Any allocation while the profiler samples. The common case, a plain malloc that is no
// sample, costs malloc's failed threshold test and the jump here, then the clock in the heap
// (a load, a subtract and a store beside the heap's address, which the fast path loads anyway,
// and a branch that also sends every request beyond the core away) before the fast path, with
// no stack frame: 5-6 instructions (tests/perf/fastpath-profiled.budget). Inline in the routed
// functions (malloc's folds the alignment and zeroing tests away), whose frame is the one the
// stack is taken above.
template <class System>
BITSLAB_ALWAYS_INLINE void* profiled_alloc(size_t size, size_t alignment, bool zero) {
  if (BITSLAB_UNLIKELY(sample_clock_expired(size)))
    return profiled_alloc_slow<System>(size, alignment, zero, __builtin_dwarf_cfa());
  // size <= the core's limit here: the clock's window is never longer.
  if (BITSLAB_LIKELY((alignment | static_cast<size_t>(zero)) == 0)) return alloc(size);
  return unsampled_alloc<System>(size, alignment, zero);
}

// realloc of the core's block p while the profiler samples: in place as usual, unless the new
// size is a sample (then it moves to where sampled_alloc puts it) or beyond the core.
template <class System>
BITSLAB_NOINLINE void* profiled_resize(void* p, GranuleKind kind, size_t size) {
  // A sampled chunk is one no more: it changes size, or moves.
  if (kind == GranuleKind::kPool && PoolRegion::unmark_sampled(p)) profile::forget(p);
  if (!should_sample<System>(size))
    return size <= System::core_limit() ? resize(p, kind, size)
                                        : move_block(p, kind, size, system_alloc<System>(size, 0));
  profile::Stack stack;
  profile::capture(stack, __builtin_dwarf_cfa());
  return move_block(p, kind, size, sampled_alloc<System>(size, 0, false, stack));
}

// free of a block the System made while the profiler runs: a sample, maybe.
template <class System>
BITSLAB_NOINLINE void profiled_foreign_free(void* p) {
  profile::forget(p);
  System::free(p);
}

// free of a block the System made. The profiler's case is a tail call, so that free's fast
// paths still need no stack frame.
template <class System>
BITSLAB_ALWAYS_INLINE void free_foreign(void* p) {
  if (BITSLAB_UNLIKELY(profile::sampling())) return profiled_foreign_free<System>(p);
  System::free(p);
}

// realloc of a block the System made, while the profiler samples: the old block is no sample
// any more, and the new size may be one (the block is the System's either way).
template <class System>
BITSLAB_NOINLINE void* profiled_foreign_realloc(void* p, size_t size) {
  profile::forget(p);
  void* q = System::realloc(p, size);
  if (q != nullptr && should_sample<System>(size)) {
    profile::Stack stack;
    profile::capture(stack, __builtin_dwarf_cfa());
    profile::record(q, size, stack);
  }
  return q;
}

// Above the threshold, or aligned beyond the core: the System's (or a guarded block), unless
// the profiler routes every request here. Out of line: malloc's fast path then needs no saved
// registers.
template <class System>
BITSLAB_NOINLINE void* large_alloc(size_t size, size_t alignment) {
  if constexpr (!System::kServesLarge) {
    errno = ENOMEM;
    return nullptr;
  } else {
    if (BITSLAB_UNLIKELY(profile::sampling())) return profiled_alloc<System>(size, alignment, false);
    return system_alloc<System>(size, alignment);
  }
}

// malloc past the threshold: a large block, or, while the profiler sets the threshold to 0,
// any request. Both meet the sample clock first: a large request always finds it expired (with
// the profiler off, no clock ever starts), and leaves through profiled_alloc_slow, where the
// profiler says whether it is on. So a request within the core needs no test of its own here.
template <class System>
BITSLAB_NOINLINE void* routed_malloc(size_t size) {
  if constexpr (System::kServesLarge) {
    return profiled_alloc<System>(size, 0, false);
  } else {  // the C++ API's threshold is the limit: only a request beyond the core comes here
    return large_alloc<System>(size, 0);
  }
}

template <class System>
BITSLAB_ALWAYS_INLINE void* malloc(size_t size) {
  if (BITSLAB_LIKELY(size <= System::threshold())) return alloc(size);  // 1 load, compare
  return routed_malloc<System>(size);
}

template <class System>
BITSLAB_ALWAYS_INLINE void free(void* p) {
  const GranuleKind kind = HeapRange::kind_of(p);  // nullptr maps to kNone
  // A small block first: 1 compare where "ours at all?" then "a slab?" took 2.
  if (BITSLAB_LIKELY(kind == GranuleKind::kSlabs)) return free_in_slab(p);
  // A pool chunk next, before "ours at all?": 1 compare and branch where those two took 2.
  if (kind == GranuleKind::kPool) return tls_heap->free_pool(p);
  if (BITSLAB_LIKELY(kind != GranuleKind::kNone)) return free(p, kind);
  if (p != nullptr) free_foreign<System>(p);  // e.g. glibc's block, allocated before we were loaded
}

template <class System>
void* calloc(size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  if (total > System::threshold()) {
    if constexpr (System::kServesLarge)
      if (BITSLAB_UNLIKELY(profile::sampling())) return profiled_alloc<System>(total, 0, true);
    // Guarded blocks come from fresh or decommitted pages: zero already (and an API caller
    // has no large route at all).
    if constexpr (!System::kServesLarge || kHardened) {
      return large_alloc<System>(total, 0);
    } else {
      // glibc knows when its fresh pages are zero: its own calloc, not malloc + memset.
      note_system_request(total);
      if (void* p = System::calloc(count, size)) return p;
      reclaim_memory();  // out of memory: give back what we hold, then once more
      return System::calloc(count, size);
    }
  }
  void* p = alloc(total);
  if (p != nullptr) memset(p, 0, total);
  return p;
}

// alignment: a power of two (callers check). Small alignments are plain malloc.
template <class System>
void* aligned(size_t alignment, size_t size) {
  if (alignment <= kMinAlign) return malloc<System>(size);
  if (alignment <= kMaxCoreAlign && size <= System::threshold()) return aligned_alloc(alignment, size);
  return large_alloc<System>(size, alignment);
}

// The one realloc policy.
template <class System>
void* realloc(void* p, size_t size) {
  if (p == nullptr) return malloc<System>(size);
  const GranuleKind kind = HeapRange::kind_of(p);
  // A block the System made stays the System's.
  if (kind == GranuleKind::kNone) {
    if constexpr (System::kServesLarge)
      if (BITSLAB_UNLIKELY(profile::sampling())) return profiled_foreign_realloc<System>(p, size);
    return System::realloc(p, size);
  }
  if (System::kReallocZeroFrees && size == 0) {
    free(p, kind);
    return nullptr;
  }
  if (is_not_a_block(kind)) fatal("realloc of a pointer that bitslab never handed out:", p);
  if (size <= System::threshold()) return resize(p, kind, size);
  if constexpr (System::kServesLarge)
    if (BITSLAB_UNLIKELY(profile::sampling())) return profiled_resize<System>(p, kind, size);
  // Above the threshold the block moves the way malloc would place it: to the System, or in the
  // hardened build to a fresh guarded block (also from a guarded one, so it ends at its guard).
  return move_block(p, kind, size, large_alloc<System>(size, 0));
}

template <class System>
size_t usable_size(void* p) {
  if (p == nullptr) return 0;
  const GranuleKind kind = HeapRange::kind_of(p);
  if (kind == GranuleKind::kNone || is_not_a_block(kind))
    return System::usable_size(p, kind != GranuleKind::kNone);
  return usable_size(p, kind);
}

// A sized delete. The default build frees and ignores the size (the block's real size is in
// our metadata, so a wrong one cannot corrupt the heap); the hardened build (the checked mode)
// aborts when the size could not have made the block, a bug in the program (a delete through a
// base class without a virtual destructor, a wrong array count).
template <class System>
BITSLAB_ALWAYS_INLINE void sized_free(void* p, size_t size, size_t alignment) {
  if constexpr (kHardened) {
    const GranuleKind kind = HeapRange::kind_of(p);
    // The System's blocks and our metadata are left to free<System>.
    if (kind != GranuleKind::kNone && !is_not_a_block(kind) &&
        !size_selects_block(p, kind, size, alignment, System::core_limit()))
      wrong_size_delete(p, size);
  }
  free<System>(p);
}

// Whether the core hands out blocks from where p points.
BITSLAB_ALWAYS_INLINE GranuleKind block_kind(const void* p) {
  const GranuleKind kind = HeapRange::kind_of(p);
  return is_not_a_block(kind) ? GranuleKind::kNone : kind;
}
inline bool owns(const void* p) { return block_kind(p) != GranuleKind::kNone; }

inline size_t page_size() { return os::page_size(); }

}  // namespace bitslab::dispatch
