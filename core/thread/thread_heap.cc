#include "core/thread/thread_heap.h"

#include <sys/auxv.h>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/backend/backend.h"
#include "core/os/heap_range.h"
#include "core/profile/profiler.h"
#include "core/small/remote_frees.h"
#include "core/thread/bootstrap.h"
#include "core/thread/heap_registry.h"

namespace bitslab {

// ---- the heap profiler's sample clock ----------------------------------------------------

namespace {
BITSLAB_TLS constinit profile::SampleClock tls_teardown_clock;
}

profile::SampleClock& ThreadHeap::this_threads_sample_clock() {
  if (tls_heap != &kEmptyHeap) return tls_heap->sample_clock_;
  if (ThreadHeap* heap = thread_init()) return heap->sample_clock_;
  return tls_teardown_clock;  // in teardown (or out of memory): a clock of the thread's own
}

// ---- small blocks ------------------------------------------------------------------------

void* ThreadHeap::alloc_small_slow(unsigned cls) {
  if (this == &kEmptyHeap) {
    // First allocation of this thread, or an allocation during its teardown.
    if (ThreadHeap* heap = thread_init()) return heap->alloc_small(cls);
    if (!thread_torn_down()) return nullptr;  // errno = ENOMEM from thread_init
    ThreadHeap* borrowed = borrow_heap();
    if (borrowed == nullptr) return nullptr;
    void* p = borrowed->alloc_small(cls);
    return_heap(borrowed);
    return p;
  }
  drain_remote();
  shrink_idle_block_caches();
  SmallBin& bin = bins_[cls];
  // The peak is sampled here, once per refill: between refills the cache and the slab word
  // hand out at most kBlockCacheMaxSlots + 64 blocks, the bound on how much it can miss.
  bin.counts.sample_peak();
  Slab* current = bin.current;
  // Blocks freed behind the scan hint, or just drained, are still in the current slab.
  if (void* p = current->take_from(0)) {
    ++bin.counts.allocs;
    return p;
  }

  Slab* next = take_partial(cls);
  if (next == nullptr) {
    backend::purge_if_due();  // a page-level event: the clock is read each time (1 in 64+ allocs)
    void* page = backend::slab_pages().allocate_one();
    if (page == nullptr) {  // out of memory: give back what can be given back, try once more
      reclaim_memory();
      page = backend::slab_pages().allocate_one();
    }
    if (page == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
    next = Slab::create(page, cls, this, cache_mark_);
  }
  make_current(bin, next);
  ++bin.counts.allocs;
  return next->take_from(next->hint);  // a fresh or partial slab: never empty
}

void ThreadHeap::make_current(SmallBin& bin, Slab* next) {
  Slab* old = bin.current;
  if (old != &kEmptySlab) {
    // Full: it had no free bit left. Listed again by its next free, which counts down from here.
    old->state = Slab::kFull;
    old->used = old->capacity;
  }
  next->state = Slab::kCurrent;
  bin.current = next;
}

Slab* ThreadHeap::take_partial(unsigned cls) {
  SmallBin& bin = bins_[cls];
  Slab* s = bin.partial;
  if (s == nullptr) return nullptr;
  bin.partial = s->next;
  if (s->next != nullptr) s->next->prev = nullptr;
  s->prev = s->next = nullptr;
  s->hint = 0;
  return s;
}

void ThreadHeap::free_into_listed(Slab* s, uint32_t n) {
  s->used -= n;
  SmallBin& bin = bins_[s->size_class];
  if (s->state == Slab::kFull) {  // it has a free block again: list it
    s->state = Slab::kPartial;
    s->prev = nullptr;
    s->next = bin.partial;
    if (bin.partial != nullptr) bin.partial->prev = s;
    bin.partial = s;
  }
  // An empty partial slab goes back to the page cache; an empty current slab is kept, so a
  // loop of one malloc and one free does not take and return a page each time.
  if (s->used == 0 && s->state == Slab::kPartial) {
    if (s->prev != nullptr) s->prev->next = s->next;
    else bin.partial = s->next;
    if (s->next != nullptr) s->next->prev = s->prev;
    release_slab(s);
  }
}

void ThreadHeap::release_slab(Slab* s) {
  s->retire();
  backend::slab_pages().deallocate_one(s->page());
  // A page-level event, as above. The purge thread (after a fork) is started only from the
  // thread's own heap: another heap's slabs go back while the registry lock may be held (a
  // parked heap's flush, HeapRegistry::flush_parked), and starting a thread allocates.
  backend::purge_if_due(/*may_start_thread=*/this == tls_heap);
}

void ThreadHeap::backend_purge_if_due(bool may_start_thread) { backend::purge_if_due(may_start_thread); }

void reclaim_memory() {
  if (tls_heap != &kEmptyHeap) tls_heap->flush();
  backend::reclaim();
}

// ---- the block cache -----------------------------------------------------------------------

void ThreadHeap::enable_cache() {
  for (unsigned cls = 0; cls < kSmallClassCount; ++cls) {
    bins_[cls].top = bins_[cls].bottom = &cache_[cls * kBlockCacheSlots];
    // The hardened build caches nothing: a LIFO cache hands a freed block straight back, which
    // is what a use-after-free exploit counts on; every free goes to the bitmap.
    bins_[cls].limit = bins_[cls].bottom + (kHardened ? 0 : first_block_cache_room(cls));
  }
  cache_growth_left_ = kHardened ? 0 : kBlockCacheGrowthBytes;
  reset_pool_limits();
  // AT_RANDOM: 16 bytes the kernel gives every process; mixed with the heap's address so each
  // heap has its own mark. Read without allocating.
  uint64_t seed = 0x9e3779b97f4a7c15;
  if (const void* random = reinterpret_cast<const void*>(getauxval(AT_RANDOM)))
    memcpy(&seed, random, sizeof seed);
  cache_mark_ = (seed ^ (reinterpret_cast<uintptr_t>(this) * 0xbf58476d1ce4e5b9)) | 1;
  rng_ = (cache_mark_ * 0x9e3779b97f4a7c15) | 1;  // xorshift state: any non-zero value
}

namespace {
// Whether test(heap) holds for any other heap than `self` (the registry's heaps, under its lock).
template <typename Test>
bool any_other_heap(const ThreadHeap* self, Test test) {
  struct Search {
    const ThreadHeap* self;
    Test* test;
    bool found;
  } search{self, &test, false};
  HeapRegistry::for_each_heap(
      [](const ThreadHeap* heap, void* ctx) {
        auto* search = static_cast<Search*>(ctx);
        search->found = search->found || (heap != search->self && (*search->test)(heap));
      },
      &search);
  return search.found;
}
// Whether test(heap) holds for self, asked first and without the registry's lock (the usual
// case: the block is this thread's business), or else for any other heap.
template <typename Test>
bool any_heap(const ThreadHeap* self, Test test) {
  return test(self) || any_other_heap(self, test);
}
}  // namespace

bool ThreadHeap::caches(const void* p, unsigned cls) const {
  const SmallBin& bin = bins_[cls];
  void* const* bottom = __atomic_load_n(&bin.bottom, __ATOMIC_RELAXED);
  void* const* top = __atomic_load_n(&bin.top, __ATOMIC_RELAXED);
  // The owner may be moving the stack to another row (grow_block_cache, a flush): a pair from
  // two rows is no range.
  if (top < bottom || top - bottom > static_cast<ptrdiff_t>(kBlockCacheMaxSlots)) return false;
  for (void* const* slot = bottom; slot < top; ++slot)
    if (__atomic_load_n(slot, __ATOMIC_RELAXED) == p) return true;
  return false;
}

void ThreadHeap::free_marked(Slab* s, void* p, uint32_t index) {
  const unsigned cls = s->size_class;
  // Free in its bitmap: a double free, for sure. (The owner's only: other threads never read
  // the bitmap; a block of another heap that is free there is caught when its owner applies
  // it, which is why the tail below sends such a block back rather than keeping it.)
  if (s->owner == this && s->free.is_free(index)) fatal("double free of", p);
  // Freed by another thread, not yet applied: for sure too (any thread's look).
  if (RemoteFrees::pending(s, index)) fatal("double free of", p);
  // Exact for this thread's cache; another thread's may change under the search, so a double
  // free racing with it can go unseen (and then the owner's apply_remote_frees, or the cache's
  // flush, still sees the bit free twice).
  if (any_heap(this, [&](const ThreadHeap* heap) { return heap->caches(p, cls); }))
    fatal("double free of", p);
  *static_cast<uint64_t*>(p) = 0;  // in no cache, not pending: the program's data only looked like the mark
  // Ours: as any free. Another heap's goes back to it, even of a class this thread would keep:
  // it may be free in its owner's bitmap (a double free that only the owner can see), and kept
  // here it would be handed out twice; sent back, the owner's apply_remote_frees aborts on it.
  if (s->owner == this)
    free_small(s, p, index);
  else
    free_remote(s, p, this, index);
}

void ThreadHeap::flush_cache(unsigned cls) {
  SmallBin& bin = bins_[cls];
  while (bin.top != bin.bottom) {
    void* p = *--bin.top;
    Slab* s = Slab::of(p);
    const uint32_t index = s->block_index(p);  // checked when it was cached
    if (s->owner != this) {  // another thread's block, cached here by free_small (and marked)
      --bin.counts.frees;    // the owner counts its free when it applies it
      post_remote(s, p, index);
      continue;
    }
    free_to_bitmap(s, p, index);  // keeps its mark
  }
}

// ---- frees from other threads --------------------------------------------------------------

void ThreadHeap::free_remote(Slab* s, void* p, ThreadHeap* self, uint32_t index) {
  // A header that is not a live slab's (given back, or metadata that was never one) has an
  // owner no heap is, and lands here: its index meant nothing.
  if (!s->live()) fatal("free of a pointer that bitslab never handed out:", p);
  // The owner cannot give the slab back while p is still out (its bit is clear), so the
  // header read here is current.
  uint64_t* mark = static_cast<uint64_t*>(p);
  // Marked: on its way to the owner, or in the owner's bitmap or cache. Marking p here makes
  // the owner's free_small and every thread's free_remote see a second free of it.
  const uint64_t owner_mark = s->owner_mark;  // the owner's cache mark, on the identity line
  if (BITSLAB_UNLIKELY(*mark == owner_mark)) return self->free_marked(s, p, index);
  *mark = owner_mark;
  post_remote(s, p, index);
}

void ThreadHeap::post_foreign(Slab* s, void* p, uint32_t index) {
  *static_cast<uint64_t*>(p) = s->owner_mark;  // (checked against it by free_small)
  post_remote(s, p, index);
}

void ThreadHeap::post_remote(Slab* s, void* p, uint32_t index) {
  switch (RemoteFrees::post(s, index)) {
    case RemoteFrees::Posted::kDone:
      return;
    case RemoteFrees::Posted::kListSlab:  // the slab's first remote free since its owner looked
      return static_cast<ThreadHeap*>(s->owner)->list_remote_slab(s);
    case RemoteFrees::Posted::kDoubleFree:
      break;
  }
  fatal("double free of", p);
}

void ThreadHeap::list_remote_slab(Slab* s) {
  RemoteFrees::push(&remote_slabs_, s);
  // No thread runs this heap: apply the frees now, or its slabs would stay out until a new
  // thread adopts it. (seq_cst on both sides: either this load sees the heap parked, or the
  // thread that parks it, or ends a collection of it, then sees s listed.)
  if (BITSLAB_UNLIKELY(__atomic_load_n(&state_, __ATOMIC_SEQ_CST) == kParked)) HeapRegistry::collect(this);
}

// ---- the block cache's growth ----------------------------------------------------------------

namespace {
// Bytes the process's heaps have grown their block caches by, of kBlockCacheGrowthTotalBytes.
constinit std::atomic<size_t> g_block_cache_grown{0};

bool take_process_growth(size_t bytes) {
  if (g_block_cache_grown.fetch_add(bytes, std::memory_order_relaxed) + bytes <= kBlockCacheGrowthTotalBytes)
    return true;
  g_block_cache_grown.fetch_sub(bytes, std::memory_order_relaxed);
  return false;
}
}  // namespace

bool ThreadHeap::grow_block_cache(unsigned cls) {
  SmallBin& bin = bins_[cls];
  const size_t room = static_cast<size_t>(bin.limit - bin.bottom);
  const size_t grown = room * 2 < kBlockCacheMaxSlots ? room * 2 : kBlockCacheMaxSlots;
  const size_t bytes = (grown - room) * kSmallClassBytes[cls];
  // (The hardened build and the empty heap have no room and no budget: nothing grows.)
  if (bytes == 0) return false;
  if (bytes > cache_growth_left_ || !take_process_growth(bytes)) {
    // Out of budget: what is left waits for the next purge or flush (shrink_idle_block_caches),
    // so that free_small's full path stops calling here meanwhile (a call per free: 1 KiB
    // batches of 1000 took 153 instructions a pair with 256 KiB of budget, 115 with none).
    cache_growth_spare_ += cache_growth_left_;
    cache_growth_left_ = 0;
    return false;
  }
  cache_growth_left_ -= bytes;
  void** row = &grown_cache_[cls * kBlockCacheMaxSlots];
  if (!block_cache_grown(cls)) {  // first growth: the blocks move to the class's own row
    const size_t n = static_cast<size_t>(bin.top - bin.bottom);
    memcpy(row, bin.bottom, n * sizeof(void*));
    __atomic_store_n(&bin.top, row + n, __ATOMIC_RELAXED);  // (read by other threads: caches())
    __atomic_store_n(&bin.bottom, row, __ATOMIC_RELAXED);
  }
  bin.limit = row + grown;
  return true;
}

void ThreadHeap::free_small_grow(Slab* s, void* p) {
  // A batch's frees overflow the cache back to back; a program that allocates and frees the
  // class at random (a live set churning) meets a full cache now and then, with mallocs in
  // between, and growing for it only held more blocks (bench_server: 39 MiB against 32).
  const unsigned cls = s->size_class;
  const uint64_t allocs = bins_[cls].counts.allocs;
  // A malloc since the last overflow starts a new run. A select, not a branch: in a churning
  // live set the answer is random, and as a branch it missed on nearly every call (bench_server,
  // one thread: 28.6K mispredicts in 28.5K calls, cachegrind).
  const uint32_t same_run = -static_cast<uint32_t>(allocs == overflow_allocs_[cls]);  // all ones or 0
  const uint32_t run = (overflow_run_[cls] & same_run) + 1;
  overflow_allocs_[cls] = allocs;
  overflow_run_[cls] = run;
  if (run < kBlockCacheGrowthRun || !grow_block_cache(cls)) return free_to_bitmap(s, p, s->block_index(p));
  overflow_run_[cls] = 0;
  SmallBin& bin = bins_[cls];  // (its free is counted already)
  *bin.top = p;
  bin.top = bin.top + 1;
  *static_cast<uint64_t*>(p) = cache_mark_;
}

void ThreadHeap::shrink_block_cache(unsigned cls) {
  if (!block_cache_grown(cls)) return;
  SmallBin& bin = bins_[cls];
  void** row = &cache_[cls * kBlockCacheSlots];
  const size_t first = first_block_cache_room(cls);
  const size_t bytes = (static_cast<size_t>(bin.limit - bin.bottom) - first) * kSmallClassBytes[cls];
  __atomic_store_n(&bin.bottom, row, __ATOMIC_RELAXED);  // (read by other threads: caches())
  __atomic_store_n(&bin.top, row, __ATOMIC_RELAXED);
  bin.limit = row + first;
  g_block_cache_grown.fetch_sub(bytes, std::memory_order_relaxed);
  cache_growth_left_ += bytes;
}

void ThreadHeap::shrink_idle_block_caches() {
  // The empty heap (a thread in teardown takes pool chunks through it) has no grown cache
  // (block_cache_grown is false for its null rows), and is every such thread's: the epoch and
  // counts below are not written there, where threads would race on them.
  if (this == &kEmptyHeap) return;
  const uint32_t epoch = backend::purge_epoch();
  if (BITSLAB_LIKELY(epoch == purge_epoch_seen_)) return;
  purge_epoch_seen_ = epoch;
  restore_set_aside_growth();  // a growth that failed may fit now
  for (unsigned cls = 0; cls < kSmallClassCount; ++cls) {
    const uint64_t allocs = bins_[cls].counts.allocs;
    if (block_cache_grown(cls) && allocs == allocs_seen_[cls]) {
      flush_cache(cls);
      shrink_block_cache(cls);
    }
    allocs_seen_[cls] = allocs;
  }
}

bool ThreadHeap::has_remote_frees() const {
  return __atomic_load_n(&remote_slabs_, __ATOMIC_SEQ_CST) != nullptr;
}

void ThreadHeap::drain_remote() {
  // One load when no slab is listed; the exchange takes the whole list, so there is no ABA.
  if (__atomic_load_n(&remote_slabs_, __ATOMIC_RELAXED) == nullptr) return;
  Slab* s = __atomic_exchange_n(&remote_slabs_, nullptr, __ATOMIC_ACQUIRE);
  while (s != nullptr) {
    Slab* next = RemoteFrees::next(s);  // before take: s may be listed again after it
    if constexpr (kHardened)            // the list runs through headers: a forged one would be applied
      if (!s->live() || s->owner != this)
        fatal("heap corruption: a slab not this heap's is on its remote list:", s);
    if (BITSLAB_UNLIKELY(!s->remote_tail_intact()))
      fatal("heap corruption: the remote-free words past this slab's last block were overwritten:",
            s->page());
    RemoteFrees::take(s, [&](uint32_t word, uint64_t mask) { apply_remote_frees(s, word, mask); });
    s = next;
  }
}

BITSLAB_ALWAYS_INLINE void ThreadHeap::apply_remote_frees(Slab* s, uint32_t word, uint64_t mask) {
  // The 16 B class's words lie past its last block (core/small/slab.h): an overflow out of that
  // block lands there, and a bit past the slab's end is no free's.
  const uint32_t blocks_in_word = s->capacity - word * 64;  // >= 1: word is one of the slab's
  if (BITSLAB_UNLIKELY(blocks_in_word < 64 && (mask >> blocks_in_word) != 0))
    fatal("heap corruption: the remote-free words of this slab were overwritten:", s->page());
  uint64_t& bits = s->free.words[word];
  // A block freed twice, its second free unseen by the mark (the first had been applied, and
  // its mark taken for the program's data), is free already: caught here.
  if (BITSLAB_UNLIKELY((bits & mask) != 0))
    fatal("double free of", s->block_at(size_t{word} * 64 + ctz64(bits & mask)));
  bits |= mask;
  // A lone free's mask has one bit (frees spread over a slab, or a thread that frees now and
  // then), and the baseline x86-64 build has no popcnt instruction (12 instructions instead).
  const uint32_t n = (mask & (mask - 1)) == 0 ? 1 : popcount64(mask);
  bins_[s->size_class].counts.frees += n;
  // Into the bitmap, not the block cache: the owner then hands the blocks out in address order,
  // which the CPU's prefetcher follows (pushed on the cache, producer_consumer ran 1.5x slower).
  count_back(s, n);
}

void ThreadHeap::add_counts(ClassCounts* small, ClassCounts* pool) const {
  for (unsigned cls = 0; cls < kSmallClassCount; ++cls) small[cls].add(bins_[cls].counts);
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls) pool[cls].add(pool_cache_[cls].counts);
}

void ThreadHeap::count_cached_blocks(size_t cached[kSmallClassCount]) const {
  for (unsigned cls = 0; cls < kSmallClassCount; ++cls)
    cached[cls] += static_cast<size_t>(bins_[cls].top - bins_[cls].bottom);
}

void ThreadHeap::count_cached_chunks(size_t cached[kPoolClassCount]) const {
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls) cached[cls] += pool_cache_[cls].count;
}

