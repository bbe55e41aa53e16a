// core/base/config.h — every tunable of the allocator and the constants derived from it (L0).
// The OS page size is NOT here: it comes from sysconf at run time (core/os/os.h), and
// bootstrap checks that the slab size is a multiple of it.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/base/bits.h"

// The hardened build (libbitslab-hardened.so; CMake compiles the core twice, the second time
// with -DBITSLAB_HARDENED=1): heap metadata checked and encoded, no block cache, a random free
// block instead of the first, guard pages around large blocks, sized delete checked. See
// core/base/hardening.h. The default build compiles none of it: `if constexpr (kHardened)`.
#ifndef BITSLAB_HARDENED
#define BITSLAB_HARDENED 0
#endif

namespace bitslab {

inline constexpr bool kHardened = BITSLAB_HARDENED != 0;

// Every block is at least this aligned, as glibc guarantees on x86-64 (2 * sizeof(size_t)).
inline constexpr size_t kMinAlign = 16;

// Address space is reserved, and ownership recorded, in granules of this size: "is this pointer
// ours" is one load from a flat map indexed by (address >> kGranuleShift).
inline constexpr unsigned kGranuleShift = 22;  // 4 MiB
inline constexpr size_t kGranuleBytes = size_t{1} << kGranuleShift;
// User-space addresses on x86-64 / aarch64 (4-level paging) stay below 2^47; we never pass an
// mmap hint above it, so the kernel never returns a higher address to us.
inline constexpr unsigned kAddressBits = 47;
inline constexpr size_t kGranuleCount = size_t{1} << (kAddressBits - kGranuleShift);

// Small blocks, 1..kSmallMax bytes, live in slabs of kSlabBytes tracked by a bitmap.
inline constexpr size_t kSmallMax = 1024;
inline constexpr unsigned kSlabShift = 16;  // 64 KiB
inline constexpr size_t kSlabBytes = size_t{1} << kSlabShift;
inline constexpr size_t kMaxSlabBlocks = kSlabBytes / kMinAlign;  // 4096 → 64 bitmap words
inline constexpr size_t kSlabBitmapWords = kMaxSlabBlocks / 64;
// Each thread heap keeps freed small blocks per class in a LIFO array in front of the bitmaps
// (core/thread/thread_heap.h): up to kBlockCacheSlots of them and kBlockCacheBytes at first. A
// run of frees of the thread's own blocks that finds its class's cache full doubles the cache's
// room, up to kBlockCacheMaxSlots blocks, while the heap's kBlockCacheGrowthBytes and the process's
// kBlockCacheGrowthTotalBytes last (tcmalloc's thread caches are bounded alike, by 32 MiB in
// all). A flush (thread exit, trim) starts every cache over and gives the bytes back, and after
// a purge so does the thread's next slow path for each class it no longer allocates. A batch of
// up to 1024 frees then stays in the cache, where its frees and mallocs cost what a pair's do
// (bench_fastpath's batch rows: 85 instructions a pair against 99-116 through the bitmap).
inline constexpr size_t kBlockCacheSlots = 64;
inline constexpr size_t kBlockCacheBytes = 8 * 1024;
inline constexpr size_t kBlockCacheMaxSlots = 1024;
// Frees in a row that find the cache full, with no malloc of the class between them, before it
// grows: a batch's run (its first 16 overflowing frees go to the bitmap, each time it doubles),
// not a live set's churn, which meets a full cache with mallocs in between.
inline constexpr uint32_t kBlockCacheGrowthRun = 16;
inline constexpr size_t kBlockCacheGrowthBytes = 1024 * 1024;
inline constexpr size_t kBlockCacheGrowthTotalBytes = 32 * 1024 * 1024;
static_assert(is_pow2(kSlabBytes), "slab_of(p) masks the address, so slabs are power-of-two aligned");
static_assert(kGranuleBytes % kSlabBytes == 0, "a granule is cut into whole slabs");

// Pool chunks: kSmallMax < size <= kPoolMax, four classes per power of two.
inline constexpr size_t kPoolMax = 256 * 1024;
// A pool region is one granule; its slots start after a header area this large, so a
// power-of-two slot size up to this value is naturally aligned to itself.
inline constexpr size_t kPoolHeaderBytes = 64 * 1024;
static_assert(kPoolMax <= (kGranuleBytes - kPoolHeaderBytes) / 8,
              "every pool region holds at least eight chunks");

// Largest request the core serves; the shim sends larger ones to the system allocator.
inline constexpr size_t kMaxCoreSize = kPoolMax;
// Largest alignment the core can honour by size-class choice (pool slots of 64 KiB).
inline constexpr size_t kMaxCoreAlign = kPoolHeaderBytes;

// Thread cache bounds. A thread's cache of a pool class holds kPoolCacheStartSlots chunks at
// first (fewer if they exceed kPoolCacheBytes; one at least). Each refill of a class used
// before (its cache ran dry: the program swings wider than it) adds room for as many more, up
// to kPoolCacheSlots and kPoolCacheBytes, while the heap's kPoolCacheGrowthBytes last; a flush
// (thread exit, trim) starts over. A class allocated and freed in batches of up to 32 chunks
// then stays in the cache, and a thread spread over many classes holds at most that much more.
// An empty cache is refilled with up to kPoolCacheRefillBytes of chunks under one lock.
inline constexpr unsigned kPoolCacheStartSlots = 8;
inline constexpr unsigned kPoolCacheSlots = 32;
inline constexpr size_t kPoolCacheBytes = 256 * 1024;
inline constexpr size_t kPoolCacheGrowthBytes = 256 * 1024;
inline constexpr size_t kPoolCacheRefillBytes = 128 * 1024;

// CachedPageAllocator's compile-time ceiling (Boost.Lockfree capacity<> must be < 65536), and
// the capacity a new one starts with.
inline constexpr size_t kPageCacheMaxCapacity = 1024;
inline constexpr size_t kPageCacheDefaultCapacity = 128;
// Empty slab pages kept for reuse, up to 64 MiB, in two tiers (CachedPageAllocator): the first
// kSlabPagesKept wait for the purge delay; the rest go back once unused through kSlabBurstMs.
// A producer thread whose blocks a consumer frees empties its slabs in bursts when it applies
// those frees, and takes as many again for its next blocks: with 32 pages and no more,
// bench_producer_consumer gave 37 000 pages back to the OS a run (2.3 GB decommitted and
// faulted in again).
inline constexpr size_t kSlabPageCacheDefault = 1024;
// 2 MiB: a batch of 1600 blocks of 1 KiB (glibc's bench-malloc-simple, bench/batches) spans 25
// slabs, and with 16 kept each round faulted 9 back in (131 ns a malloc+free against 7.6).
inline constexpr size_t kSlabPagesKept = 32;
inline constexpr uint64_t kSlabBurstMs = 10;
// Empty slab pages unused for this long go back to the OS (CachedPageAllocator's purge).
inline constexpr uint64_t kPurgeDelayMsDefault = 500;

// The pools together keep up to this many regions whose chunks are all free, committed, for
// reuse without page faults (64 MiB, glibc's largest trim threshold); the purge gives them back
// once idle through the delay, or when the footprint grows (core/pool/chunk_pool.cc).
inline constexpr int kEmptyRegionBudget = 16;

// A thread heap asks whether the process's purge is due (a clock read) on each slab page it takes
// or gives back, and once per this many refills or spills of its pool caches.
inline constexpr uint32_t kPurgeCheckEvery = 16;

// The smallest OS page supported (the page size itself is read from sysconf, never assumed):
// it sizes SystemPageAllocator's per-granule bitmap, so a granule has at most this many pages.
inline constexpr size_t kMinOsPageBytes = 4096;
inline constexpr size_t kMaxPagesPerGranule = kGranuleBytes / kMinOsPageBytes;

// The heap profiler samples once every this many bytes allocated, on average (BITSLAB_PROFILE_RATE):
// jemalloc's and tcmalloc's default, 512 KiB.
inline constexpr uint64_t kProfileRateDefault = 512 * 1024;
// Room for BITSLAB_PROFILE_PREFIX, copied at start-up.
inline constexpr size_t kProfilePrefixMax = 200;

}  // namespace bitslab
