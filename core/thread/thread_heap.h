// core/thread/thread_heap.h — a thread's cache: the slabs it allocates from, and a few free
// pool chunks (L5). The whole small-block hot path is here, on one screen.
//
// Ownership: a slab belongs to exactly one heap for its whole life. Only the thread running
// that heap touches the slab's bitmap, so allocation and same-thread free use no atomic
// instruction. A block another thread frees, if its class has cache lines of its own (64 B,
// and 128 B up to 1024 B), stays with that thread: it goes into the freeing thread's own block
// cache, by the same path as a block of its own (one test decides both: Slab::cacheable_by),
// and its next allocation of the class hands it out again (the bitmap counts a cached block as
// handed out, whichever cache holds it). Smaller blocks, and what overflows a cache, get their
// bit set in the slab's remote words (core/small/remote_frees.h), one atomic instruction a
// free; a slab that gets its first such bit goes on its owner's list, and the owner ORs the
// words into its bitmaps when it next takes its slow path. Heaps are never
// destroyed: when a thread exits its heap is flushed and parked, and the next new thread adopts
// it. A slab listed to a parked heap has its frees applied by the thread that lists it
// (HeapRegistry::collect), so an exited thread's slabs empty and go back without waiting for a
// new thread: all but each class's current slab, which keeps no count and is given back only
// by flush(): at the thread's exit, and for a parked heap by the first purge after it has been
// parked for the purge delay, or by trim (HeapRegistry::flush_parked). (Giving those back in
// collect, at once, was tried: bench_mstress and bench_threads then peaked 4-9% higher, 7
// interleaved runs twice: a heap adopted soon after kept taking new slabs; not kept.)
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/base/compiler.h"
#include "core/base/fatal.h"
#include "core/base/untouched_array.h"
#include "core/pool/chunk_pool.h"
#include "core/pool/pool_classes.h"
#include "core/profile/sample_clock.h"
#include "core/small/size_classes.h"
#include "core/small/slab.h"

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

  // Statistics of one class, as this heap counted them: blocks it handed out, frees applied to
  // its slabs or chunks returned through it, and the highest allocs - frees it saw at a refill
  // (sample_peak, called on slow paths only).
  struct ClassCounts {
    uint64_t allocs = 0;
    uint64_t frees = 0;
    uint64_t peak = 0;
    void sample_peak() {  // a heap may count more frees than allocs: it caches others' blocks
      if (allocs > frees && allocs - frees > peak) peak = allocs - frees;
    }
    void add(const ClassCounts& other) {
      allocs += other.allocs;
      frees += other.frees;
      peak += other.peak;
    }
  };

  // ---- the heap profiler's sample clock ----------------------------------------------------
  // While the profiler samples, every malloc counts its size off this clock (core/api/dispatch.h,
  // profiled_alloc): it lives here because the routed malloc holds the heap's address anyway.
  // The empty heap's never starts (every request asks, and finds this_threads_sample_clock()).
  profile::SampleClock& sample_clock() { return sample_clock_; }
  // The clock of the calling thread's heap, which a thread that has none yet gets now (so its
  // first allocation can be a sample); a thread in teardown, which gets none, has one in TLS.
  static profile::SampleClock& this_threads_sample_clock();

  // ---- small blocks ------------------------------------------------------------------------
  // Two tiers. The block cache: a LIFO array per class of blocks this thread freed, which the
  // bitmap still counts as handed out; malloc+free of a hot size is a pop and a push, with no
  // multiply on the dependency chain from one call to the next. Behind it, the slabs' bitmaps,
  // the source of truth for every block not in the cache.
  BITSLAB_ALWAYS_INLINE void* alloc_small(unsigned cls) {
    SmallBin* bin_address = bin_at(cls);
    SmallBin& bin = *bin_address;
    void** top = bin.top;
    if (BITSLAB_LIKELY(top != bin.bottom)) {  // hit after any recent free of this class
      ++bin.counts.allocs;                    // statistics: 1 add to the same line
      void* p = top[-1];                      // 3 loads, 1 store (the heap line is hot)
      bin.top = top - 1;
      *static_cast<uint64_t*>(p) = 0;  // wipe the cache mark: 1 store to a line we return
      return p;
    }
    Slab* s = bin.current;
    const uint32_t w = s->hint;              // 1 load from the slab header line
    const uint64_t bits = s->free.words[w];
    if (BITSLAB_LIKELY(bits != 0)) {         // taken unless the word is used up: ~1 in 64 calls
      ++bin.counts.allocs;
      if constexpr (kHardened) return take_random_bit(s, w, bits);
      s->free.words[w] = bits & (bits - 1);  // clear the lowest set bit: blsr
      const uint32_t index = w * 64 + ctz64(bits);  // tzcnt, shl, add
      s->note_handed_out(index);                    // 1 compare on the line block_at reads
      void* p = s->block_at(index);                 // imul, add
      *static_cast<uint64_t*>(p) = 0;  // wipe the mark a remote free leaves: 1 store to a line we return
      return p;
    }
    // Cold: rescan, next slab, or first use by this thread. The class is found again from the
    // bin, on this path only: kept from above, cls cost a register copy on every call.
    return alloc_small_slow(static_cast<unsigned>(bin_address - bins_));
  }

  // Hardened build: the first free block of the word at or after a random position (wrapping
  // around), so that where the next block lands cannot be predicted from what was freed. Not
  // uniform (a free block after a long used run is likelier), but unknown without rng_.
  BITSLAB_ALWAYS_INLINE void* take_random_bit(Slab* s, uint32_t w, uint64_t bits) {
    rng_ ^= rng_ << 13;  // xorshift64
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    const unsigned r = static_cast<unsigned>(rng_ & 63);
    const unsigned b = (ctz64((bits >> r) | (bits << ((64 - r) & 63))) + r) & 63;
    s->free.words[w] = bits & ~(uint64_t{1} << b);  // (the frontier stays at the slab's end)
    void* p = s->block_at(w * 64 + b);
    *static_cast<uint64_t*>(p) = 0;  // the remote free's mark, as above
    return p;
  }

  // Whether a free of a block of s by this heap's thread takes free_small: s is this heap's,
  // or another heap's of a class any thread keeps (Slab::cacheable_by). The hardened build
  // caches nothing: there, another heap's block always goes back to it (free_remote).
  BITSLAB_ALWAYS_INLINE bool takes_free_of(const Slab* s) const {
    return kHardened ? s->owner == this : s->cacheable_by(this);
  }

  // takes_free_of(s): s is this heap's, or another heap's of a class any thread keeps; p
  // is block `i` of s, below its frontier (Slab::handed_out_index, checked by the caller: a
  // block the slab never handed out is past it). Aborts on a double free: every block that is
  // free again carries its owner's mark in its first word until it is handed out (cached by
  // any heap, in the bitmap, or on its way to the owner), so the checks read the slab's
  // identity line and the block, which free reads anyway, and not the bitmap's line (in
  // bench_churn that line missed the L1 cache on 0.6 frees in 1). They only feed predicted
  // branches, so they run beside the push, not before it. The rest are tail calls, so the fast
  // path saves no registers.
  BITSLAB_ALWAYS_INLINE void free_small(Slab* s, void* p, uint32_t i) {
    uint64_t* mark = static_cast<uint64_t*>(p);
    const uint64_t owner_mark = s->owner_mark;  // this heap's cache_mark_ if s is ours
    // Marked: free already, or a program's data that looks like the mark; the slow path knows.
    if (BITSLAB_UNLIKELY(*mark == owner_mark)) return free_marked(s, p, i);  // 2 loads, 1 compare
    SmallBin& bin = bins_[s->size_class];
    void** top = bin.top;
    if (BITSLAB_LIKELY(!kHardened && top != bin.limit)) {  // 2 loads, 1 compare
      // top made opaque: else GCC adds 8 first and stores p through the new top - 8, and the
      // next malloc's load of p waits a cycle more for that store (bench_fastpath --size 64:
      // 6.42 ns a pair against 6.24).
      __asm__("" : "+r"(top));
      ++bin.counts.frees;  // statistics: 1 add, same line
      *top = p;            // 3 stores, the mark last: it may alias bin
      bin.top = top + 1;
      *mark = owner_mark;
      return;
    }
    // Full (always so in the empty heap and the hardened build, which cache nothing). Another
    // heap's block goes to its owner (its remote bit), out of line; in the hardened build only
    // the owner's frees come here (free_in_slab). Ours: while the heap may grow its caches, a
    // call out (to double this one, then push); past that, 2 loads and 2 branches more than the
    // bitmap alone. (The owner loaded again, not kept from free_in_slab's test: kept, it cost
    // a saved register, 2 instructions, on every free.)
    if constexpr (!kHardened)
      if (BITSLAB_UNLIKELY(__atomic_load_n(&s->owner, __ATOMIC_RELAXED) != this))
        return post_foreign(s, p, i);
    ++bin_at(s->size_class)->counts.frees;
    if constexpr (!kHardened)
      if (BITSLAB_UNLIKELY(cache_growth_left_ != 0)) return free_small_grow(s, p);
    free_to_bitmap(s, p, i);
  }

  // Blocks the cache of class cls has room for at first (and after a shrink): kBlockCacheSlots,
  // or fewer if they would pass kBlockCacheBytes. The hardened build's caches have none.
  static constexpr size_t first_block_cache_room(unsigned cls) {
    const size_t by_bytes = kBlockCacheBytes / kSmallClassBytes[cls];
    return by_bytes < kBlockCacheSlots ? by_bytes : kBlockCacheSlots;
  }
  // Blocks the cache of class cls has room for now (it grows: grow_block_cache), and the bytes
  // this heap's caches may still grow by (set aside ones included).
  size_t block_cache_room(unsigned cls) const {
    return static_cast<size_t>(bins_[cls].limit - bins_[cls].bottom);
  }
  size_t block_cache_growth_left() const { return cache_growth_left_ + cache_growth_spare_; }

  // Any thread, !self->takes_free_of(s): another heap's slab of a class that goes back to its
  // owner (smaller than 128 B and not 64 B: it shares lines with blocks the owner may be
  // writing, small_class_kept_by_freeing_thread; in the hardened build, any class), or no
  // live slab. self: the calling thread's heap (tls_heap, maybe the empty heap: passed, as
  // free_in_slab has it loaded); p is block `index` of s if s is a live slab
  // (Slab::handed_out_index, checked by the caller). Checks that s is live, marks p with the
  // owner's mark and sets its remote bit (post_remote). Blocks of the other classes, whoever
  // owns them, free_small caches in the freeing thread (no atomics, no write to the owner's
  // lines).
  static void free_remote(Slab* s, void* p, ThreadHeap* self, uint32_t index);

  // ---- pool chunks -------------------------------------------------------------------------
  // A LIFO cache per class, as for small blocks: a cached chunk counts as handed out in its
  // region's bitmap, and its byte in the region's `state` array says where it is, so
  // malloc+free of a cached class runs no atomic instruction and writes nothing into the chunk.
  // Out of line: malloc reaches it by a tail jump, so the small path's code around it needs
  // no saved registers. Static, the size first: malloc's jump then finds it in place and
  // moves the heap alone (a member function took 2 register moves).
  BITSLAB_NOINLINE static void* alloc_pool(size_t size, ThreadHeap* heap) {
    return heap->pop_or_refill_chunk(size);
  }
  // alloc_pool's body: the top of the class's cache, or a refill (alloc_pool_slow).
  BITSLAB_ALWAYS_INLINE void* pop_or_refill_chunk(size_t size) {
    const unsigned cls = pool_class_of_fast(size);  // 1 compare, 1 byte load up to 32 KiB
    PoolCache& c = pool_cache_[cls];
    const uint32_t n = c.count;
    if (BITSLAB_LIKELY(n != 0)) {
      const size_t slot = pool_slot(cls, n - 1);
      c.count = n - 1;  // before the loads: GCC then copies no register (1 instruction)
      ++c.counts.allocs;
      void* chunk = pool_chunks_[slot];  // both loads before the byte store, which may alias
      uint8_t* state = pool_states_[slot];
      PoolRegion::set_state(state, PoolRegion::kHandedOut);  // the program's now: 1 byte store
      return chunk;
    }
    return alloc_pool_slow(size, this);
  }
  // Aborts on a double free or a pointer that is not a handed-out chunk
  // (ChunkPool::check_handed_out).
  void free_pool(void* chunk);
  // free_pool's chunk failed its check: a sample of the heap profiler's leaves the profile and
  // is freed as any chunk; anything else (a double free, no chunk's start) aborts, naming why.
  BITSLAB_NOINLINE void free_pool_sample_or_abort(void* chunk);

  // Applies the remote frees of the slabs listed to this heap, a bitmap word at a time; a slab
  // that empties goes back at once. Owner only, or, for a parked heap, the thread that claimed
  // it (HeapRegistry::collect).
  void drain_remote();
  // Whether slabs with remote frees are listed to this heap (any thread; a full fence).
  bool has_remote_frees() const;
  // Adds this heap's counts to small[kSmallClassCount] and pool[kPoolClassCount].
  void add_counts(ClassCounts* small, ClassCounts* pool) const;

  // Adds, by class, the small blocks in this heap's block cache (their slabs' bitmaps count
  // them as handed out) to cached[kSmallClassCount]. For the census (core/api/census.h); exact
  // when the heap's thread is not running. (Blocks freed by other threads and not yet applied
  // the census counts from the slabs' remote words.)
  void count_cached_blocks(size_t cached[kSmallClassCount]) const;
  // Adds, by pool class, the chunks in this heap's cache (their regions count them as handed
  // out) to cached[kPoolClassCount]. For the census, as above.
  void count_cached_chunks(size_t cached[kPoolClassCount]) const;
  // Gives back everything the heap does not need to keep: posted frees, cached chunks, empty
  // slabs. Called when the thread exits, by trim, and before a failed allocation is retried.
  void flush();

 private:
  friend class HeapRegistry;
  struct SmallBin {
    // The class's block cache, a stack in its cache_ row: blocks at [bottom, top), room up to
    // limit. All three null in the empty heap, which never caches (see enable_cache()).
    void** top = nullptr;
    void** bottom = nullptr;
    void** limit = nullptr;
    Slab* current = &kEmptySlab;  // allocation comes from here
    Slab* partial = nullptr;      // slabs with free blocks, doubly linked through prev/next
    ClassCounts counts;  // counted on the fast paths, which already hold this line
  };
  // A pool class's cache: its chunks are row cls of pool_chunks_ (and their state bytes the
  // same row of pool_states_), [0, count) of it, room up to limit.
  struct PoolCache {
    uint32_t count = 0;
    uint32_t limit = 0;  // 8 chunks at first, grown at refills (grow_pool_cache); 0 in the empty heap
    ClassCounts counts;
  };
  static constexpr size_t pool_slot(unsigned cls, uint32_t i) { return size_t{cls} * kPoolCacheSlots + i; }
  // The bin of class cls, its address made opaque to GCC, which otherwise computes it again
  // from cls for a later access to the bin (2 more instructions on alloc_small's hit path). In
  // free_small's full path it has the bin found again rather than kept across the push (kept,
  // it cost a register copy on every free: pair 77 instructions against 76).
  BITSLAB_ALWAYS_INLINE SmallBin* bin_at(unsigned cls) {
    SmallBin* bin = &bins_[cls];
    __asm__("" : "+r"(bin));
    return bin;
  }

  BITSLAB_NOINLINE void* alloc_small_slow(unsigned cls);
  // alloc_pool's miss: refill_pool_cache. Static, as alloc_pool is: the arguments stay put.
  BITSLAB_NOINLINE static void* alloc_pool_slow(size_t size, ThreadHeap* heap);
  void* refill_pool_cache(size_t size);
  // The cache of chunk's class is full: three quarters of it go back to the pool under one
  // lock, and chunk (its state byte at `state`) takes their place. In the empty heap (limit 0)
  // chunk goes straight back. (The class is found again from the chunk: free_pool's fast path
  // then keeps fewer values live.)
  BITSLAB_NOINLINE void spill_pool_cache(void* chunk, uint8_t* state);
  // Hands every cached chunk of class cls back to the pool.
  void flush_pool_cache(unsigned cls);
  // free_small found the cache of p's class full (p checked, counted): at the
  // kBlockCacheGrowthRun-th such free in a row with no malloc of the class between, doubles the
  // cache (grow_block_cache) and pushes p; otherwise, or if the class is at its most or the
  // budgets are spent, frees p to the bitmap. Only s and p passed: more arguments cost free's
  // fast path a saved register.
  BITSLAB_NOINLINE void free_small_grow(Slab* s, void* p);
  // free_small found the cache full, and p (block `index` of s, checked) is another heap's:
  // marks it with its owner's mark and sets its remote bit (post_remote).
  BITSLAB_NOINLINE static void post_foreign(Slab* s, void* p, uint32_t index);
  // A free found the cache of class cls full: doubles its room, up to kBlockCacheMaxSlots, if the
  // heap's and the process's growth budgets have the bytes; the first time, its blocks move to
  // the class's row of grown_cache_. Whether it grew.
  bool grow_block_cache(unsigned cls);
  // Whether class cls's cache has grown: its stack is in its row of grown_cache_ (never so in the
  // empty heap, whose rows are null, nor in the hardened build).
  bool block_cache_grown(unsigned cls) const {
    return bins_[cls].bottom == &grown_cache_[cls * kBlockCacheMaxSlots];
  }
  // Class cls's cache back to its first row and room (it is empty: flushed), and the bytes its
  // growth took back to the heap's and the process's budgets.
  void shrink_block_cache(unsigned cls);
  // A purge ran since this heap last looked (backend::purge_epoch): each grown cache of a class
  // this thread has not allocated since then is flushed and shrunk. Without it, a phase's last
  // run of frees stays cached, up to 1024 blocks a class, each keeping its slab from going back
  // (bench_phases: 444 MiB peak against 339). Returns at once when no purge ran.
  void shrink_idle_block_caches();
  // The budget a growth that did not fit set aside (grow_block_cache), back into use: at a purge
  // or a flush, when a growth may fit again.
  void restore_set_aside_growth() {
    cache_growth_left_ += cache_growth_spare_;
    cache_growth_spare_ = 0;
  }
  // Every pool class's cache capacity back to its start, and the growth allowance to full
  // (core/base/config.h, kPoolCacheStartSlots).
  void reset_pool_limits();
  // A refill of class cls: room for kPoolCacheStartSlots more, if it has been refilled before
  // and the allowance lasts.
  void grow_pool_cache(unsigned cls);
  // Puts a chunk into the class's cache (room left), its state byte set to kCached.
  BITSLAB_ALWAYS_INLINE void cache_chunk(unsigned cls, PoolCache& c, void* chunk, uint8_t* state) {
    const size_t slot = pool_slot(cls, c.count++);
    pool_chunks_[slot] = chunk;
    pool_states_[slot] = state;
    PoolRegion::set_state(state, PoolRegion::kCached);  // last: a byte store may alias the count
  }
  // n blocks of s (not the current slab) came back to its bitmap: counts them, and lists the
  // slab again (it was full) or gives it back (it is empty).
  BITSLAB_NOINLINE void free_into_listed(Slab* s, uint32_t n);
  // n blocks of s came back to its bitmap (their bits set): the slab's count and lists. The
  // current slab keeps no count: nothing more to do (1 compare). A listed slab with other
  // blocks out counts down (1 more compare, 1 store); else a list change, out of line: it was
  // full (list it again) or is now empty (give it back).
  BITSLAB_ALWAYS_INLINE void count_back(Slab* s, uint32_t n) {
    if (BITSLAB_LIKELY(s->state == Slab::kCurrent)) return;
    if (BITSLAB_LIKELY(s->state == Slab::kPartial && s->used > n)) {
      s->used -= n;
      return;
    }
    free_into_listed(s, n);
  }
  // Sets the bit of p (block `index` of s, handed out by s) and marks p, so that a second free
  // takes the marked path; then the slab's count and lists. A bit free already is a double free
  // whose block lost its mark (the program wrote over it after the first free). The hardened
  // build, which caches nothing, sends every free here: this test is its double-free check
  // (and its "never handed out" one, the frontier being the slab's end), and it marks nothing.
  BITSLAB_ALWAYS_INLINE void free_to_bitmap(Slab* s, void* p, uint32_t index) {
    uint64_t& word = s->free.words[index / 64];
    const uint64_t bit = uint64_t{1} << (index % 64);
    if (BITSLAB_UNLIKELY(word & bit)) return fatal_tail("double free of", p);
    word |= bit;
    if constexpr (!kHardened) *static_cast<uint64_t*>(p) = cache_mark_;
    count_back(s, 1);
  }
  // free_small or free_remote when p carries its owner's cache mark. The mark only says "maybe
  // free already: in the bitmap, cached, or on its way to the owner": a program's data equals
  // the owner's random mark by a 2^-63 chance. The block's bit (the owner's look only), then the
  // block's remote bit, and the search of the class's caches (this heap's, then every heap's: a
  // block freed by another thread may sit in that thread's cache) say for sure, and abort on a
  // double free. Otherwise p (block `index` of s, checked by the caller) is freed as usual.
  BITSLAB_NOINLINE void free_marked(Slab* s, void* p, uint32_t index);
  // Whether p is in this heap's cache of class cls. Another thread may read it while the owner
  // pushes and pops: the answer is then only as good as the moment.
  bool caches(const void* p, unsigned cls) const;
  // Hands every cached block of the class back: this heap's own to their bitmaps, other heaps'
  // to their slabs' remote words.
  void flush_cache(unsigned cls);
  // Any thread, s->owner is not the caller's heap: sets the remote bit of p (block `index` of
  // s, marked, not cached), and lists s to its owner if it is the slab's first
  // (core/small/remote_frees.h). Aborts if the bit was set already (a double free).
  static void post_remote(Slab* s, void* p, uint32_t index);
  // Puts s on this heap's list of slabs with remote frees (one CAS), and applies them at once
  // if no thread runs the heap.
  void list_remote_slab(Slab* s);
  // Drain: ORs mask (blocks of s's bitmap word `word`) into the bitmap; aborts naming the first
  // block whose bit was free already.
  void apply_remote_frees(Slab* s, uint32_t word, uint64_t mask);
  // Gives a fresh heap its cache capacities and mark (the empty heap keeps none: all null).
  void enable_cache();
  // Makes `next` the bin's current slab; the old one stops being current.
  void make_current(SmallBin& bin, Slab* next);
  Slab* take_partial(unsigned cls);
  // backend::purge_if_due, on every kPurgeCheckEvery-th call.
  void maybe_purge(bool may_start_thread) {
    if (this == &kEmptyHeap || purge_countdown_-- != 0) return;  // the shared empty heap: never
    purge_countdown_ = kPurgeCheckEvery - 1;
    backend_purge_if_due(may_start_thread);
  }
  static void backend_purge_if_due(bool may_start_thread);
  BITSLAB_NOINLINE void release_slab(Slab* s);  // rare: out of free_into_listed's way

  SmallBin bins_[kSmallClassCount];
  uint64_t rng_ = 1;  // hardened build: the random slot choice (take_random_bit)
  profile::SampleClock sample_clock_;  // the heap profiler's (sample_clock())
  // Pool cache refills and spills left before this heap next asks whether the process's purge is
  // due: the clock is read once per kPurgeCheckEvery of them, not on each (maybe_purge).
  uint32_t purge_countdown_ = 0;
  // Bytes of room the block caches may still grow by (kBlockCacheGrowthBytes when reset); 0 in
  // the empty heap and the hardened build, which never cache.
  size_t cache_growth_left_ = 0;
  size_t cache_growth_spare_ = 0;  // set aside by a growth that did not fit (grow_block_cache)
  uint32_t purge_epoch_seen_ = 0;  // backend::purge_epoch() when shrink_idle_block_caches last looked
  uint64_t allocs_seen_[kSmallClassCount] = {};  // each class's counts.allocs then
  // Frees in a row, with no malloc of the class between them, that found its cache full; and
  // counts.allocs at the last of them (free_small_grow).
  uint32_t overflow_run_[kSmallClassCount] = {};
  uint64_t overflow_allocs_[kSmallClassCount] = {};
  // Written into the first word of a freed block of this heap's slabs, by whichever thread
  // frees it; random per heap, odd so no aligned pointer a program stores in its block's first
  // word ever equals it. Set once. Every free reads the copy in the slab's identity line
  // (Slab::owner_mark), whoever frees; this one only the owner's slower paths and
  // Slab::create read. Its line of its own dates from when other threads read it here; the
  // layout is left as it was measured (not measured without the alignment).
  alignas(64) uint64_t cache_mark_ = 0;
  // Class c's row is [c * kBlockCacheSlots, (c + 1) * kBlockCacheSlots); only [bottom, top) of
  // a row is ever read, so a new heap leaves the rows as it finds them (core/base/untouched_array.h).
  alignas(64) UntouchedArray<void*, kSmallClassCount * kBlockCacheSlots> cache_;
  // A class's row once its cache grows past its first room (grow_block_cache): c's is
  // [c * kBlockCacheMaxSlots, ...). Apart from cache_ so that a heap whose caches never grow
  // touches 12 KiB of rows, not a page per class; a grown row is touched as it fills.
  alignas(64) UntouchedArray<void*, kSmallClassCount * kBlockCacheMaxSlots> grown_cache_;
  // The pool caches' rows (PoolCache): a thread touches the rows of the classes it uses only.
  // The counts lie between the two arrays so that a slot of one is not 16 KiB (a multiple of
  // 4 KiB) from the same slot of the other: a load of one right after a store to the other
  // looked to the CPU like a load from that store (4K aliasing).
  UntouchedArray<void*, kPoolClassCount * kPoolCacheSlots> pool_chunks_;
  PoolCache pool_cache_[kPoolClassCount];
  size_t pool_growth_left_ = 0;  // bytes of room the pool caches may still grow by
  UntouchedArray<uint8_t*, kPoolClassCount * kPoolCacheSlots> pool_states_;
  // Slabs of this heap that other threads freed blocks into (core/small/remote_frees.h),
  // linked through their headers; pushed by anyone, taken all at once by the owner.
  alignas(64) Slab* remote_slabs_ = nullptr;
  // Owned by HeapRegistry.
  alignas(64) ThreadHeap* next_all_ = nullptr;
  ThreadHeap* next_parked_ = nullptr;
  uint64_t parked_since_ns_ = 0;  // when it was last parked (the coarse clock)
  // Who runs the heap. kParked: on the parked list, no thread; kCollecting: parked, and a
  // thread that posted frees to it is applying them (HeapRegistry::collect); kRetired: a dead
  // thread's heap in a fork child, never run again. Changed by CAS or under the registry lock.
  enum State : uint8_t { kUnused, kInUse, kParked, kCollecting, kRetired };
  uint8_t state_ = kUnused;
};

// Out of memory: gives back everything that can be given back now — this thread's cached blocks,
// chunks and empty slabs (ThreadHeap::flush), then backend::reclaim (the page cache, empty pool
// regions, free granules unmapped) — so that the caller can try once more.
void reclaim_memory();

}  // namespace bitslab
