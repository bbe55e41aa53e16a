// core/page/system_page_allocator.h — pages carved from granules (L2).
//
//   granule (kGranuleBytes, aligned):
//   [ header page | page 1 | page 2 | ... ]
//     ^ slot 0: magic, a bitmap of the granule's pages (1 = free), the links of the granule lists
//       slot i: page i's side room, for its user's metadata (core/base/side_room.h)
//
// Granules come from a GranuleSource: the process's page heap for the core's two instances
// (slab pages, metadata pages), HeapRange directly for a library user's own. A page given back
// is decommitted whole (its physical memory returns to the kernel at once) and its bit set;
// nothing is written into it, so it costs no RSS while it waits. A granule whose pages are all
// free goes back to its source (one is kept, its pages already decommitted), which may hand it
// to another kind or unmap it. Of the header page, the allocator touches only slot 0; a
// page's user touches its page's slot when it writes metadata there (the slab layer puts each
// slab's header there: 1 KiB per 64 KiB page, so 64 headers share the 16 OS pages of one
// header page, and the header page is in RSS only as far as slabs are in use).
//
// A spin lock guards the granule lists: this allocator is the slow layer under a
// CachedPageAllocator, which absorbs the hot traffic without locks.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/base/config.h"
#include "core/base/side_room.h"
#include "core/base/spin_lock.h"
#include "core/os/heap_range.h"
#include "core/page/page_allocator.h"

namespace bitslab {

class SystemPageAllocator final : public PageAllocator {
 public:
  // page_bytes == 0 means the OS page size. Otherwise a power of two that is a multiple of the
  // OS page size and divides the granule; pages are aligned to their size.
  // source nullptr: HeapRange directly (DirectGranules).
  constexpr explicit SystemPageAllocator(size_t page_bytes = 0, GranuleKind kind = GranuleKind::kPages,
                                         GranuleSource* source = nullptr)
      : page_bytes_(page_bytes), kind_(kind), source_(source) {}

  // The process-wide allocator of OS-page-sized pages.
  static SystemPageAllocator& instance();

  size_t allocate(void** pages, size_t n) override;
  void deallocate(void* const* pages, size_t n) override;
  size_t page_size() const override;

  // Gives every all-free granule back to the source now, the one kept as a spare too (for
  // malloc_trim and before a failed allocation is retried). Returns how many.
  size_t release_empty();

  // Pages handed out and not given back, and granules held (statistics).
  size_t pages_in_use() const { return __atomic_load_n(&in_use_, __ATOMIC_RELAXED); }
  size_t granules() const { return __atomic_load_n(&granules_, __ATOMIC_RELAXED); }
  // Bytes given back to the OS by deallocate, in all (statistics).
  size_t bytes_returned() const { return __atomic_load_n(&returned_, __ATOMIC_RELAXED); }

  // Calls visit(page, ctx) for every page handed out and not given back, under the lock (visit
  // must not call this allocator). For reports at exit: the leak check walks the slab pages.
  void for_each_page_in_use(void (*visit)(void* page, void* ctx), void* ctx);

  // The lock over the granule lists; taken around fork() by core/thread/fork.cc for the
  // core's two instances (a toolkit user's own instance is the user's to guard).
  SpinLock& fork_lock() { return lock_; }

 private:
  struct GranuleHeader;
  GranuleSource& source() const;
  GranuleHeader* add_granule();  // lock held; nullptr when the OS refuses
  void* take_page();             // lock held; nullptr when the OS refuses
  // Lock held: unlinks an all-free granule, to be given back to its source after the lock.
  void unlink(GranuleHeader* h);

  size_t page_bytes_;
  GranuleKind kind_;
  GranuleSource* source_;
  SpinLock lock_;
  GranuleHeader* partial_ = nullptr;  // granules with a free page, doubly linked
  GranuleHeader* all_ = nullptr;      // every granule, newest first, doubly linked
  size_t in_use_ = 0;
  size_t granules_ = 0;
  // All-free granules kept (0 or 1): the first to empty stays, so that a thread that comes and
  // goes does not give a granule back and take it again each time; the next one goes back.
  size_t empty_granules_ = 0;
  size_t returned_ = 0;
};

}  // namespace bitslab