// ---- pool chunks -------------------------------------------------------------------------

namespace {
// Chunks of class cls that fit in `bytes`, at most `most`, one at least: a cache's capacity
// (kPoolCacheBytes) and a refill's size (kPoolCacheRefillBytes).
uint32_t chunks_within(size_t bytes, unsigned cls, uint32_t most) {
  const size_t by_bytes = bytes / pool_class_bytes(cls);
  const size_t n = by_bytes < most ? by_bytes : most;
  return static_cast<uint32_t>(n != 0 ? n : 1);
}
}  // namespace

void ThreadHeap::reset_pool_limits() {
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls)
    pool_cache_[cls].limit = chunks_within(kPoolCacheBytes, cls, kPoolCacheStartSlots);
  pool_growth_left_ = kPoolCacheGrowthBytes;
}

void ThreadHeap::grow_pool_cache(unsigned cls) {
  PoolCache& c = pool_cache_[cls];
  // Not the empty heap (limit 0, never caches), nor a class's first refill.
  if (c.limit == 0 || c.counts.allocs == 0) return;
  const uint32_t cap = chunks_within(kPoolCacheBytes, cls, kPoolCacheSlots);
  const uint32_t grown = c.limit + kPoolCacheStartSlots < cap ? c.limit + kPoolCacheStartSlots : cap;
  const size_t bytes = (grown - c.limit) * pool_class_bytes(cls);
  if (bytes == 0 || bytes > pool_growth_left_) return;
  pool_growth_left_ -= bytes;
  c.limit = grown;
}

