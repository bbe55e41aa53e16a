// toolkit/slab_arena.h — Arena<Backend, Count, Sizes...>: a lock-free slab arena of
// sizeof...(Sizes) pools, each of Count chunks of one size, in one backend mapping
// (LocalMem: this process only; ShmMem: shared by name between processes).
//
//   LocalMem::Allocator<128, 64, 256, 1024> arena;          // 3 pools of 128 chunks
//   ShmMem::Allocator<128, 64, 256, 1024> shared("/name");  // the same, attachable by name
//   void* p = arena.allocate(48);     // the 64 B pool; the 256 B one if that is full, ...
//   void* q = arena.tryAllocate(48);  // the 64 B pool or nothing
//   arena.deallocate(p);
//
// Allocation
//   allocate(n) takes a chunk from the smallest pool whose size is >= n and, when that pool
//   is exhausted, from the next larger one, and so on (promotion). tryAllocate(n) tries the
//   smallest fitting pool only. Both return nullptr when nothing fits: every candidate pool
//   is full, or n is larger than the largest size. n == 0 is served as n == 1 (a unique chunk
//   of the smallest pool, to be deallocated like any other), as malloc(0) is: nullptr always
//   means "no room", never "you asked for nothing".
//   deallocate(p) finds the owning pool by address (one range test per pool); nullptr is a
//   no-op. Everything in these three calls is lock-free (CAS loops, no lock, no malloc, no
//   system call), and safe from any thread of any process that has the arena mapped.
//
// Differences from the seed (join's BasicArena)
//   * A pointer the arena did not hand out aborts with one line on stderr naming it, where
//     the seed ignores it silently: a pointer not from this arena, a pointer into a pool that
//     is not the start of a chunk, a double free (or a free of a chunk never handed out).
//     A free list damaged by a write after free is detected too, when the chunk comes back
//     out. Each pool keeps one "allocated" bit per chunk (set and cleared by atomic
//     fetch_or / fetch_and) for this.
//   * Chunks are carved lazily (below), so formatting is O(pools), not O(chunks).
//   * A shared segment remembers the layout it was made for; attaching it as another arena
//     type throws (toolkit/shm_mem.h) where the seed documents no such check.
//   * Count may be at most UINT32_MAX - 1 (the seed says UINT32_MAX): one index value,
//     UINT32_MAX, marks the end of a free list.
//   * Queries the seed lacks: chunkSizeOf(p), owns(p), allocatedChunks(pool), and
//     offsetOf(p) / atOffset(offset) to pass chunks between processes.
//
// Layout of the segment (offsets from the backend's page-aligned base; S = the pool's size)
//   for each pool, in ascending size order:
//     metadata, cache-line aligned:
//       line 0   head    uint64: tag (high 32 bits) | index of the first free chunk (low 32)
//       line 1   carved  uint64: chunks handed out from the never-used tail so far (0..Count)
//       line 2.. bitmap  ceil(Count / 64) uint64 words, bit i set = chunk i is allocated
//     padding up to align(S)
//     chunks: Count * S bytes; chunk i at chunks + i * S. A free chunk's first 4 bytes hold
//       the index of the next free chunk (UINT32_MAX ends the list).
//   head and carved have a cache line each: every allocation and free writes head, and
//   carved is written while the pool is young; neither should bounce the other's line.
//
// Footprint (Arena::kBytes, computed at compile time and handed to the backend)
//   meta      = 128 + align_up(8 * ceil(Count / 64), 64)
//   align(S)  = max(64, min(S, 4096))
//   pool i:     meta_i   = align_up(end_{i-1}, 64)          (end_{-1} = 0)
//               chunks_i = align_up(meta_i + meta, align(S_i))
//               end_i    = chunks_i + Count * S_i
//   kBytes    = align_up(end_last, 64)
//   e.g. Count = 128, Sizes = 64, 256, 1024: 173056 bytes for 172032 of chunks (0.6 % over).
//   ShmMem adds a 64-byte control trailer (toolkit/shm_mem.h).
//
// Alignment guarantee: every chunk is aligned to min(S, 4096): the base is page-aligned (every
// Linux page size is a multiple of 4096) and chunks_i is a multiple of align(S_i). A size
// above 4096 gets page alignment (4096), not its own.
//
// Free lists: a Treiber stack of chunk indices. Indices, not pointers: they mean the same in
// every process, whatever address the segment is mapped at. The head packs the top index
// with a 32-bit tag that every push and pop increments, in one 64-bit word updated by
// compare-and-swap: a pop that read a stale "next" (the chunk was taken, and maybe freed
// again, meanwhile) sees a different tag and retries, instead of corrupting the list (ABA). A stall across exactly
// 2^32 operations on one pool would defeat it. That stale read of a link may race with the
// new owner's writes to the chunk's first 4 bytes: benign (the CAS discards the value), but
// ThreadSanitizer may report it, as for any Treiber stack.
//
// Lazy carving: a fresh pool's free list is empty and `carved` is 0; when the list is empty,
// allocate takes chunk `carved` and increments it (CAS, never past Count). Why not link every
// chunk into the free list at format time: formatting would write every chunk (Count * pools
// cache misses; for chunks of a page or more, every page committed), and a process attaching a
// shared segment would wait for all of it. Lazily, an arena costs the memory it has used, and
// formatting writes a few cache lines per pool.
#pragma once
#include <array>
#include <atomic>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include "core/base/bits.h"
#include "core/base/compiler.h"
#include "core/base/fatal.h"
#include "toolkit/local_mem.h"
#include "toolkit/mem_backend.h"
#include "toolkit/shm_mem.h"

