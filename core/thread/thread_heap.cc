#include "core/thread/thread_heap.h"

#include <cerrno>
#include <cstring>
#include <sys/auxv.h>

#include "core/backend/backend.h"
#include "core/os/heap_range.h"
#include "core/thread/bootstrap.h"
#include "core/thread/heap_registry.h"

namespace bitslab {

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
  post_batches();
  drain_remote();
  SmallBin& bin = bins_[cls];
  // The peak is sampled here, once per refill: between refills the cache and the slab word
  // hand out at most kBlockCacheSlots + 64 blocks, the bound on how much it can miss.
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
    next = Slab::create(page, cls, this);
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

void ThreadHeap::free_into_listed(Slab* s) {
  --s->used;
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
  backend::purge_if_due(/*may_start_thread=*/true);  // a page-level event, as above
}

void ThreadHeap::backend_purge_if_due(bool may_start_thread) { backend::purge_if_due(may_start_thread); }

void reclaim_memory() {
  if (tls_heap != &kEmptyHeap) tls_heap->flush();
  backend::reclaim();
}

// ---- the block cache -----------------------------------------------------------------------

void ThreadHeap::enable_cache() {
  for (unsigned cls = 0; cls < kSmallClassCount; ++cls) {
    const size_t by_bytes = kBlockCacheBytes / kSmallClassBytes[cls];
    bins_[cls].top = bins_[cls].bottom = &cache_[cls * kBlockCacheSlots];
    // The hardened build caches nothing: a LIFO cache hands a freed block straight back, which
    // is what a use-after-free exploit counts on; every free goes to the bitmap.
    const size_t slots = kHardened ? 0 : by_bytes < kBlockCacheSlots ? by_bytes : kBlockCacheSlots;
    bins_[cls].limit = bins_[cls].bottom + slots;
  }
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls) {
    const size_t by_bytes = kPoolCacheBytes / pool_class_bytes(cls);
    pool_cache_[cls].limit = static_cast<uint32_t>(by_bytes == 0                ? 1
                                                   : by_bytes < kPoolCacheSlots ? by_bytes
                                                                                : kPoolCacheSlots);
  }
  // AT_RANDOM: 16 bytes the kernel gives every process; mixed with the heap's address so each
  // heap has its own mark. Read without allocating.
  uint64_t seed = 0x9e3779b97f4a7c15;
  if (const void* random = reinterpret_cast<const void*>(getauxval(AT_RANDOM)))
    memcpy(&seed, random, sizeof seed);
  cache_mark_ = (seed ^ (reinterpret_cast<uintptr_t>(this) * 0xbf58476d1ce4e5b9)) | 1;
  flight_mark_ = (cache_mark_ * 0xbf58476d1ce4e5b9) | 1;
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
  void* const* top = __atomic_load_n(&bin.top, __ATOMIC_RELAXED);
  for (void* const* slot = bin.bottom; slot < top; ++slot)
    if (__atomic_load_n(slot, __ATOMIC_RELAXED) == p) return true;
  return false;
}

void ThreadHeap::free_marked(Slab* s, void* p) {
  const unsigned cls = s->size_class;
  if (any_heap(this, [&](const ThreadHeap* heap) { return heap->caches(p, cls); }))
    fatal("double free of", p);
  *static_cast<uint64_t*>(p) = 0;  // in no cache: the program's data only looked like the mark
  if (s->owner == this)
    free_small(s, p);
  else
    free_remote(s, p);
}

void ThreadHeap::flush_cache(unsigned cls) {
  SmallBin& bin = bins_[cls];
  while (bin.top != bin.bottom) {
    void* p = *--bin.top;
    *static_cast<uint64_t*>(p) = 0;
    Slab* s = Slab::of(p);
    if (s->owner != this) {  // another thread's block, cached here by free_remote
      --bin.counts.frees;    // the owner counts its free when it applies it
      batch_remote(static_cast<ThreadHeap*>(s->owner), p);
      continue;
    }
    const uint32_t i = s->block_index(p);  // checked when it was cached
    free_to_bitmap(s, s->free.words[i / 64], uint64_t{1} << (i % 64));
  }
}

