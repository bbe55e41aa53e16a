#include "core/page/system_page_allocator.h"

#include <cerrno>

#include "core/base/config.h"
#include "core/os/os.h"

namespace bitslab {

namespace {
constinit SystemPageAllocator g_os_pages{0, GranuleKind::kPages};
}

SystemPageAllocator& SystemPageAllocator::instance() { return g_os_pages; }

size_t SystemPageAllocator::page_size() const {
  return page_bytes_ != 0 ? page_bytes_ : os::page_size();
}

void* SystemPageAllocator::carve() {
  const size_t bytes = page_size();
  SpinGuard guard(carve_lock_);
  if (limit_ - cursor_ < bytes) {
    void* granule = HeapRange::claim(1, kind_);
    if (granule == nullptr) return nullptr;
    cursor_ = reinterpret_cast<uintptr_t>(granule);
    limit_ = cursor_ + kGranuleBytes;
  }
  void* page = reinterpret_cast<void*>(cursor_);
  cursor_ += bytes;
  return page;
}

size_t SystemPageAllocator::allocate(void** pages, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    void* page = free_pages_.pop();
    if (page == nullptr) page = carve();
    if (page == nullptr) {
      __atomic_fetch_add(&in_use_, i, __ATOMIC_RELAXED);
      errno = ENOMEM;
      return i;
    }
    pages[i] = page;
  }
  __atomic_fetch_add(&in_use_, n, __ATOMIC_RELAXED);
  return n;
}

void SystemPageAllocator::deallocate(void* const* pages, size_t n) {
  const size_t bytes = page_size();
  const size_t os_page = os::page_size();
  for (size_t i = 0; i < n; ++i) {
    char* page = static_cast<char*>(pages[i]);
    if (bytes > os_page) os::decommit(page + os_page, bytes - os_page);
    free_pages_.push(page);
  }
  __atomic_fetch_sub(&in_use_, n, __ATOMIC_RELAXED);
}

}  // namespace bitslab
