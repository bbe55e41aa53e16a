// core/os/heap_range.h — the address space that is ours (L1).
//
// Every block the core hands out lies in a granule (4 MiB, aligned) that this file reserved.
// A flat map with one byte per granule of the 47-bit address space (32 MiB of .bss, of which
// only the pages covering our granules are ever touched: one 4 KiB page of map covers 16 GiB)
// records which granules are ours and what they hold, so "is this pointer ours?" is a shift
// and one byte load, and can never fault — even for a pointer glibc made before we were loaded.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/base/config.h"
#include "core/base/spin_lock.h"

namespace bitslab {

// What a granule holds; the meaning of each kind belongs to the layer that claimed it.
enum class GranuleKind : uint8_t {
  kNone = 0,   // not ours (or a pointer outside the mapped range)
  kSlabs = 1,  // 64 KiB slab pages (small size classes), from SystemPageAllocator
  kPool = 2,   // one pool region (core/pool)
  kPages = 3,  // raw pages: metadata, page allocators used directly by library users
  kLarge = 4,      // the first granule of a guarded large block (core/large; hardened build)
  kLargeTail = 5,  // the further granules of one
};

class HeapRange {
 public:
  // Claims `count` contiguous granules for `kind`. Reserves more address space when needed, in
  // steps of kReserveStepBytes halving down to the request on failure. nullptr + ENOMEM when
  // the kernel refuses even that.
  static void* claim(size_t count, GranuleKind kind) { return claim(count, kind, kind); }
  // The same, with the first granule marked `first` and the others `rest`, so that the start
  // of a multi-granule object can be found from any address in it.
  static void* claim(size_t count, GranuleKind first, GranuleKind rest);

  static GranuleKind kind_of(const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if ((a >> kAddressBits) != 0) return GranuleKind::kNone;  // not a user address we map
    return static_cast<GranuleKind>(__atomic_load_n(&map_[a >> kGranuleShift], __ATOMIC_ACQUIRE));
  }
  static bool contains(const void* p) { return kind_of(p) != GranuleKind::kNone; }

  // Bytes of address space reserved so far (statistics).
  static size_t reserved_bytes();

  // The claim lock; taken around fork() by core/thread/fork.cc.
  static SpinLock& fork_lock();

 private:
  static void mark(uintptr_t start, size_t count, GranuleKind kind);
  static uint8_t map_[kGranuleCount];
};

}  // namespace bitslab