namespace bitslab {

namespace slab {

inline constexpr size_t kCacheLine = 64;
// The alignment chunks are given, at most: the smallest page size Linux uses, so that a
// base aligned to the run-time page size is always aligned to it.
inline constexpr size_t kLayoutPage = 4096;
// A pool's metadata: head line, carved line, bitmap (whole cache lines).
constexpr size_t metaBytes(size_t count) {
  return 2 * kCacheLine + align_up((count + 63) / 64 * 8, kCacheLine);
}
constexpr size_t chunkAlignment(size_t size) { return size < kLayoutPage ? size : kLayoutPage; }
// Where a pool's chunks start: aligned to the chunk alignment, and never sharing a cache line
// with the metadata.
constexpr size_t chunkAreaAlignment(size_t size) {
  return chunkAlignment(size) > kCacheLine ? chunkAlignment(size) : kCacheLine;
}
// The largest pool (Count * Size) accepted at compile time. With at most 64 pools it keeps
// every offset and the footprint far from overflowing size_t; whether the address space and
// memory can hold the arena is for mmap to say at run time (std::system_error, ENOMEM).
inline constexpr size_t kMaxPoolBytes = size_t{1} << 44;

// The compile-time checks of an arena's parameters, one flag per rule, so that a test can
// ask about a layout without instantiating (and failing to compile) the arena.
template <size_t Count, size_t... Sizes>
struct Layout {
  static constexpr bool kHasSizes = sizeof...(Sizes) > 0;
  static constexpr bool kPowersOfTwo = (is_pow2(Sizes) && ...);
  static constexpr bool kAtLeast8 = ((Sizes >= 8) && ...);
  static constexpr bool kMaxAligned = ((Sizes % alignof(std::max_align_t) == 0) && ...);
  static constexpr bool kAscending = [] {
    constexpr std::array<size_t, sizeof...(Sizes)> sizes{Sizes...};
    for (size_t i = 1; i < sizes.size(); ++i)
      if (sizes[i] <= sizes[i - 1]) return false;
    return true;
  }();
  static constexpr bool kCountInRange = Count >= 1 && Count <= UINT32_MAX - 1;
  static constexpr bool kFitsAddressSpace =
      ((Sizes != 0 && Count <= kMaxPoolBytes / Sizes) && ...) && sizeof...(Sizes) <= 64;
  static constexpr bool kValid =
      kHasSizes && kPowersOfTwo && kAtLeast8 && kMaxAligned && kAscending && kCountInRange && kFitsAddressSpace;
};

// Bumped whenever the segment layout changes, so that an old shared segment is refused.
inline constexpr uint64_t kFormatVersion = 1;

static_assert(std::atomic_ref<uint64_t>::is_always_lock_free &&
                  std::atomic_ref<uint32_t>::is_always_lock_free,
              "the arena's atomics are shared between processes: they must be lock-free (address-free)");

}  // namespace slab

// One pool: Count chunks of Size bytes, a view over its metadata and chunk area in the
// segment (layout above). Copying the view copies two pointers; the state is in the segment.
template <size_t Count, size_t Size>
class SlabPool {
  static_assert(is_pow2(Size) && Size >= 8 && Size % alignof(std::max_align_t) == 0,
                "bitslab::SlabPool: Size must be a power of two, >= 8 and a multiple of alignof(std::max_align_t)");
  static_assert(Count >= 1 && Count <= UINT32_MAX - 1, "bitslab::SlabPool: Count must be in [1, UINT32_MAX - 1]");

