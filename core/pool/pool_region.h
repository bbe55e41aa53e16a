// core/pool/pool_region.h — one granule of chunks of one pool class (L3b).
//
//   [ PoolRegion header + bitmaps ... kPoolHeaderBytes ][ slot 0 ][ slot 1 ] ...
//   ^ granule-aligned: region_of(p) is p with the low 22 bits cleared
//
// Nothing is ever written into a chunk that is not the program's: which slots are where lives
// in the header, so an available chunk's pages can be decommitted, and a region whose chunks
// are all available can go back to the page heap whole.
//   free_bits   1 = available: neither in the program's hands nor in a thread's cache (which
//               holds its chunks as handed out, core/thread/thread_heap.h). Written only under
//               the pool's lock, where the pool finds slots to hand out.
//   state       a byte per slot, what free needs to know in one load: kHandedOut (the
//               program's), kCached (in a thread's cache), kAvailable (its bit is set), or
//               kSampled (the program's, and a sample of the heap profiler's). A free that
//               finds anything but kHandedOut leaves the fast path: a double free (available,
//               or cached by whichever thread), or a sample, told apart there
//               (ThreadHeap::free_pool_sample_or_abort): no test on the fast path for it.
//               Written by the pool under its lock (available; handed out, or cached when a
//               thread's cache is refilled) and by the thread whose cache takes or gives up
//               the chunk (a plain byte store: no atomic read-modify-write, no lock). A
//               zero-filled header says kAvailable. There is a byte for every slot a pointer
//               anywhere in the granule could name (free's check, boundary_slot), and those
//               of slots past the last stay kAvailable for the region's whole life.
// Slots are handed out lowest first, so untouched slots cost no physical memory.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/base/bits.h"
#include "core/base/compiler.h"
#include "core/base/config.h"
#include "core/base/hardening.h"
#include "core/pool/pool_classes.h"

namespace bitslab {

struct PoolRegion {
  static constexpr uint32_t kLiveMagic = 0x9001ab5a;
  // A region of the smallest pool class has the most slots.
  static constexpr size_t kMaxSlots = (kGranuleBytes - kPoolHeaderBytes) / pool_class_bytes(0);
  static constexpr size_t kWords = (kMaxSlots + 63) / 64;
  // boundary_slot's largest index, (kGranuleBytes - 1) / slot_bytes, has a state byte too.
  static constexpr size_t kStateBytes = kGranuleBytes / pool_class_bytes(0) + 1;
  static constexpr uint32_t kNoSlot = ~uint32_t{0};

  uint32_t magic;
  uint32_t size_class;
  uint32_t slot_bytes;
  uint32_t slot_count;
  uint64_t div_magic;            // 2^64 / slot_bytes, rounded up: slot_index divides by a multiply
  std::atomic<uint32_t> carved;  // slots [0, carved) have been handed out at least once
  // Under the pool's lock:
  uint32_t available;       // set bits in free_bits
  uint32_t scan_word;       // no set bit of free_bits below this word
  bool listed;              // on the pool's list of regions with available slots
  uint64_t empty_since_ns;  // when it went on the pool's list of empty regions (coarse clock)
  PoolRegion* prev;         // that list, or the empty list
  PoolRegion* next;
  PoolRegion* prev_all;  // every region of the pool
  PoolRegion* next_all;
  uint64_t dirty_since_ns;                  // slots made available since the last purge (0: none)
  size_t clean_bytes;                       // decommitted by purges and not handed out since (an estimate)
  std::atomic<uint64_t> free_bits[kWords];  // written under the pool's lock only
  uint8_t state[kStateBytes];               // a SlotState per slot (and past the last)

  static PoolRegion* of(const void* p) {
    return reinterpret_cast<PoolRegion*>(reinterpret_cast<uintptr_t>(p) & ~(kGranuleBytes - 1));
  }
  // Initialises a zero-filled granule: every slot available.
  static PoolRegion* create(void* granule, unsigned cls);
  // The header is intact: its tag is the one create() wrote (keyed in the hardened build).
  bool live() const { return magic == header_tag(this, kLiveMagic); }