// ---- frees from other threads --------------------------------------------------------------

void ThreadHeap::free_remote(Slab* s, void* p) {
  if (!s->live() || s->block_index(p) == Slab::kNoBlock)
    fatal("free of a pointer that bitslab never handed out:", p);
  // The owner cannot give the slab back while p is still out (its bit is clear), so the owner
  // pointer read here is current. Heaps are never destroyed, so posting is always safe.
  auto* owner = static_cast<ThreadHeap*>(s->owner);
  ThreadHeap* self = tls_heap;
  uint64_t* mark = static_cast<uint64_t*>(p);
  // On its way to the owner already (its second word carries the owner's flight mark)?
  if (BITSLAB_UNLIKELY(mark[1] == owner->flight_mark_)) return free_in_flight_marked(self, s, p);
  // Cached with the owner's mark, so that the owner's free_small, this thread's and any other's
  // free_remote all see a double free of p, wherever p is cached (free_marked).
  const uint64_t owner_mark = owner->cache_mark_;  // a line the owner never writes
  if (BITSLAB_UNLIKELY(*mark == owner_mark)) return self->free_marked(s, p);
  if (self == &kEmptyHeap) {  // no heap to cache or batch in: post now
    mark[1] = owner->flight_mark_;
    return owner->remote_push(p, p);
  }
  const unsigned cls = s->size_class;
  SmallBin& bin = self->bins_[cls];
  // Kept only if p is alone on its cache lines and there is room; then the next malloc of the
  // class here reuses it. A smaller block shares a line with blocks its owner may be writing:
  // reused here, both threads would write that line (passive false sharing).
  if (BITSLAB_LIKELY(small_class_owns_its_lines(cls) && bin.top != bin.limit)) {
    ++bin.counts.frees;
    *mark = owner_mark;
    *bin.top++ = p;
    return;
  }
  self->batch_remote(owner, p);  // a small class, or a long run of frees past the cache's `limit`
}

void ThreadHeap::batch_remote(ThreadHeap* owner, void* p) {
  static_cast<uint64_t*>(p)[1] = owner->flight_mark_;  // in flight until the owner applies it
  // Slot by owner (heaps are kHeapStride apart): a different owner in the slot posts first.
  const uintptr_t hash = (reinterpret_cast<uintptr_t>(owner) >> 6) * 0x9e3779b97f4a7c15;
  RemoteBatch& batch = batches_[hash >> (64 - 3)];
  static_assert(kRemoteBatchSlots == 8, "the slot is the top 3 bits of the hash");
  if (batch.owner != owner) {
    if (batch.count != 0) post(batch);
    batch.owner = owner;
  }
  TaggedStack::store_link(p, batch.first);
  batch.first = p;
  if (batch.count++ == 0) batch.last = p;
  if (batch.count == kRemoteBatchBlocks) post(batch);
}

void ThreadHeap::post(RemoteBatch& batch) {
  batch.owner->remote_push(batch.first, batch.last);
  batch.first = batch.last = nullptr;
  batch.count = 0;
}

void ThreadHeap::post_batches() {
  for (RemoteBatch& batch : batches_)
    if (batch.count != 0) post(batch);
}

namespace {
// Whether the list linked through first words from `block` holds p. A list another thread may
// be changing: only links into live slabs are followed, and at most kRemoteBatchBlocks * 64.
bool list_holds(const void* block, const void* p) {
  for (size_t n = 0; block != nullptr && n < kRemoteBatchBlocks * 64; ++n) {
    if (block == p) return true;
    if (HeapRange::kind_of(block) != GranuleKind::kSlabs || !Slab::of(block)->live()) return false;
    block = TaggedStack::load_link(const_cast<void*>(block));
  }
  return false;
}
}  // namespace