 public:
  static constexpr size_t kChunkBytes = Count * Size;
  static constexpr size_t kMetaBytes = slab::metaBytes(Count);

  SlabPool(std::byte* meta, std::byte* chunks) noexcept : meta_(meta), chunks_(chunks) {}

  // The initial state: empty free list, nothing carved, nothing allocated. Runs once per
  // segment, before any other handle can see it.
  static void format(std::byte* meta) noexcept {
    std::memset(meta, 0, kMetaBytes);
    *reinterpret_cast<uint64_t*>(meta + kHeadOffset) = pack(kNil, 0);
  }

  void* allocate() noexcept {
    for (;;) {
      uint64_t old = head().load(std::memory_order_acquire);
      while (indexOf(old) != kNil) {
        const uint32_t top = indexOf(old);
        // A head past Count can only come from a segment another process damaged.
        if (BITSLAB_UNLIKELY(top >= Count)) fatal("slab arena: corrupt pool head at", meta_);
        // May be stale (another thread popped `top` and its owner wrote over the link): the
        // CAS fails then, because that pop changed the tag. Acquire on both outcomes: the
        // next round reads the link of the chunk in the new head.
        const uint32_t next = link(top).load(std::memory_order_relaxed);
        if (BITSLAB_UNLIKELY(next != kNil && next >= Count)) {
          // Checked before the CAS, so a bad link never becomes the shared head (other
          // processes would follow it unchecked). If the head has not moved, the link is what
          // the freeing thread left, overwritten since: a write after free. If it has moved,
          // the read was stale; retry.
          if (head().load(std::memory_order_acquire) == old)
            fatal("slab arena: corrupt free list (write after free?) in chunk", chunkAt(top));
          old = head().load(std::memory_order_acquire);
          continue;
        }
        if (head().compare_exchange_weak(old, pack(next, tagOf(old) + 1), std::memory_order_acquire,
                                         std::memory_order_acquire))
          return claim(top);
      }
      uint64_t carved = carvedCount().load(std::memory_order_relaxed);
      while (carved < Count) {
        // Relaxed: a never-used chunk carries no data from another thread.
        if (carvedCount().compare_exchange_weak(carved, carved + 1, std::memory_order_relaxed,
                                                std::memory_order_relaxed))
          return claim(static_cast<uint32_t>(carved));
      }
      // All carved and the list was empty when we looked. Give up only if it still is: a
      // chunk freed in between must not be missed (so nullptr means "full at some instant").
      if (indexOf(head().load(std::memory_order_acquire)) == kNil) return nullptr;
    }
  }

  // Whether p lies in this pool's chunk area (one unsigned comparison).
  bool contains(const void* p) const noexcept {
    return reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(chunks_) < kChunkBytes;
  }

