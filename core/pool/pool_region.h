// core/pool/pool_region.h — one granule of chunks of one pool class (L3b).
//
//   [ PoolRegion header + bitmap (1 = free) ... kPoolHeaderBytes ][ slot 0 ][ slot 1 ] ...
//   ^ granule-aligned: region_of(p) is p with the low 22 bits cleared
//
// Slots are handed out front to back (`carved` counts them), so untouched slots cost no
// physical memory. The bitmap is shared by all threads and changed with atomic operations: a
// slot's bit is 1 while the slot is free (on a pool free list or in a thread's cache), so a
// second free of the same chunk finds its bit already set.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/base/bits.h"
#include "core/base/config.h"
#include "core/base/hardening.h"

namespace bitslab {

struct PoolRegion {
  static constexpr uint32_t kLiveMagic = 0x9001ab5a;
  static constexpr size_t kMaxSlots = (kGranuleBytes - kPoolHeaderBytes) / (kSmallMax + 256);
  static constexpr uint32_t kNoSlot = ~uint32_t{0};

  uint32_t magic;
  uint32_t size_class;
  uint32_t slot_bytes;
  uint32_t slot_count;
  std::atomic<uint32_t> carved;  // slots [0, carved) have been handed out at least once
  PoolRegion* next_region;       // the pool's regions, newest first (statistics, tests)
  std::atomic<uint64_t> free_bits[(kMaxSlots + 63) / 64];

  static PoolRegion* of(const void* p) {
    return reinterpret_cast<PoolRegion*>(reinterpret_cast<uintptr_t>(p) & ~(kGranuleBytes - 1));
  }
  // Initialises a freshly claimed (zero-filled) granule.
  static PoolRegion* create(void* granule, unsigned cls);
  // The header is intact: its tag is the one create() wrote (keyed in the hardened build).
  bool live() const { return magic == header_tag(this, kLiveMagic); }

  char* slot_base() { return reinterpret_cast<char*>(this) + kPoolHeaderBytes; }
  void* slot_at(size_t i) { return slot_base() + i * slot_bytes; }
  // The slot that starts at p, or kNoSlot for an interior pointer or a slot never carved.
  uint32_t slot_index(const void* p) {
    const size_t offset = static_cast<size_t>(static_cast<const char*>(p) - slot_base());
    const size_t index = offset / slot_bytes;
    if (offset % slot_bytes != 0 || index >= carved.load(std::memory_order_acquire)) return kNoSlot;
    return static_cast<uint32_t>(index);
  }
  // Sets the slot's bit; false if it was already set (double free).
  bool mark_free(uint32_t i) {
    const uint64_t bit = uint64_t{1} << (i % 64);
    return (free_bits[i / 64].fetch_or(bit, std::memory_order_acq_rel) & bit) == 0;
  }
  // Slots handed out and not free: carved minus the set bits (bits past `carved` are 0).
  size_t live_slots() const {
    const uint32_t n = carved.load(std::memory_order_acquire);
    size_t free_count = 0;
    for (uint32_t w = 0; w < (n + 63) / 64; ++w)
      free_count += popcount64(free_bits[w].load(std::memory_order_relaxed));
    return n - free_count;
  }
  // Clears the slot's bit; false if it was not set (the chunk was not free: heap corruption).
  bool mark_allocated(uint32_t i) {
    const uint64_t bit = uint64_t{1} << (i % 64);
    return (free_bits[i / 64].fetch_and(~bit, std::memory_order_acq_rel) & bit) != 0;
  }
};
static_assert(sizeof(PoolRegion) <= kPoolHeaderBytes, "the header fits before slot 0");

}  // namespace bitslab