void* ThreadHeap::alloc_pool_slow(size_t size, ThreadHeap* heap) { return heap->refill_pool_cache(size); }

void* ThreadHeap::refill_pool_cache(size_t size) {
  if (this == &kEmptyHeap && !thread_torn_down()) {
    if (ThreadHeap* heap = thread_init()) return alloc_pool(size, heap);
    return nullptr;
  }
  process_init();
  maybe_purge(false);
  shrink_idle_block_caches();  // a program may have moved on from small blocks to these
  const unsigned cls = pool_class_of(size);
  grow_pool_cache(cls);
  PoolCache& c = pool_cache_[cls];  // empty: alloc_pool missed
  // Refill: a batch of the class under one lock, straight into the cache's row, marked cached
  // by the pool as it takes them, with the lowest on top: that one is the caller's. The empty
  // heap (a thread in teardown, limit 0) takes one, into a local: it must never cache, and its
  // rows are every such thread's.
  void* own_chunk;
  uint8_t* own_state;
  const bool caches = c.limit != 0;
  void** chunks = caches ? &pool_chunks_[pool_slot(cls, 0)] : &own_chunk;
  uint8_t** states = caches ? &pool_states_[pool_slot(cls, 0)] : &own_state;
  const auto as = caches ? PoolRegion::kCached : PoolRegion::kHandedOut;
  ChunkPool& pool = backend::pools().pool(cls);
  size_t got = pool.allocate_batch(chunks, states, chunks_within(kPoolCacheRefillBytes, cls, c.limit), as);
  if (got == 0 && errno == ENOMEM) {  // out of memory: give back what can be given back, once more
    reclaim_memory();                 // (its flush resets the limit: the size is asked again)
    got = pool.allocate_batch(chunks, states, chunks_within(kPoolCacheRefillBytes, cls, c.limit), as);
  }
  void* chunk;
  if (got != 0) {
    chunk = chunks[got - 1];
    PoolRegion::set_state(states[got - 1], PoolRegion::kHandedOut);
    c.count = static_cast<uint32_t>(got - 1);
  } else {
    // The class is exhausted (a capacity, or no memory even after the reclaim): a larger class.
    chunk = backend::pools().allocate(size);
    if (chunk == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
  }
  // Counted in the chunk's own class (promotion may have given a larger one). The shared
  // empty heap counts nowhere: its counters would race.
  if (this != &kEmptyHeap) {
    PoolCache& counted = pool_cache_[PoolRegion::of(chunk)->size_class];
    ++counted.counts.allocs;
    counted.counts.sample_peak();
  }
  return chunk;
}

void ThreadHeap::free_pool(void* chunk) {
  uint32_t slot;  // a double free, or no chunk's start, aborts (a tail call: no stack frame)
  if (BITSLAB_UNLIKELY(!ChunkPool::is_handed_out(chunk, slot))) return free_pool_sample_or_abort(chunk);
  PoolRegion* region = PoolRegion::of(chunk);
  const unsigned cls = region->size_class;
  PoolCache& c = pool_cache_[cls];
  if (BITSLAB_LIKELY(c.count < c.limit)) {  // never in the empty heap (limit 0): it must not cache
    ++c.counts.frees;
    return cache_chunk(cls, c, chunk, &region->state[slot]);
  }
  spill_pool_cache(chunk, &region->state[slot]);
}

void ThreadHeap::free_pool_sample_or_abort(void* chunk) {
  if (!PoolRegion::unmark_sampled(chunk)) fatal(ChunkPool::why_not_handed_out(chunk), chunk);
  profile::forget(chunk);
  free_pool(chunk);
}

void ThreadHeap::spill_pool_cache(void* chunk, uint8_t* state) {
  const unsigned cls = PoolRegion::of(chunk)->size_class;
  // The empty heap is shared by every thread that has none: it never caches, nor counts.
  if (this == &kEmptyHeap) return backend::pools().release_one(chunk);
  PoolCache& c = pool_cache_[cls];
  ++c.counts.frees;
  // Three quarters of the stack go back (the top, straight from the row), and chunk takes
  // their place: a run of frees then costs one lock per 3/4 of the cache.
  const uint32_t n = c.count - c.count / 4;
  c.count -= n;
  backend::pools().pool(cls).release(&pool_chunks_[pool_slot(cls, c.count)], n);
  cache_chunk(cls, c, chunk, state);
  maybe_purge(/*may_start_thread=*/true);
}

void ThreadHeap::flush_pool_cache(unsigned cls) {
  PoolCache& c = pool_cache_[cls];
  if (c.count == 0) return;
  backend::pools().pool(cls).release(&pool_chunks_[pool_slot(cls, 0)], c.count);
  c.count = 0;
}

// ---- thread exit ---------------------------------------------------------------------------

void ThreadHeap::flush() {
  drain_remote();
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls) flush_pool_cache(cls);
  if (this != &kEmptyHeap) reset_pool_limits();  // (the empty heap's stay 0)
  for (unsigned cls = 0; cls < kSmallClassCount; ++cls) flush_cache(cls);
  if (this != &kEmptyHeap && !kHardened) {
    for (unsigned cls = 0; cls < kSmallClassCount; ++cls) shrink_block_cache(cls);
    restore_set_aside_growth();
  }
  for (SmallBin& bin : bins_) {
    if (bin.current != &kEmptySlab && bin.current->all_free()) {
      release_slab(bin.current);
      bin.current = &kEmptySlab;
    }
  }
}

}  // namespace bitslab