  // p must be contained (the arena checked). Aborts on an interior pointer or a chunk that is
  // not allocated.
  void deallocate(void* p) noexcept {
    const size_t offset = reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(chunks_);
    if (BITSLAB_UNLIKELY((offset & (Size - 1)) != 0))
      fatal("slab arena: deallocate of a pointer inside a chunk, not its start:", p);
    const auto index = static_cast<uint32_t>(offset >> kShift);
    const uint64_t bit = uint64_t{1} << (index & 63);
    // Clearing the bit first makes a racing second free of the same chunk see it clear and
    // abort, rather than push the chunk twice. Relaxed: the bitmap word's own modification
    // order is all this needs; the data handoff is ordered by the free list's release/acquire.
    if (BITSLAB_UNLIKELY((bitmapWord(index >> 6).fetch_and(~bit, std::memory_order_relaxed) & bit) == 0))
      fatal("slab arena: double free (the chunk is not allocated):", p);
    uint64_t old = head().load(std::memory_order_relaxed);
    for (;;) {
      link(index).store(indexOf(old), std::memory_order_relaxed);
      // Release: the link and everything the caller wrote to the chunk are visible to whoever
      // pops it.
      if (head().compare_exchange_weak(old, pack(index, tagOf(old) + 1), std::memory_order_release,
                                       std::memory_order_relaxed))
        return;
    }
  }

  // Chunks allocated now (a snapshot: exact when no other thread is allocating or freeing).
  size_t allocatedCount() const noexcept {
    size_t n = 0;
    for (size_t w = 0; w < kBitmapWords; ++w) n += std::popcount(bitmapWord(w).load(std::memory_order_relaxed));
    return n;
  }

 private:
  static constexpr uint32_t kNil = UINT32_MAX;
  static constexpr unsigned kShift = log2_floor(Size);
  static constexpr size_t kBitmapWords = (Count + 63) / 64;
  static constexpr size_t kHeadOffset = 0;
  static constexpr size_t kCarvedOffset = slab::kCacheLine;
  static constexpr size_t kBitmapOffset = 2 * slab::kCacheLine;

  static constexpr uint64_t pack(uint32_t index, uint32_t tag) { return uint64_t{tag} << 32 | index; }
  static constexpr uint32_t indexOf(uint64_t head) { return static_cast<uint32_t>(head); }
  static constexpr uint32_t tagOf(uint64_t head) { return static_cast<uint32_t>(head >> 32); }

  std::atomic_ref<uint64_t> word(size_t offset) const noexcept {
    return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(meta_ + offset));
  }
  std::atomic_ref<uint64_t> head() const noexcept { return word(kHeadOffset); }
  std::atomic_ref<uint64_t> carvedCount() const noexcept { return word(kCarvedOffset); }
  std::atomic_ref<uint64_t> bitmapWord(size_t w) const noexcept { return word(kBitmapOffset + 8 * w); }
  std::byte* chunkAt(uint32_t index) const noexcept { return chunks_ + (size_t{index} << kShift); }
  // Atomic because a popping thread may read it while the chunk's new owner writes there
  // (the stale read the CAS then rejects).
  std::atomic_ref<uint32_t> link(uint32_t index) const noexcept {
    return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(chunkAt(index)));
  }

  // Marks a chunk just taken from the list or the tail as allocated. Already marked means
  // the list handed out an allocated chunk: its link was overwritten after it was freed.
  void* claim(uint32_t index) noexcept {
    const uint64_t bit = uint64_t{1} << (index & 63);
    if (BITSLAB_UNLIKELY((bitmapWord(index >> 6).fetch_or(bit, std::memory_order_relaxed) & bit) != 0))
      fatal("slab arena: corrupt free list (an allocated chunk was on it; write after free?):", chunkAt(index));
    return chunkAt(index);
  }

  std::byte* meta_;
  std::byte* chunks_;
};

template <class Backend, size_t Count, size_t... Sizes>
class Arena {
  using Checks = slab::Layout<Count, Sizes...>;
  static_assert(Checks::kHasSizes, "bitslab::Arena: give at least one chunk size");
  static_assert(Checks::kPowersOfTwo, "bitslab::Arena: every chunk size must be a power of two");
  static_assert(Checks::kAtLeast8, "bitslab::Arena: every chunk size must be >= 8 (a free chunk holds a link)");
  static_assert(Checks::kMaxAligned,
                "bitslab::Arena: every chunk size must be a multiple of alignof(std::max_align_t)");
  static_assert(Checks::kAscending, "bitslab::Arena: chunk sizes must be strictly ascending");
  static_assert(Checks::kCountInRange,
                "bitslab::Arena: Count must be >= 1 and <= UINT32_MAX - 1 (chunk indices are 32-bit)");
  static_assert(Checks::kFitsAddressSpace,
                "bitslab::Arena: at most 64 pools, each at most 2^44 bytes (Count * Size)");

