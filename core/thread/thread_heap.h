// core/thread/thread_heap.h — a thread's cache: the slabs it allocates from, and a few free
// pool chunks (L4). The whole small-block hot path is here, on one screen.
//
// Ownership: a slab belongs to exactly one heap for its whole life. Only the thread running
// that heap touches the slab's bitmap, so allocation and same-thread free use no atomic
// instruction. Another thread's free pushes the block onto the owner's remote list (one CAS);
// the owner sets the bits when it next takes its slow path. Heaps are never destroyed: when a
// thread exits its heap is flushed and parked, and the next new thread adopts it with its slabs.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/base/compiler.h"
#include "core/base/fatal.h"
#include "core/pool/chunk_pool.h"
#include "core/pool/pool_classes.h"
#include "core/small/slab.h"
#include "core/small/size_classes.h"

namespace bitslab {

class ThreadHeap;
// The slab every bin of the empty heap points at: its bitmap is all zeros, so allocation from
// it always misses and lands in the slow path, which sets the thread up.
extern constinit Slab kEmptySlab;
// What a thread's heap pointer holds until its first allocation and after it exits.
extern constinit ThreadHeap kEmptyHeap;
// This thread's heap. initial-exec TLS: a fixed offset from the thread pointer, no calls.
extern BITSLAB_TLS constinit ThreadHeap* tls_heap;

class ThreadHeap {
 public:
  constexpr ThreadHeap() = default;

  // ---- small blocks ------------------------------------------------------------------------
  BITSLAB_ALWAYS_INLINE void* alloc_small(unsigned cls) {
    Slab* s = bins_[cls].current;       // 1 load (heap is hot in L1)
    const uint32_t w = s->hint;         // 1 load from the slab header line
    const uint64_t bits = s->free.words[w];
    if (BITSLAB_LIKELY(bits != 0)) {    // taken unless the word is used up: ~1 in 64 calls
      s->free.words[w] = bits & (bits - 1);  // clear the lowest set bit: blsr
      return s->block_at(w * 64 + ctz64(bits));  // tzcnt, imul, add
    }
    return alloc_small_slow(cls);       // cold: rescan, next slab, or first use by this thread
  }

  // s->owner == this. Aborts on a double free or a pointer that is not a block start.
  BITSLAB_ALWAYS_INLINE void free_small(Slab* s, void* p) {
    const uint32_t i = s->block_index(p);                  // imul, shift, imul, 2 compares
    if (BITSLAB_UNLIKELY(i == Slab::kNoBlock)) fatal("free of a pointer that bitslab never handed out:", p);
    uint64_t& word = s->free.words[i / 64];
    const uint64_t bit = uint64_t{1} << (i % 64);
    if (BITSLAB_UNLIKELY(word & bit)) fatal("double free of", p);  // the bitmap already says free
    word |= bit;
    // The current slab keeps no count: nothing more to do. Any other slab counts down, and
    // may need a list change: it was full (list it again) or is now empty (give it back).
    if (BITSLAB_UNLIKELY(s->state != Slab::kCurrent)) free_into_listed(s);
  }

  // Any thread, s->owner != this thread's heap. Validates p, then one CAS onto the owner's list.
  static void free_remote(Slab* s, void* p);

  // ---- pool chunks -------------------------------------------------------------------------
  BITSLAB_ALWAYS_INLINE void* alloc_pool(size_t size) {
    const unsigned cls = pool_class_of(size);
    PoolCache& c = pool_cache_[cls];
    if (BITSLAB_LIKELY(c.count != 0)) {
      void* chunk = c.slots[--c.count];
      ChunkPool::mark_allocated(chunk);  // 1 atomic AND on the region's bitmap
      return chunk;
    }
    return alloc_pool_slow(size);
  }
  void free_pool(void* chunk);

  // Applies the frees other threads posted to this heap. Owner only.
  void drain_remote();
  // Gives back everything the heap does not need to keep: posted frees, cached chunks, empty
  // slabs. Called when the thread exits.
  void flush();

 private:
  friend class HeapRegistry;
  struct SmallBin {
    Slab* current = &kEmptySlab;  // allocation comes from here
    Slab* partial = nullptr;      // slabs with free blocks, doubly linked through prev/next
  };
  struct PoolCache {
    uint32_t count = 0;
    void* slots[kPoolCacheSlots] = {};
  };

  BITSLAB_NOINLINE void* alloc_small_slow(unsigned cls);
  BITSLAB_NOINLINE void* alloc_pool_slow(size_t size);
  BITSLAB_NOINLINE void free_into_listed(Slab* s);
  // Makes `next` the bin's current slab; the old one stops being current.
  void make_current(SmallBin& bin, Slab* next);
  void remote_push(void* block);
  Slab* take_partial(unsigned cls);
  void release_slab(Slab* s);

  SmallBin bins_[kSmallClassCount];
  PoolCache pool_cache_[kPoolClassCount];
  // Blocks freed by other threads, linked through their first word; pushed by anyone,
  // taken all at once by the owner.
  alignas(64) std::atomic<void*> remote_{nullptr};
  // Owned by HeapRegistry.
  alignas(64) ThreadHeap* next_all_ = nullptr;
  ThreadHeap* next_parked_ = nullptr;
  bool in_use_ = false;
};

}  // namespace bitslab
