// core/thread/remote_message.h — frees on their way to a slab's owner, a bitmap word at a
// time (L5).
//
// A thread that frees blocks of another heap's slab gathers them by bitmap word: a run is
// (slab, word, mask of the word's blocks freed). When the run closes, its lowest block carries
// it to the owner as a message:
//
//   carrier block:  [ owner's cache mark | link to the next message | mask ]
//
// The owner takes its whole list with one exchange and ORs each mask into its slab's bitmap
// word, after checking that none of those bits was free already: up to 64 frees applied for one
// block read, and no other block of the run touched (a remote block's line is in the freeing
// core's cache; pulling each one over was the drain's whole cost). 16 B blocks have no third
// word: a message of that class is its carrier alone.
//
// Every block of a run, carrier included, keeps its owner's cache mark in its first word until
// it is handed out again (the allocation paths wipe it), so a second free of it takes the marked
// path (ThreadHeap::free_marked), which also looks through runs and messages.
#pragma once
#include <cstdint>

#include "core/base/bits.h"
#include "core/base/compiler.h"
#include "core/base/hardening.h"
#include "core/small/slab.h"

namespace bitslab {

struct RemoteMessage {
  // Whether a carrier of slab s has room for a mask; if not, its message frees it alone.
  static bool carries_mask(const Slab* s) { return s->block_size >= 3 * sizeof(uint64_t); }

  // Turns `carrier` (a block of s, already marked) into a message for `mask`, which holds its bit.
  static void write(void* carrier, const Slab* s, uint64_t mask) {
    if (carries_mask(s)) store(carrier, kMaskWord, mask);
  }
  static void set_next(void* carrier, void* next) {
    store(carrier, kLinkWord, reinterpret_cast<uint64_t>(next));
  }
  static void* next(const void* carrier) { return reinterpret_cast<void*>(load(carrier, kLinkWord)); }
  // The blocks of carrier's bitmap word the message frees; `index` is the carrier's block index.
  static uint64_t mask(const void* carrier, const Slab* s, uint32_t index) {
    return carries_mask(s) ? load(carrier, kMaskWord) : uint64_t{1} << (index % 64);
  }

 private:
  static constexpr unsigned kLinkWord = 1;
  static constexpr unsigned kMaskWord = 2;
  // Encoded with the word's address in the hardened build (link_code), as every free-list link.
  static void store(void* carrier, unsigned word, uint64_t value) {
    uint64_t* where = static_cast<uint64_t*>(carrier) + word;
    __atomic_store_n(where, value ^ link_code(where), __ATOMIC_RELAXED);
  }
  static uint64_t load(const void* carrier, unsigned word) {
    const uint64_t* where = static_cast<const uint64_t*>(carrier) + word;
    return __atomic_load_n(where, __ATOMIC_RELAXED) ^ link_code(where);
  }
};

}  // namespace bitslab
