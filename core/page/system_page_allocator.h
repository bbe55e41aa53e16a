// core/page/system_page_allocator.h — pages carved from the granules of HeapRange (L2).
//
// Pages come from the front of a claimed granule; given-back pages are decommitted (their
// physical memory returns to the kernel) and kept on a lock-free list for reuse, since the
// address space itself is never unmapped. The first OS page of a page larger than one OS page
// stays committed: it holds the free-list link.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/base/spin_lock.h"
#include "core/base/tagged_stack.h"
#include "core/os/heap_range.h"
#include "core/page/page_allocator.h"

namespace bitslab {

class SystemPageAllocator final : public PageAllocator {
 public:
  // page_bytes == 0 means the OS page size. Otherwise a power of two that is a multiple of the
  // OS page size and divides the granule; pages are aligned to their size.
  constexpr explicit SystemPageAllocator(size_t page_bytes = 0,
                                         GranuleKind kind = GranuleKind::kPages)
      : page_bytes_(page_bytes), kind_(kind) {}

  // The process-wide allocator of OS-page-sized pages.
  static SystemPageAllocator& instance();

  size_t allocate(void** pages, size_t n) override;
  void deallocate(void* const* pages, size_t n) override;
  size_t page_size() const override;

  // Pages handed out and not given back (statistics).
  size_t pages_in_use() const { return __atomic_load_n(&in_use_, __ATOMIC_RELAXED); }

  void prefork() { carve_lock_.lock(); }
  void postfork_parent() { carve_lock_.unlock(); }
  void postfork_child() { carve_lock_.reset_after_fork(); }

 private:
  void* carve();  // a never-used page from the current granule, or nullptr

  size_t page_bytes_;
  GranuleKind kind_;
  TaggedStack free_pages_;
  SpinLock carve_lock_;
  uintptr_t cursor_ = 0;  // next never-used page in the current granule
  uintptr_t limit_ = 0;
  size_t in_use_ = 0;
};

}  // namespace bitslab
