#include "core/page/system_page_allocator.h"

#include <cerrno>

#include "core/base/bits.h"
#include "core/base/fatal.h"
#include "core/os/os.h"

namespace bitslab {

// The smallest OS page we support is 4 KiB, so a granule has at most this many pages.
inline constexpr size_t kMaxPagesPerGranule = kGranuleBytes / 4096;

struct SystemPageAllocator::GranuleHeader {
  static constexpr uint32_t kMagic = 0x9a9e4ead;  // never a live slab's magic
  uint32_t magic;
  uint32_t free_count;   // set bits in free
  uint32_t page_count;   // pages in the granule, the header page included
  bool listed;           // on the partial list
  GranuleHeader* next;   // partial list link
  uint64_t free[kMaxPagesPerGranule / 64];  // bit i: page i is free; bit 0 (header) never
};

namespace {
constinit SystemPageAllocator g_os_pages{0, GranuleKind::kPages};
}

SystemPageAllocator& SystemPageAllocator::instance() { return g_os_pages; }

size_t SystemPageAllocator::page_size() const {
  return page_bytes_ != 0 ? page_bytes_ : os::page_size();
}

SystemPageAllocator::GranuleHeader* SystemPageAllocator::add_granule() {
  void* granule = HeapRange::claim(1, kind_);
  if (granule == nullptr) return nullptr;
  auto* h = static_cast<GranuleHeader*>(granule);  // fresh mapping: all zero
  h->magic = GranuleHeader::kMagic;
  h->page_count = static_cast<uint32_t>(kGranuleBytes / page_size());
  for (uint32_t i = 1; i < h->page_count; ++i) h->free[i / 64] |= uint64_t{1} << (i % 64);
  h->free_count = h->page_count - 1;
  h->listed = true;
  h->next = partial_;
  partial_ = h;
  return h;
}

void* SystemPageAllocator::take_page() {
  GranuleHeader* h = partial_;
  if (h == nullptr && (h = add_granule()) == nullptr) return nullptr;
  for (size_t w = 0;; ++w) {  // free_count > 0: some word has a bit
    if (h->free[w] == 0) continue;
    const size_t index = w * 64 + ctz64(h->free[w]);
    h->free[w] &= h->free[w] - 1;
    if (--h->free_count == 0) {  // full: off the list until a page comes back
      partial_ = h->next;
      h->listed = false;
    }
    return reinterpret_cast<char*>(h) + index * page_size();
  }
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
  for (size_t i = 0; i < n; ++i) os::decommit(pages[i], bytes);  // outside the lock: a syscall
  SpinGuard guard(lock_);
  for (size_t i = 0; i < n; ++i) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(pages[i]);
    auto* h = reinterpret_cast<GranuleHeader*>(a & ~(kGranuleBytes - 1));
    const size_t index = (a - reinterpret_cast<uintptr_t>(h)) / bytes;
    const uint64_t bit = uint64_t{1} << (index % 64);
    if (HeapRange::kind_of(pages[i]) != kind_ || h->magic != GranuleHeader::kMagic || index == 0 || a % bytes != 0 ||
        (h->free[index / 64] & bit) != 0)
      fatal("page given back twice, or never handed out:", pages[i]);
    h->free[index / 64] |= bit;
    ++h->free_count;
    if (!h->listed) {
      h->listed = true;
      h->next = partial_;
      partial_ = h;
    }
  }
  __atomic_fetch_sub(&in_use_, n, __ATOMIC_RELAXED);
  __atomic_fetch_add(&returned_, n * bytes, __ATOMIC_RELAXED);
}

}  // namespace bitslab
