// core/small/remote_frees.h — blocks other threads free into a slab, a bit each, until its
// owner applies them a bitmap word at a time (L3a).
//
// Beside the owner's bitmap (1 = free), each slab has remote words (1 = freed by another thread,
// not yet applied) and a summary (bit w: remote word w may hold bits). A thread that frees a
// block of another heap's slab sets the block's bit with one compare-and-swap and touches
// nothing else in the common case; the one that turns a word non-zero also sets the word's
// summary bit, and the one that turns the summary non-zero puts the slab on its owner's list
// (core/thread/thread_heap.h). The owner takes the summary, then each word it names, with an
// exchange each, and ORs the words into its bitmap: up to 64 frees applied for one atomic
// instruction, and no block's memory read (a message carried in the blocks, as before, pulled
// every block's line across to the owner's core).
//
// Why a slab cannot be given back under a freeing thread: between setting a word's bit and
// setting its summary bit (or listing the slab), the freeing thread's block is still out: its
// bit is in a word that the summary does not name, so the owner cannot take it, and the slab,
// with a block out, is not empty. The invariant that makes this hold: a summary bit is set only
// by the thread that found its word zero, and the owner clears the summary bit before it takes
// the word, so a word the owner has not taken since it last cleared the bit is named again by
// the time that thread is done. Every other freeing thread's last access is its word's CAS.
#pragma once
#include <cstdint>

#include "core/base/bits.h"
#include "core/base/compiler.h"
#include "core/small/slab.h"

namespace bitslab {

struct RemoteFrees {
  enum class Posted : uint8_t {
    kDoubleFree,  // the bit was set already: freed twice, the first not yet applied
    kDone,        // the owner will find it
    kListSlab,    // the summary was zero: the caller must put the slab on its owner's list
  };

  // Any thread but the owner: block `index` of s (handed out by s, marked) is free.
  BITSLAB_ALWAYS_INLINE static Posted post(Slab* s, uint32_t index) {
    uint64_t* word = &s->remote_words[index / 64];
    const uint64_t bit = uint64_t{1} << (index % 64);
    // A CAS loop (the whole old word is needed): release, so that the owner, taking the word,
    // sees the mark written into the block before.
    const uint64_t old = __atomic_fetch_or(word, bit, __ATOMIC_SEQ_CST);
    if (BITSLAB_UNLIKELY(old & bit)) return Posted::kDoubleFree;
    if (BITSLAB_LIKELY(old != 0)) return Posted::kDone;  // the summary names the word already
    const uint64_t summary_bit = uint64_t{1} << (index / 64);
    const uint64_t summary = __atomic_fetch_or(&s->remote_summary, summary_bit, __ATOMIC_SEQ_CST);
    return summary == 0 ? Posted::kListSlab : Posted::kDone;
  }

  // Owner only: takes every word of s the summary names, calling apply(word index, mask) for
  // each non-zero one. After the summary's exchange, a thread may list s again: the caller has
  // read s->remote_next before.
  template <typename Apply>
  BITSLAB_ALWAYS_INLINE static void take(Slab* s, Apply apply) {
    uint64_t summary = __atomic_exchange_n(&s->remote_summary, 0, __ATOMIC_SEQ_CST);
    while (summary != 0) {
      const uint32_t w = ctz64(summary);
      summary &= summary - 1;
      const uint64_t mask = __atomic_exchange_n(&s->remote_words[w], 0, __ATOMIC_ACQUIRE);
      if (mask != 0) apply(w, mask);
    }
  }

  // Any thread: whether block `index` of s is freed and not yet applied. A moment's answer.
  static bool pending(const Slab* s, uint32_t index) {
    return (__atomic_load_n(&s->remote_words[index / 64], __ATOMIC_RELAXED) >> (index % 64)) & 1;
  }
  // Any thread: blocks of s freed and not yet applied (for the census). A moment's answer.
  static uint32_t count(const Slab* s) {
    uint32_t n = 0;
    for (uint32_t w = 0; w < s->bitmap_words(); ++w)
      n += popcount64(__atomic_load_n(&s->remote_words[w], __ATOMIC_RELAXED));
    return n;
  }

  // The owner's list of slabs with remote frees: a Treiber stack that only the owner empties,
  // all at once (an exchange), so a node never leaves it under a pusher: no ABA.
  static void push(Slab** head, Slab* s) {
    Slab* top = __atomic_load_n(head, __ATOMIC_RELAXED);
    do {
      __atomic_store_n(&s->remote_next, top, __ATOMIC_RELAXED);
    } while (!__atomic_compare_exchange_n(head, &top, s, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
  }
  static Slab* next(const Slab* s) { return __atomic_load_n(&s->remote_next, __ATOMIC_RELAXED); }
};

}  // namespace bitslab