bool ThreadHeap::holds_in_flight(const void* p) const {
  for (const RemoteBatch& batch : batches_)
    if (__atomic_load_n(&batch.count, __ATOMIC_RELAXED) != 0 &&
        list_holds(__atomic_load_n(&batch.first, __ATOMIC_RELAXED), p))
      return true;
  return list_holds(remote_.load(std::memory_order_acquire), p);
}

void ThreadHeap::free_in_flight_marked(ThreadHeap* self, Slab* s, void* p) {
  // Exact for this thread's batches; another thread's batch or the owner's list may change
  // under the search, so a double free racing with them can go unseen.
  // (The empty heap holds nothing in flight: it never batches, and owns no slab.)
  if (any_heap(self, [&](const ThreadHeap* heap) { return heap->holds_in_flight(p); }))
    fatal("double free of", p);
  static_cast<uint64_t*>(p)[1] = 0;  // in no list: the program's data only looked like the mark
  free_remote(s, p);
}

void ThreadHeap::remote_push(void* first, void* last) {
  void* head = remote_.load(std::memory_order_relaxed);
  do {
    TaggedStack::store_link(last, head);
  } while (!remote_.compare_exchange_weak(head, first, std::memory_order_seq_cst, std::memory_order_relaxed));
  // No thread runs this heap: apply the frees now, or its slabs would stay out until a new
  // thread adopts it. (seq_cst on both sides: either this load sees the heap parked, or the
  // thread that parks it, or ends a collection of it, then sees these blocks on remote_.)
  if (BITSLAB_UNLIKELY(__atomic_load_n(&state_, __ATOMIC_SEQ_CST) == kParked)) HeapRegistry::collect(this);
}

bool ThreadHeap::has_remote_frees() const { return remote_.load(std::memory_order_seq_cst) != nullptr; }

void ThreadHeap::drain_remote() {
  // One load when nothing was posted; the exchange takes the whole list, so there is no ABA.
  if (remote_.load(std::memory_order_relaxed) == nullptr) return;
  void* block = remote_.exchange(nullptr, std::memory_order_acquire);
  [[maybe_unused]] void* linked_from = block;  // the block whose link led here
  while (block != nullptr) {
    if constexpr (kHardened)  // links are encoded: an overwritten one decodes to junk
      if (HeapRange::kind_of(block) != GranuleKind::kSlabs || !Slab::of(block)->live() ||
          Slab::of(block)->owner != this)
        fatal("heap corruption: the remote-free link in this block was overwritten:", linked_from);
    void* next = TaggedStack::load_link(block);
    static_cast<uint64_t*>(block)[1] = 0;  // arrived: no longer in flight
    linked_from = block;
    // A block posted twice is caught here: its bit is already set when the second copy comes.
    // One this thread freed again after it was posted is in its cache, with the cache mark in
    // place of its link: free_small's mark check finds it there before `next` is followed.
    free_small(Slab::of(block), block);
    block = next;
  }
}

namespace {
// Adds each block of a list linked through first words (as remote lists and batches are) to
// held[] by its slab's class. Stops at a block that is not in a live slab, or after
// kMaxCensusListWalk blocks: a census must never fault or loop on a list another thread changes.
void count_list(void* block, size_t held[kSmallClassCount]) {
  for (size_t n = 0; block != nullptr && n < kMaxCensusListWalk; ++n) {
    if (HeapRange::kind_of(block) != GranuleKind::kSlabs) return;
    const Slab* s = Slab::of(block);
    if (!s->live()) return;
    ++held[s->size_class];
    block = TaggedStack::load_link(block);
  }
}
}  // namespace

void ThreadHeap::add_counts(ClassCounts* small, ClassCounts* pool) const {
  for (unsigned cls = 0; cls < kSmallClassCount; ++cls) small[cls].add(bins_[cls].counts);
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls) pool[cls].add(pool_cache_[cls].counts);
}

void ThreadHeap::count_held_blocks(size_t cached[kSmallClassCount], size_t in_flight[kSmallClassCount]) const {
  for (unsigned cls = 0; cls < kSmallClassCount; ++cls)
    cached[cls] += static_cast<size_t>(bins_[cls].top - bins_[cls].bottom);
  for (const RemoteBatch& batch : batches_)
    if (batch.count != 0) count_list(batch.first, in_flight);
  count_list(remote_.load(std::memory_order_acquire), in_flight);
}

