// core/backend/backend.h — the process-wide allocators that thread heaps draw from (L4).
//
//   page heap            every granule no kind holds (core/backend/page_heap.h)
//     ├ slab pages       a CachedPageAllocator over a SystemPageAllocator of kSlabBytes pages
//     ├ pool set         the pool classes' regions
//     └ metadata pages   thread heaps (core/thread/heap_registry.cc)
//
// Memory flows back on a schedule (BITSLAB_PURGE_DELAY_MS): empty slab pages idle through a
// purge period, and pool chunks available for as long, are decommitted; regions and slab
// granules left wholly free go to the page heap at once; granules free for the delay are
// unmapped. The purge runs on the allocator's slow paths (a new slab page, a slab given back,
// a pool cache refilled or spilled) once the period is up, and, with BITSLAB_BACKGROUND_PURGE=1,
// in a thread of its own.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/backend/page_heap.h"
#include "core/page/cached_page_allocator.h"
#include "core/page/system_page_allocator.h"
#include "core/pool/pool_set.h"

namespace bitslab::backend {

// Valid once process_init() (core/thread/bootstrap.h) has run.
PageHeap& page_heap();
CachedPageAllocator& slab_pages();
SystemPageAllocator& slab_system_pages();
PoolSet& pools();

// Builds the objects above: the slab page cache keeps up to cache_pages empty pages, and what
// stays free for purge_delay_ms goes back; called once, by bootstrap.
void init(size_t cache_pages, uint64_t purge_delay_ms);

// The purge, if its period is up (a coarse clock read when it is not). Called on slow paths;
// may_start_thread: this call may start the background purge thread again (after a fork), which
// allocates, so only on paths where a nested malloc is safe.
void purge_if_due(bool may_start_thread = false);
// Everything back now, whatever the delay: the slab page cache emptied, every available pool
// chunk decommitted and the empty regions given back, every free granule unmapped (and the
// hardened build's freed large ranges), the system allocator trimmed. Returns the
// bytes decommitted or unmapped. For malloc_trim, and before an allocation that failed is
// retried.
size_t reclaim();

// How many purges have run (regular, growth, reclaim): a thread heap that sees it move gives
// back the room its block caches grew by in classes it no longer allocates
// (ThreadHeap::shrink_idle_block_caches). One relaxed load.
uint32_t purge_epoch();

// BITSLAB_BACKGROUND_PURGE=1: a thread that runs the purge every half delay, so that an idle
// program's memory goes back too. Started by bootstrap; after a fork, again in the child.
void start_background_purge();
void after_fork_in_child();

// The system allocator (glibc, which serves the blocks above the core's classes) keeps what it
// is given back in a heap of its own: pages in the same RSS that serve none of our requests.
// `trim` gives them to the OS when blocks went back to it since the last call; every purge
// (regular, growth, reclaim) calls it, after ours. Registered by the shim at load time.
void set_system_trim(void (*trim)());

// The thread heaps of exited threads (parked, core/thread/heap_registry.h) may hold empty slabs
// that no purge here can reach. `flush` (may be nullptr) gives back those of heaps parked for
// at least idle_ns; each purge calls it first, with the purge delay (0 for reclaim: every
// parked heap), so that what reclaim frees goes in the same call. `wait` (reclaim only): it
// may wait for the lock it takes; a timed purge may run inside a flush that holds it.
// Registered once by bootstrap.
void set_parked_heaps_flush(void (*flush)(uint64_t now_ns, uint64_t idle_ns, bool wait));

}  // namespace bitslab::backend