 public:
  static constexpr size_t kPoolCount = sizeof...(Sizes);
  static constexpr size_t kChunksPerPool = Count;
  static constexpr std::array<size_t, kPoolCount> kSizes{Sizes...};
  static constexpr size_t kMaxSize = [] {
    size_t largest = 0;  // (0 only for an empty Sizes, which the static_assert above rejects)
    for (size_t size : kSizes) largest = size > largest ? size : largest;
    return largest;
  }();

 private:
  struct Place {
    size_t meta;    // offset of the pool's metadata
    size_t chunks;  // offset of its first chunk
  };
  struct Geometry {
    std::array<Place, kPoolCount> places;
    size_t end;  // just past the last pool's chunks
  };
  static constexpr Geometry kGeometry = [] {
    Geometry g{};
    for (size_t i = 0; i < kPoolCount; ++i) {
      g.places[i].meta = align_up(g.end, slab::kCacheLine);
      g.places[i].chunks =
          align_up(g.places[i].meta + slab::metaBytes(Count), slab::chunkAreaAlignment(kSizes[i]));
      g.end = g.places[i].chunks + Count * kSizes[i];
    }
    return g;
  }();
  static constexpr const std::array<Place, kPoolCount>& kPlaces = kGeometry.places;

 public:
  // The segment's size: see "Footprint" at the top of this file.
  static constexpr size_t kBytes = align_up(kGeometry.end, slab::kCacheLine);
  // FNV-1a of the format version, Count and Sizes: what a shared segment must match.
  static constexpr uint64_t kLayoutId = [] {
    uint64_t h = 0xcbf29ce484222325ull;
    const auto mix = [&h](uint64_t v) {
      for (int i = 0; i < 8; ++i) h = (h ^ ((v >> (8 * i)) & 0xff)) * 0x100000001b3ull;
    };
    mix(slab::kFormatVersion);
    mix(Count);
    (mix(Sizes), ...);
    return h;
  }();
  // Returned by offsetOf for a pointer outside the segment.
  static constexpr size_t kNoOffset = SIZE_MAX;

  static constexpr size_t chunkSize(size_t pool) noexcept { return kSizes[pool]; }
  // What every chunk of the pool is aligned to: min(size, 4096).
  static constexpr size_t chunkAlignment(size_t pool) noexcept { return slab::chunkAlignment(kSizes[pool]); }

  // The backend's arguments (none for LocalMem; the name, and optionally ShmOptions, for
  // ShmMem). Throws what the backend throws (std::system_error).
  template <class... Args>
    requires std::constructible_from<Backend, Args..., const SegmentSpec&>
  explicit Arena(Args&&... args) : backend_(std::forward<Args>(args)..., kSpec) {}

  // Move-only. A moved-from arena owns nothing: allocate/tryAllocate return nullptr,
  // deallocate of a non-null pointer aborts (it is not from this arena), mbind/mlock fail
  // with EINVAL, and its destructor does nothing.
  Arena(Arena&&) noexcept = default;
  Arena& operator=(Arena&&) noexcept = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena() = default;

  // A chunk of at least n bytes, from the smallest fitting pool or a larger one (promotion);
  // nullptr if every candidate is full or n > kMaxSize. n == 0 counts as 1.
  void* allocate(size_t n) noexcept { return take(n, true, std::make_index_sequence<kPoolCount>{}); }

  // The same from the smallest fitting pool only: nullptr when it is full, even if a larger
  // pool has room.
  void* tryAllocate(size_t n) noexcept { return take(n, false, std::make_index_sequence<kPoolCount>{}); }

  // Returns p's chunk to its pool. nullptr: no-op. Aborts (bitslab::fatal, one line naming p)
  // on a pointer not from this arena, a pointer inside a chunk, or a chunk not allocated.
  void deallocate(void* p) noexcept {
    if (p == nullptr) return;
    std::byte* base = segment();
    if (BITSLAB_LIKELY(base != nullptr) && give(base, p, std::make_index_sequence<kPoolCount>{})) return;
    rejectFree(base, p);
  }

  int mbind(int numa_node) const noexcept { return backend_.mbind(numa_node); }
  int mlock() const noexcept { return backend_.mlock(); }