void ThreadHeap::count_cached_chunks(size_t cached[kPoolClassCount]) const {
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls) cached[cls] += pool_cache_[cls].count;
}

// ---- pool chunks -------------------------------------------------------------------------

void* ThreadHeap::alloc_pool_slow(size_t size) {
  if (this == &kEmptyHeap && !thread_torn_down()) {
    if (ThreadHeap* heap = thread_init()) return heap->alloc_pool(size);
    return nullptr;
  }
  process_init();
  maybe_purge(false);
  const unsigned cls = pool_class_of(size);
  PoolCache& c = pool_cache_[cls];  // empty: alloc_pool missed
  // Refill: a batch of the class under one lock; the first chunk is the caller's. The empty
  // heap (a thread in teardown, limit 0) takes one: it must never cache.
  void* batch[kPoolCacheSlots];
  uint8_t* flags[kPoolCacheSlots];
  size_t want = kPoolCacheRefillBytes / pool_class_bytes(cls);
  if (want > c.limit) want = c.limit;
  if (want == 0) want = 1;
  size_t got = backend::pools().pool(cls).allocate_batch(batch, flags, want);
  if (got == 0 && errno == ENOMEM) {  // out of memory: give back what can be given back, once more
    reclaim_memory();
    got = backend::pools().pool(cls).allocate_batch(batch, flags, want);
  }
  void* chunk = batch[0];
  if (got != 0) {
    for (size_t i = 1; i < got; ++i) cache_chunk(c, batch[i], flags[i]);
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
  const uint32_t slot = ChunkPool::check_handed_out(chunk);  // aborts on a double free
  PoolRegion* region = PoolRegion::of(chunk);
  // The empty heap is shared by every thread that has none: it must never cache, nor count.
  if (BITSLAB_UNLIKELY(this == &kEmptyHeap)) return backend::pools().release_one(chunk);
  PoolCache& c = pool_cache_[region->size_class];
  ++c.counts.frees;
  if (BITSLAB_LIKELY(c.count < c.limit)) return cache_chunk(c, chunk, &region->cached[slot]);
  spill_pool_cache(chunk, &region->cached[slot]);
}

void ThreadHeap::release_chunks(unsigned cls, void** chunks, uint8_t** flags, uint32_t n) {
  for (uint32_t i = 0; i < n; ++i) PoolRegion::set_cached(flags[i], false);
  backend::pools().pool(cls).release(chunks, n);
}

void ThreadHeap::spill_pool_cache(void* chunk, uint8_t* flag) {
  const unsigned cls = PoolRegion::of(chunk)->size_class;
  PoolCache& c = pool_cache_[cls];
  // Three quarters of the stack go back (the top, straight from the array), and chunk takes
  // their place: a run of frees then costs one lock per 6 of 8 chunks.
  const uint32_t n = c.count - c.count / 4;
  c.count -= n;
  release_chunks(cls, &c.slots[c.count], &c.flags[c.count], n);
  cache_chunk(c, chunk, flag);
  maybe_purge(/*may_start_thread=*/true);
}

void ThreadHeap::flush_pool_cache(unsigned cls) {
  PoolCache& c = pool_cache_[cls];
  if (c.count == 0) return;
  release_chunks(cls, c.slots, c.flags, c.count);
  c.count = 0;
}

// ---- thread exit ---------------------------------------------------------------------------

void ThreadHeap::flush() {
  post_batches();
  drain_remote();
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls) flush_pool_cache(cls);
  for (unsigned cls = 0; cls < kSmallClassCount; ++cls) flush_cache(cls);
  post_batches();  // the other heaps' blocks flush_cache found
  for (SmallBin& bin : bins_) {
    if (bin.current != &kEmptySlab && bin.current->all_free()) {
      release_slab(bin.current);
      bin.current = &kEmptySlab;
    }
  }
}

}  // namespace bitslab
