#include "core/page/system_page_allocator.h"

#include <cerrno>
#include <cstddef>

#include "core/base/bitmap.h"
#include "core/base/fatal.h"
#include "core/os/os.h"

namespace bitslab {

struct SystemPageAllocator::GranuleHeader {
  static constexpr uint32_t kMagic = 0x9a9e4ead;  // never a live slab's magic
  uint32_t magic;
  uint32_t free_pages;  // pages of the granule that are free (the header page never is)
  uint64_t zero;        // never written (a granule comes zero-filled): side_room.h, kSlotZeroBegin
  bool listed;          // on the partial list
  GranuleHeader* prev;  // partial list links
  GranuleHeader* next;
  GranuleHeader* prev_all;  // the list of every granule of this allocator
  GranuleHeader* next_all;
  Bitmap<kMaxPagesPerGranule / 64> free;  // bit i: page i is free; bit 0 (this header) never
};

namespace {
constinit SystemPageAllocator g_os_pages{0, GranuleKind::kPages};
}

SystemPageAllocator& SystemPageAllocator::instance() { return g_os_pages; }

size_t SystemPageAllocator::page_size() const {
  return page_bytes_ != 0 ? page_bytes_ : os::page_size();
}

GranuleSource& SystemPageAllocator::source() const {
  return source_ != nullptr ? *source_ : DirectGranules::instance();
}

SystemPageAllocator::GranuleHeader* SystemPageAllocator::add_granule() {
  void* granule = source().take(1, kind_);
  if (granule == nullptr) return nullptr;
  static_assert(sizeof(GranuleHeader) <= kSideRoomMin, "the granule header fits in slot 0 of the side room");
  static_assert(offsetof(GranuleHeader, zero) == kSlotZeroBegin &&
                    sizeof(GranuleHeader::zero) == kSlotZeroEnd - kSlotZeroBegin,
                "the granule header keeps slot 0's zero bytes");
  auto* h = static_cast<GranuleHeader*>(granule);  // zero-filled
  h->magic = GranuleHeader::kMagic;
  const size_t pages = kGranuleBytes / page_size();
  h->free.init_free(pages);
  h->free.take_first(0);  // page 0 holds this header
  h->free_pages = static_cast<uint32_t>(pages - 1);
  h->listed = true;
  h->next = partial_;
  if (partial_ != nullptr) partial_->prev = h;
  partial_ = h;
  h->next_all = all_;
  if (all_ != nullptr) all_->prev_all = h;
  all_ = h;
  ++granules_;
  return h;
}

void* SystemPageAllocator::take_page() {
  GranuleHeader* h = partial_;
  if (h == nullptr && (h = add_granule()) == nullptr) return nullptr;
  const size_t index = h->free.take_first(0);  // a listed granule has a free page
  if (h->free_pages == kGranuleBytes / page_size() - 1) --empty_granules_;  // the kept one
  if (--h->free_pages == 0) {  // full: off the list until a page comes back
    partial_ = h->next;
    if (partial_ != nullptr) partial_->prev = nullptr;
    h->next = nullptr;
    h->listed = false;
  }
  return reinterpret_cast<char*>(h) + index * page_size();
}

void SystemPageAllocator::unlink(GranuleHeader* h) {
  if (h->listed) {
    if (h->prev != nullptr)
      h->prev->next = h->next;
    else
      partial_ = h->next;
    if (h->next != nullptr) h->next->prev = h->prev;
  }
  if (h->prev_all != nullptr)
    h->prev_all->next_all = h->next_all;
  else
    all_ = h->next_all;
  if (h->next_all != nullptr) h->next_all->prev_all = h->prev_all;
  h->magic = 0;  // a page given back into it now is caught as never handed out
  --granules_;
}

size_t SystemPageAllocator::allocate(void** pages, size_t n) {
  size_t got = 0;
  {
    SpinGuard guard(lock_);
    while (got < n && (pages[got] = take_page()) != nullptr) ++got;
  }
  __atomic_fetch_add(&in_use_, got, __ATOMIC_RELAXED);
  if (got < n) errno = ENOMEM;
  return got;
}

void SystemPageAllocator::deallocate(void* const* pages, size_t n) {
  const size_t bytes = page_size();
  // Outside the lock: a syscall. One per run of adjacent pages, not one per page: a batch
  // given back in the order it was handed out is mostly one run.
  for (size_t i = 0; i < n;) {
    size_t run = 1;
    while (i + run < n && static_cast<char*>(pages[i + run]) == static_cast<char*>(pages[i]) + run * bytes)
      ++run;
    os::decommit(pages[i], run * bytes);
    i += run;
  }
  const size_t pages_per_granule = kGranuleBytes / bytes - 1;
  GranuleHeader* emptied[8];  // granules left with every page free, given back after the lock
  size_t emptied_count = 0;
  {
    SpinGuard guard(lock_);
    for (size_t i = 0; i < n; ++i) {
      const uintptr_t a = reinterpret_cast<uintptr_t>(pages[i]);
      auto* h = reinterpret_cast<GranuleHeader*>(a & ~(kGranuleBytes - 1));
      const size_t index = (a - reinterpret_cast<uintptr_t>(h)) / bytes;
      // set_free refuses a page that is free already.
      if (HeapRange::kind_of(pages[i]) != kind_ || h->magic != GranuleHeader::kMagic || index == 0 ||
          a % bytes != 0 || !h->free.set_free(index))
        fatal("page given back twice, or never handed out:", pages[i]);
      if (!h->listed) {
        h->listed = true;
        h->prev = nullptr;
        h->next = partial_;
        if (partial_ != nullptr) partial_->prev = h;
        partial_ = h;
      }
      if (++h->free_pages == pages_per_granule) {
        if (empty_granules_ == 0) {
          empty_granules_ = 1;  // kept
        } else if (emptied_count < 8) {
          unlink(h);
          emptied[emptied_count++] = h;
        }
      }
    }
  }
  __atomic_fetch_sub(&in_use_, n, __ATOMIC_RELAXED);
  __atomic_fetch_add(&returned_, n * bytes, __ATOMIC_RELAXED);
  for (size_t i = 0; i < emptied_count; ++i) source().give(emptied[i], 1);
}

size_t SystemPageAllocator::release_empty() {
  const size_t pages_per_granule = kGranuleBytes / page_size() - 1;
  GranuleHeader* emptied[16];
  size_t n = 0;
  {
    SpinGuard guard(lock_);
    for (GranuleHeader* h = all_; h != nullptr && n < 16;) {
      GranuleHeader* next = h->next_all;
      if (h->free_pages == pages_per_granule) {
        unlink(h);
        emptied[n++] = h;
      }
      h = next;
    }
    empty_granules_ = 0;
  }
  for (size_t i = 0; i < n; ++i) source().give(emptied[i], 1);
  return n;
}

void SystemPageAllocator::for_each_page_in_use(void (*visit)(void* page, void* ctx), void* ctx) {
  const size_t bytes = page_size();
  const size_t pages = kGranuleBytes / bytes;
  SpinGuard guard(lock_);
  for (GranuleHeader* h = all_; h != nullptr; h = h->next_all)
    for (size_t i = 1; i < pages; ++i)  // page 0 is the header
      if (!h->free.is_free(i)) visit(reinterpret_cast<char*>(h) + i * bytes, ctx);
}

}  // namespace bitslab
