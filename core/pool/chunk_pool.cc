#include "core/pool/chunk_pool.h"

#include <cerrno>
#include <cstring>

#include "core/base/fatal.h"
#include "core/os/os.h"

namespace bitslab {

GranuleSource& ChunkPool::source() const {
  return source_ != nullptr ? *source_ : DirectGranules::instance();
}

namespace {
// The partial and the empty list: doubly linked through prev/next, newest first.
void push_front(PoolRegion*& head, PoolRegion* r) {
  r->prev = nullptr;
  r->next = head;
  if (head != nullptr) head->prev = r;
  head = r;
}
void unlink(PoolRegion*& head, PoolRegion* r) {
  if (r->prev != nullptr)
    r->prev->next = r->next;
  else
    head = r->next;
  if (r->next != nullptr) r->next->prev = r->prev;
}
}  // namespace

void ChunkPool::list(PoolRegion* r) {
  r->listed = true;
  push_front(partial_, r);
}

void ChunkPool::unlist(PoolRegion* r) {
  unlink(partial_, r);
  r->listed = false;
}

PoolRegion* ChunkPool::region_with_available(bool& took_granule) {
  if (partial_ != nullptr) return partial_;
  if (empty_ != nullptr) {  // the newest: the likeliest to be still in the caches
    PoolRegion* r = empty_;
    take_empty(r);
    list(r);
    return r;
  }
  void* granule = source().take(1, GranuleKind::kPool);  // under the lock: new regions are rare
  if (granule == nullptr) return nullptr;
  took_granule = true;
  PoolRegion* r = PoolRegion::create(granule, size_class_);
  r->next_all = all_;
  if (all_ != nullptr) all_->prev_all = r;
  all_ = r;
  regions_.fetch_add(1, std::memory_order_relaxed);
  list(r);
  return r;
}

size_t ChunkPool::allocate_batch(void** out, uint8_t** states, size_t n, PoolRegion::SlotState as) {
  size_t got = 0;
  bool took_granule = false;
  {
    SpinGuard guard(lock_);
    if (capacity_ != kUnlimited && n > capacity_ - (out_ < capacity_ ? out_ : capacity_))
      n = capacity_ - (out_ < capacity_ ? out_ : capacity_);
    while (got < n) {  // downwards from out[n - 1], lowest first
      PoolRegion* r = region_with_available(took_granule);
      if (r == nullptr) break;
      got += r->take_available(out + n - got, states + n - got, n - got, as);
      if (r->available == 0) unlist(r);
    }
    out_ += got;
  }
  if (got < n) {  // exhausted on the way (rare): the chunks move down to out[0, got)
    memmove(out, out + n - got, got * sizeof *out);
    memmove(states, states + n - got, got * sizeof *states);
  }
  // The footprint grew: the other pools' empty regions go back, for the page heap to hand out
  // next (after our lock: a pool never holds two pool locks). Once per new region, 4 MiB.
  if (took_granule && empties_ != nullptr)
    for (unsigned c = 0; c < empties_->count; ++c)
      if (&empties_->pools[c] != this) empties_->pools[c].give_back_empty_regions(0, 0);
  if (got == 0 && capacity_ == kUnlimited) errno = ENOMEM;
  return got;
}

PoolRegion* ChunkPool::retire_if_empty(PoolRegion* r) {
  if (r->available != r->slot_count) return nullptr;
  unlist(r);
  // Kept committed while the budget allows: a batch of chunks freed and allocated again (a
  // thread that comes and goes, a loop over 1000 buffers of 32 KiB) reuses the region without
  // faulting its pages back in: 1390 ns a malloc+free when each emptied region went back, and
  // the next batch faulted 32 MiB in again. Past the budget, and when the footprint grows
  // elsewhere (the backend's purge), it goes back: a phase change does not carry every class's
  // empty regions on top of the new phase's memory (bench/phases).
  if (empties_ == nullptr || empties_->budget.fetch_sub(1, std::memory_order_relaxed) <= 0) {
    if (empties_ != nullptr) empties_->budget.fetch_add(1, std::memory_order_relaxed);
    forget(r);
    return r;
  }
  r->empty_since_ns = os::coarse_now_ns();
  push_front(empty_, r);
  return nullptr;
}

void ChunkPool::take_empty(PoolRegion* r) {
  unlink(empty_, r);
  empties_->budget.fetch_add(1, std::memory_order_relaxed);
}

void ChunkPool::forget(PoolRegion* r) {
  if (r->prev_all != nullptr)
    r->prev_all->next_all = r->next_all;
  else
    all_ = r->next_all;
  if (r->next_all != nullptr) r->next_all->prev_all = r->prev_all;
  regions_.fetch_sub(1, std::memory_order_relaxed);
  r->magic = 0;  // a late free of one of its chunks is caught as never handed out
}

void ChunkPool::release(void* const* chunks, size_t n) {
  PoolRegion* emptied[4];
  size_t emptied_count = 0;
  {
    SpinGuard guard(lock_);
    out_ -= n;
    // A run of chunks of one region at a time: its lists and clocks are looked at once a run.
    for (size_t i = 0; i < n;) {
      PoolRegion* r = PoolRegion::of(chunks[i]);
      i += r->make_available(chunks + i, n - i);
      if (r->dirty_since_ns == 0) r->dirty_since_ns = os::coarse_now_ns();  // once per purge period
      // An empty region takes no release: every slot of it is available, so make_available
      // aborted. One off the partial list was full; one all available now goes back or waits.
      if (!r->listed) list(r);
      if (r->available == r->slot_count && emptied_count < 4)
        if (PoolRegion* gone = retire_if_empty(r)) emptied[emptied_count++] = gone;
    }
  }
  for (size_t i = 0; i < emptied_count; ++i) source().give(emptied[i], 1);
}

void ChunkPool::release_one(void* chunk) { release(&chunk, 1); }

size_t ChunkPool::purge(uint64_t now_ns, uint64_t delay_ns, bool force, uint64_t empty_delay_ns) {
  const uint64_t empty_delay = force ? 0 : empty_delay_ns;
  if (empty_delay != kKeepEmpty) give_back_empty_regions(now_ns, empty_delay);
  size_t bytes = 0;
  {
    SpinGuard guard(lock_);
    for (PoolRegion* r = all_; r != nullptr; r = r->next_all) {
      const bool aged = os::elapsed(now_ns, r->dirty_since_ns, delay_ns);
      if (r->dirty_since_ns == 0 || (!force && !aged)) continue;
      bytes += r->decommit_available();  // under the lock: nothing may take these slots meanwhile
      r->dirty_since_ns = 0;
    }
  }
  decommitted_.fetch_add(bytes, std::memory_order_relaxed);
  return bytes;
}

void ChunkPool::give_back_empty_regions(uint64_t now_ns, uint64_t idle_ns) {
  PoolRegion* idle = nullptr;  // linked through next
  {
    SpinGuard guard(lock_);
    for (PoolRegion* r = empty_; r != nullptr;) {
      PoolRegion* next = r->next;
      if (idle_ns == 0 || os::elapsed(now_ns, r->empty_since_ns, idle_ns)) {
        take_empty(r);
        forget(r);
        r->next = idle;
        idle = r;
      }
      r = next;
    }
  }
  while (idle != nullptr) {  // outside the lock: the source may make a system call
    PoolRegion* next = idle->next;
    source().give(idle, 1);
    idle = next;
  }
}

size_t ChunkPool::carved_chunks() const {
  SpinGuard guard(lock_);
  size_t n = 0;
  for (const PoolRegion* r = all_; r != nullptr; r = r->next_all)
    n += r->carved.load(std::memory_order_relaxed);
  return n;
}

size_t ChunkPool::resident_bytes() const {
  SpinGuard guard(lock_);
  size_t n = 0;
  for (const PoolRegion* r = all_; r != nullptr; r = r->next_all)
    n += r->carved.load(std::memory_order_relaxed) * size_t{r->slot_bytes} - r->clean_bytes;
  return n;
}

size_t ChunkPool::live_chunks() const {
  SpinGuard guard(lock_);
  size_t n = 0;
  for (const PoolRegion* r = all_; r != nullptr; r = r->next_all) n += r->live_slots();
  return n;
}

}  // namespace bitslab
