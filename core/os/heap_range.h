// core/os/heap_range.h — the address space that is ours (L1).
//
// Every block the core hands out lies in a granule (4 MiB, aligned) that this file mapped. A
// flat map with one byte per granule of the 47-bit address space (32 MiB of .bss, of which only
// the pages covering our granules are ever touched: one 4 KiB page of map covers 16 GiB)
// records which granules are ours and what they hold, so "is this pointer ours?" is a shift and
// one byte load, and can never fault — even for a pointer glibc made before we were loaded.
//
// Address space is mapped as it is needed, one claim at a time (no reservation up front), and
// unmapped when the page heap (core/backend/page_heap.h) finds a granule left free.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/base/compiler.h"
#include "core/base/config.h"

namespace bitslab {

// What a granule holds; the meaning of each kind belongs to the layer that claimed it.
enum class GranuleKind : uint8_t {
  kNone = 0,       // not ours (or a pointer outside the mapped range)
  kSlabs = 1,      // 64 KiB slab pages (small size classes), from SystemPageAllocator
  kPool = 2,       // one pool region (core/pool)
  kPages = 3,      // raw pages: metadata, page allocators used directly by library users
  kLarge = 4,      // the first granule of a guarded large block (core/large; hardened build)
  kLargeTail = 5,  // the further granules of one
  kFree = 6,       // mapped and ours, but held by no kind: in the page heap, waiting for reuse
};

class HeapRange {
 public:
  // Maps `count` fresh contiguous granules (zero-filled), the first marked `first` and the
  // others `rest`, so that the start of a multi-granule object can be found from any address
  // in it. nullptr + ENOMEM when the kernel refuses (e.g. under `ulimit -v`).
  static void* claim(size_t count, GranuleKind first, GranuleKind rest);
  static void* claim(size_t count, GranuleKind kind) { return claim(count, kind, kind); }
  // Re-marks granules that are ours (the page heap hands a free granule to another kind).
  static void mark(void* start, size_t count, GranuleKind first, GranuleKind rest);
  // Unmaps granules claimed here: their map entries say kNone first, then the memory goes.
  static void release(void* start, size_t count);

  static GranuleKind kind_of(const void* p) {
    // The granule's index, tested against the map's size: a pointer past kAddressBits is no
    // user address we map. (One shift serves both: a test of a >> kAddressBits took one more.)
    const uintptr_t granule = reinterpret_cast<uintptr_t>(p) >> kGranuleShift;
    if (BITSLAB_UNLIKELY(granule >= kGranuleCount)) return GranuleKind::kNone;  // (no user address)
    return static_cast<GranuleKind>(__atomic_load_n(&map_[granule], __ATOMIC_ACQUIRE));
  }
  static bool contains(const void* p) { return kind_of(p) != GranuleKind::kNone; }

  // Bytes of address space mapped now, and unmapped again in all (statistics).
  static size_t mapped_bytes() { return mapped_.load(std::memory_order_relaxed); }
  static size_t unmapped_bytes() { return unmapped_.load(std::memory_order_relaxed); }

 private:
  static void set(uintptr_t start, size_t count, GranuleKind kind);
  static uint8_t map_[kGranuleCount];
  static std::atomic<size_t> mapped_;
  static std::atomic<size_t> unmapped_;
};

// Where a kind gets its granules and gives them back: HeapRange itself (DirectGranules, for a
// page allocator or pool set of a library user's own), or the process's page heap, which keeps
// freed granules for reuse by any kind and unmaps them on a schedule (core/backend/page_heap.h).
class GranuleSource {
 public:
  // `count` contiguous zero-filled granules marked as HeapRange::claim marks them, or nullptr
  // + ENOMEM.
  virtual void* take(size_t count, GranuleKind first, GranuleKind rest) = 0;
  void* take(size_t count, GranuleKind kind) { return take(count, kind, kind); }
  // Granules taken from this source and no longer used; their contents are dead.
  virtual void give(void* start, size_t count) = 0;

 protected:
  ~GranuleSource() = default;
};

class DirectGranules final : public GranuleSource {
 public:
  static DirectGranules& instance();
  void* take(size_t count, GranuleKind first, GranuleKind rest) override {
    return HeapRange::claim(count, first, rest);
  }
  void give(void* start, size_t count) override { HeapRange::release(start, count); }
};

}  // namespace bitslab
