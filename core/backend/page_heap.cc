#include "core/backend/page_heap.h"

#include <cstring>

#include "core/base/fatal.h"
#include "core/os/os.h"

namespace bitslab {

void* PageHeap::take(size_t count, GranuleKind first, GranuleKind rest) {
  // Any take grows the footprint: a fresh granule, or a kept one (decommitted) that fills in.
  grew_.store(true, std::memory_order_relaxed);
  FreeRun* found = nullptr;
  {
    SpinGuard guard(lock_);
    ++takes_;
    for (FreeRun** link = &free_; *link != nullptr; link = &(*link)->next) {
      if ((*link)->count == count) {
        found = *link;
        *link = found->next;
        free_granules_ -= count;
        ++hits_;
        break;
      }
    }
  }
  if (found == nullptr) return HeapRange::claim(count, first, rest);
  // Decommitted when it was given back: only the link, just read, is not zero.
  memset(found, 0, sizeof *found);
  HeapRange::mark(found, count, first, rest);
  return found;
}

void PageHeap::give(void* start, size_t count) {
  if (HeapRange::kind_of(start) == GranuleKind::kFree)
    fatal("a granule given back to the page heap twice:", start);
  os::decommit(start, count * kGranuleBytes);  // outside the lock: a system call
  HeapRange::mark(start, count, GranuleKind::kFree, GranuleKind::kFree);
  auto* run = static_cast<FreeRun*>(start);
  run->magic = FreeRun::kMagic;
  run->count = static_cast<uint32_t>(count);
  run->freed_ns = os::coarse_now_ns();
  SpinGuard guard(lock_);
  run->next = free_;
  free_ = run;
  free_granules_ += count;
  decommitted_ += count * kGranuleBytes;
}

size_t PageHeap::purge(uint64_t now_ns, uint64_t delay_ns, bool force) {
  FreeRun* aged = nullptr;  // unlinked here, unmapped below without the lock
  {
    SpinGuard guard(lock_);
    for (FreeRun** link = &free_; *link != nullptr;) {
      FreeRun* run = *link;
      if (force || os::elapsed(now_ns, run->freed_ns, delay_ns)) {
        *link = run->next;
        free_granules_ -= run->count;
        run->next = aged;
        aged = run;
      } else {
        link = &run->next;
      }
    }
  }
  size_t bytes = 0;
  while (aged != nullptr) {
    FreeRun* next = aged->next;
    const size_t count = aged->count;
    HeapRange::release(aged, count);
    bytes += count * kGranuleBytes;
    aged = next;
  }
  return bytes;
}

PageHeap::Counts PageHeap::counts() const {
  SpinGuard guard(const_cast<SpinLock&>(lock_));
  return {takes_, hits_, free_granules_, decommitted_};
}

}  // namespace bitslab
