// core/pool/pool_region.h — one granule of chunks of one pool class (L3b).
//
//   [ PoolRegion header + bitmaps ... kPoolHeaderBytes ][ slot 0 ][ slot 1 ] ...
//   ^ granule-aligned: region_of(p) is p with the low 22 bits cleared
//
// Nothing is ever written into a free chunk: which slots are free lives in two bitmaps in the
// header, so a free chunk's pages can be decommitted, and a region whose chunks are all free
// can go back to the page heap whole.
//   free_bits   1 = free in the program's view. Any thread sets and clears bits with atomic
//               operations: a second free of the same chunk finds its bit already set.
//   avail_bits  1 = the region may hand the slot out: free, and in no thread's cache. Changed
//               only under the pool's lock. Always a subset of free_bits.
// Slots are handed out lowest first, so untouched slots cost no physical memory.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/base/bits.h"
#include "core/base/config.h"
#include "core/base/hardening.h"
#include "core/pool/pool_classes.h"

namespace bitslab {

struct PoolRegion {
  static constexpr uint32_t kLiveMagic = 0x9001ab5a;
  // A region of the smallest pool class has the most slots.
  static constexpr size_t kMaxSlots = (kGranuleBytes - kPoolHeaderBytes) / pool_class_bytes(0);
  static constexpr size_t kWords = (kMaxSlots + 63) / 64;
  static constexpr uint32_t kNoSlot = ~uint32_t{0};

  uint32_t magic;
  uint32_t size_class;
  uint32_t slot_bytes;
  uint32_t slot_count;
  std::atomic<uint32_t> carved;  // slots [0, carved) have been handed out at least once
  // Under the pool's lock:
  uint32_t available;  // set bits in avail_bits
  uint32_t scan_word;  // no avail bit below this word
  bool listed;         // on the pool's list of regions with available slots
  PoolRegion* prev;    // that list
  PoolRegion* next;
  PoolRegion* prev_all;  // every region of the pool
  PoolRegion* next_all;
  uint64_t dirty_since_ns;  // slots made available since the last purge (0: none)
  size_t clean_bytes;       // decommitted by purges and not handed out since (an estimate)
  std::atomic<uint64_t> free_bits[kWords];
  uint64_t avail_bits[kWords];

  static PoolRegion* of(const void* p) {
    return reinterpret_cast<PoolRegion*>(reinterpret_cast<uintptr_t>(p) & ~(kGranuleBytes - 1));
  }
  // Initialises a zero-filled granule: every slot free and available.
  static PoolRegion* create(void* granule, unsigned cls);
  // The header is intact: its tag is the one create() wrote (keyed in the hardened build).
  bool live() const { return magic == header_tag(this, kLiveMagic); }

  char* slot_base() { return reinterpret_cast<char*>(this) + kPoolHeaderBytes; }
  void* slot_at(size_t i) { return slot_base() + i * slot_bytes; }
  // The slot that starts at p, or kNoSlot for an interior pointer or a slot never handed out.
  uint32_t slot_index(const void* p) {
    const size_t offset = static_cast<size_t>(static_cast<const char*>(p) - slot_base());
    const size_t index = offset / slot_bytes;
    if (offset % slot_bytes != 0 || index >= carved.load(std::memory_order_acquire)) return kNoSlot;
    return static_cast<uint32_t>(index);
  }
  // Sets the slot's free bit; false if it was already set (double free).
  bool mark_free(uint32_t i) {
    const uint64_t bit = uint64_t{1} << (i % 64);
    return (free_bits[i / 64].fetch_or(bit, std::memory_order_acq_rel) & bit) == 0;
  }
  // Clears the slot's free bit; false if it was not set (the chunk was not free: corruption).
  bool mark_allocated(uint32_t i) {
    const uint64_t bit = uint64_t{1} << (i % 64);
    return (free_bits[i / 64].fetch_and(~bit, std::memory_order_acq_rel) & bit) != 0;
  }
  // Slots handed out and not free (exact when no thread allocates or frees meanwhile).
  size_t live_slots() const {
    size_t free_count = 0;
    for (size_t w = 0; w < (slot_count + 63) / 64; ++w)
      free_count += popcount64(free_bits[w].load(std::memory_order_relaxed));
    return slot_count - free_count;
  }

  // ---- under the pool's lock ----
  // Takes up to n of the lowest available slots (available != 0) away from the region, as
  // chunk addresses into out; their free bits stay. Returns how many (at least one).
  size_t take_available(void** out, size_t n);
  // Makes a slot whose free bit is set available again; false if it already was (corruption).
  bool make_available(uint32_t i) {
    const uint64_t bit = uint64_t{1} << (i % 64);
    uint64_t& word = avail_bits[i / 64];
    if (word & bit) return false;
    word |= bit;
    ++available;
    if (i / 64 < scan_word) scan_word = i / 64;
    return true;
  }
  // Decommits the OS pages that lie wholly inside runs of available slots. Returns the bytes.
  size_t decommit_available();
};
static_assert(sizeof(PoolRegion) <= kPoolHeaderBytes, "the header fits before slot 0");

}  // namespace bitslab
