// core/api/stats.h — the process's allocation statistics, gathered and printed (L6):
// BITSLAB_SHOW_STATS at exit, malloc_stats() on demand, mallinfo2() and bitslab::stats().
//
// Per class: allocations and frees (counted by each thread heap on its fast paths, one add
// each; a free from another thread counts once it is applied, or as in flight before that),
// live blocks (the census: exact), and peak live blocks. The peak is sampled, not tracked on
// every call: each heap records its allocs - frees at every refill of the class (so it can
// miss up to one slab word plus the block cache, 64 + 64 blocks, per thread), and the report
// sums the heaps' peaks and never shows less than the live count.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/pool/pool_classes.h"
#include "core/small/size_classes.h"

namespace bitslab {

struct ClassStats {
  size_t block_bytes;
  uint64_t allocs, frees, live, peak;
  uint64_t held;  // blocks the class's slabs (pool: carved chunks of its regions) hold, live or free
};

// Everything bitslab::stats(), mallinfo2(), malloc_stats() and the exit report show; one collector
// fills it for all of them.
struct ProcessStats {
  // By class (StatsDetail::kByClass only; zero otherwise).
  ClassStats small[kSmallClassCount];
  ClassStats pool[kPoolClassCount];
  uint64_t live_bytes;       // what the live blocks occupy (class sizes)
  // Totals.
  uint64_t large_blocks, large_bytes;  // guarded large blocks (hardened build)
  uint64_t slab_pages_in_use;          // 64 KiB slab pages held by thread heaps
  uint64_t pool_regions, pool_chunks_carved;
  uint64_t heaps, heaps_in_use;        // thread heaps ever made; those a running thread owns
  // The slab page cache (a CachedPageAllocator): pages served from it of pages asked for.
  uint64_t page_cache_hits, page_cache_calls, page_cache_pages, page_cache_capacity, pages_purged;
  uint64_t reserved_bytes;   // address space mapped now (claimed, not yet unmapped)
  uint64_t committed_bytes;  // an estimate of what is in memory: slab pages held (in use or
                             // cached), pool slots ever handed out less what purges decommitted
  uint64_t returned_bytes;   // decommitted back to the OS, in all
  uint64_t unmapped_bytes;   // address space unmapped again, in all
  // The page heap: granule requests, how many it served from its free granules, how many it
  // keeps now.
  uint64_t page_heap_takes, page_heap_hits, page_heap_free_granules;
  // Requests above the large threshold: to the system allocator (hardened: to guarded blocks).
  uint64_t system_requests, system_bytes;
};

// kTotals: the counters only (cheap; bitslab::stats()). kByClass: also every class's counts and
// live blocks, from a walk over the heaps and slab pages (the census).
enum class StatsDetail { kTotals, kByClass };
ProcessStats collect_stats(StatsDetail detail);
// Aligned text, one write per line; or one JSON object (json) on one line.
void print_stats(int fd, bool json);

// The shim's count of requests it sends to the system allocator (too large for the core).
namespace detail {
extern std::atomic<uint64_t> g_system_requests;
extern std::atomic<uint64_t> g_system_bytes;
}
inline void note_system_request(size_t size) {
  detail::g_system_requests.fetch_add(1, std::memory_order_relaxed);
  detail::g_system_bytes.fetch_add(size, std::memory_order_relaxed);
}

}  // namespace bitslab