  // Whether p points into one of this arena's chunks (start or not, allocated or not).
  bool owns(const void* p) const noexcept { return chunkSizeOf(p) != 0; }
  // The chunk size of the pool p points into; 0 if none (like malloc_usable_size, for a chunk).
  size_t chunkSizeOf(const void* p) const noexcept {
    std::byte* base = segment();
    return base == nullptr ? 0 : sizeIn(base, p, std::make_index_sequence<kPoolCount>{});
  }
  // Chunks allocated in pool `pool` now (a snapshot; 0 for a pool index out of range).
  size_t allocatedChunks(size_t pool) const noexcept {
    std::byte* base = segment();
    return base == nullptr ? 0 : countIn(base, pool, std::make_index_sequence<kPoolCount>{});
  }

  // Pointers mean nothing in another process (the segment is mapped elsewhere there);
  // offsets from the segment's base do. offsetOf: kNoOffset outside the segment.
  size_t offsetOf(const void* p) const noexcept {
    const auto base = reinterpret_cast<uintptr_t>(segment());
    const size_t offset = reinterpret_cast<uintptr_t>(p) - base;
    return base != 0 && offset < kBytes ? offset : kNoOffset;
  }
  // nullptr for an offset outside the segment.
  void* atOffset(size_t offset) const noexcept {
    std::byte* base = segment();
    return base != nullptr && offset < kBytes ? base + offset : nullptr;
  }

  const Backend& backend() const noexcept { return backend_; }

 private:
  // SegmentSpec::format: each pool's initial state, in memory nobody else sees yet.
  static void format(void* base) noexcept {
    [&]<size_t... I>(std::index_sequence<I...>) {
      (SlabPool<Count, kSizes[I]>::format(static_cast<std::byte*>(base) + kPlaces[I].meta), ...);
    }(std::make_index_sequence<kPoolCount>{});
  }
  static constexpr SegmentSpec kSpec{kBytes, kLayoutId, &Arena::format};

  std::byte* segment() const noexcept { return static_cast<std::byte*>(backend_.data()); }

  template <size_t I>
  static SlabPool<Count, kSizes[I]> pool(std::byte* base) noexcept {
    return SlabPool<Count, kSizes[I]>(base + kPlaces[I].meta, base + kPlaces[I].chunks);
  }

  // Pools in ascending size: the first whose size fits is the exact fit; with promotion the
  // scan goes on while pools are full, without it stops there.
  template <size_t... I>
  void* take(size_t n, bool promote, std::index_sequence<I...>) noexcept {
    std::byte* base = segment();
    if (BITSLAB_UNLIKELY(base == nullptr)) return nullptr;
    if (n == 0) n = 1;
    void* chunk = nullptr;
    (void)((n <= kSizes[I] && ((chunk = pool<I>(base).allocate()) != nullptr || !promote)) || ...);
    return chunk;
  }

  template <size_t... I>
  static bool give(std::byte* base, void* p, std::index_sequence<I...>) noexcept {
    return ((pool<I>(base).contains(p) && (pool<I>(base).deallocate(p), true)) || ...);
  }

  template <size_t... I>
  static size_t sizeIn(std::byte* base, const void* p, std::index_sequence<I...>) noexcept {
    size_t size = 0;
    (void)((pool<I>(base).contains(p) && (size = kSizes[I], true)) || ...);
    return size;
  }

  template <size_t... I>
  static size_t countIn(std::byte* base, size_t which, std::index_sequence<I...>) noexcept {
    size_t n = 0;
    (void)((which == I && (n = pool<I>(base).allocatedCount(), true)) || ...);
    return n;
  }

  // In no pool's chunk area: a foreign pointer, or one into the metadata or padding.
  [[noreturn]] BITSLAB_COLD static void rejectFree(std::byte* base, void* p) noexcept {
    const uintptr_t offset = reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(base);
    if (base != nullptr && offset < kBytes)
      fatal("slab arena: deallocate of a pointer into the arena's metadata, not a chunk:", p);
    fatal("slab arena: deallocate of a pointer not from this arena:", p);
  }

  Backend backend_;
};

}  // namespace bitslab