  char* slot_base() { return reinterpret_cast<char*>(this) + kPoolHeaderBytes; }
  void* slot_at(size_t i) { return slot_base() + i * slot_bytes; }
  // The slot that starts at p (an address in this region's granule), or kNoSlot for an
  // interior pointer, a pointer into the header or a slot never handed out.
  BITSLAB_ALWAYS_INLINE uint32_t slot_index(const void* p) const {
    const unsigned __int128 product = offset_times_magic(p);
    const uint32_t index = static_cast<uint32_t>(product >> 64);
    if (static_cast<uint64_t>(product) >= div_magic || index >= carved.load(std::memory_order_acquire))
      return kNoSlot;
    return index;
  }
  // Free's fast check (ChunkPool::is_handed_out): the slot that would start at p, or kNoSlot
  // when p is not a whole number of slots from slot 0. The offset is taken modulo the granule,
  // so a pointer into the header wraps to an index past the last slot; no index is compared
  // with slot_count or `carved`: every index this gives has a state byte (kStateBytes), and
  // that of a slot past the last or never carved says kAvailable, which the caller's state
  // test refuses. (slot_index's bound cost a load, a compare and a branch on every free.)
  BITSLAB_ALWAYS_INLINE uint32_t boundary_slot(const void* p) const {
    const uint32_t offset =
        static_cast<uint32_t>((reinterpret_cast<uintptr_t>(p) - kPoolHeaderBytes) & (kGranuleBytes - 1));
    const unsigned __int128 product = static_cast<unsigned __int128>(div_magic) * offset;
    if (static_cast<uint64_t>(product) >= div_magic) return kNoSlot;
    return static_cast<uint32_t>(product >> 64);
  }
  // The slot of the chunk that starts at p if p's granule is a live region, else kNoSlot.
  BITSLAB_ALWAYS_INLINE static uint32_t chunk_slot(const void* p) {
    const PoolRegion* r = of(p);
    return r->live() ? r->slot_index(p) : kNoSlot;
  }
  // The slot of p, the start of one of this region's chunks (checked before: no checks here).
  BITSLAB_ALWAYS_INLINE uint32_t slot_of(const void* p) const {
    return static_cast<uint32_t>(offset_times_magic(p) >> 64);
  }
  // p's offset from slot 0 times div_magic. One 64x64 multiply gives the quotient by
  // slot_bytes (its high half) and the divisibility test (its low half below the magic), for
  // any 32-bit offset (Lemire, Kaser and Kurz, "Faster remainder by direct computation"), where
  // a div would take 15-40 cycles on every free. A pointer into the header wraps to an offset
  // of 2^32 - 64 KiB or more: past any slot.
  BITSLAB_ALWAYS_INLINE unsigned __int128 offset_times_magic(const void* p) const {
    const uint32_t offset = static_cast<uint32_t>(static_cast<const char*>(p) -
                                                  (reinterpret_cast<const char*>(this) + kPoolHeaderBytes));
    return static_cast<unsigned __int128>(div_magic) * offset;
  }
  // Whether the slot is available (its bit; under the pool's lock, where it is exact).
  bool is_free(uint32_t i) const {
    return (free_bits[i / 64].load(std::memory_order_relaxed) >> (i % 64)) & 1;
  }
  // What a slot's chunk is now (the header's `state` bytes).
  enum SlotState : uint8_t { kAvailable = 0, kCached = 1, kSampled = 2, kHandedOut = 3 };
  // Any thread (relaxed: the program orders a free after the malloc that returned the chunk).
  SlotState slot_state(uint32_t i) const { return SlotState{__atomic_load_n(&state[i], __ATOMIC_RELAXED)}; }
  static void set_state(uint8_t* byte, SlotState value) {
    __atomic_store_n(byte, uint8_t{value}, __ATOMIC_RELAXED);
  }
  // A chunk handed out to the program (from the heap profiler, core/api/dispatch.h) becomes
  // a sample; and stops being one, true if it was (false too for a pointer that is no chunk's
  // start: the caller's own check aborts on it).
  static void mark_sampled(void* chunk) {
    PoolRegion* r = of(chunk);
    set_state(&r->state[r->slot_of(chunk)], kSampled);
  }
  static bool unmark_sampled(void* chunk) {
    PoolRegion* r = of(chunk);
    const uint32_t slot = chunk_slot(chunk);
    if (slot == kNoSlot || r->slot_state(slot) != kSampled) return false;
    set_state(&r->state[slot], kHandedOut);
    return true;
  }
  // Slots handed out and not available again: in the program's hands or in threads' caches
  // (exact when no thread allocates or frees meanwhile).
  size_t live_slots() const {
    size_t free_count = 0;
    for (size_t w = 0; w < (slot_count + 63) / 64; ++w)
      free_count += popcount64(free_bits[w].load(std::memory_order_relaxed));
    return slot_count - free_count;
  }

  // ---- under the pool's lock ----
  // Takes up to n of the lowest available slots (available != 0) away from the region, in
  // state `as` (handed out, or cached by the thread that asked), lowest first, and writes them
  // downwards from out_top[-1]: their chunk addresses, and below states_top the addresses of
  // their state bytes. A thread cache's row filled this way has its lowest chunk on top, the
  // next one out. Returns how many (at least one).
  size_t take_available(void** out_top, uint8_t** states_top, size_t n, SlotState as);
  // Makes the leading chunks of chunks[0, n) that lie in this region available again (their
  // bits, then their state bytes), and returns how many (at least one: chunks[0] is this
  // region's). The chunks were checked when freed (ChunkPool::check_handed_out); one whose bit
  // is set already aborts, naming it: a double free that raced with the first.
  size_t make_available(void* const* chunks, size_t n);
  // Decommits the OS pages that lie wholly inside runs of available slots. Returns the bytes.
  size_t decommit_available();
};
static_assert(sizeof(PoolRegion) <= kPoolHeaderBytes, "the header fits before slot 0");

}  // namespace bitslab
