#include "core/os/heap_range.h"

#include <cerrno>

#include "core/os/os.h"

namespace bitslab {

uint8_t HeapRange::map_[kGranuleCount];
std::atomic<size_t> HeapRange::mapped_{0};
std::atomic<size_t> HeapRange::unmapped_{0};

namespace {
constinit DirectGranules g_direct;
}
DirectGranules& DirectGranules::instance() { return g_direct; }

void HeapRange::set(uintptr_t start, size_t count, GranuleKind kind) {
  // Other threads read the map without a lock; a release store publishes the granule's
  // contents (initialised by the claimer before any pointer into it escapes).
  for (size_t i = 0; i < count; ++i)
    __atomic_store_n(&map_[(start >> kGranuleShift) + i], static_cast<uint8_t>(kind), __ATOMIC_RELEASE);
}

void* HeapRange::claim(size_t count, GranuleKind first, GranuleKind rest) {
  if (count == 0 || count > kGranuleCount) {
    errno = ENOMEM;
    return nullptr;
  }
  const size_t bytes = count * kGranuleBytes;
  void* base = os::reserve_aligned(bytes, kGranuleBytes);  // no lock: mmap is thread-safe
  if (base == nullptr) return nullptr;                     // errno = ENOMEM
  // Only addresses below 2^47 fit the map. The kernel gives those unless asked otherwise
  // (5-level paging hands out higher ones only for a high hint), but never trust it blindly.
  const uintptr_t start = reinterpret_cast<uintptr_t>(base);
  if ((start + bytes - 1) >> kAddressBits != 0) {
    os::release(base, bytes);
    errno = ENOMEM;
    return nullptr;
  }
  mapped_.fetch_add(bytes, std::memory_order_relaxed);
  mark(base, count, first, rest);
  return base;
}

void HeapRange::mark(void* start, size_t count, GranuleKind first, GranuleKind rest) {
  const uintptr_t s = reinterpret_cast<uintptr_t>(start);
  set(s + kGranuleBytes, count - 1, rest);
  set(s, 1, first);
}

void HeapRange::release(void* start, size_t count) {
  set(reinterpret_cast<uintptr_t>(start), count, GranuleKind::kNone);
  os::release(start, count * kGranuleBytes);
  mapped_.fetch_sub(count * kGranuleBytes, std::memory_order_relaxed);
  unmapped_.fetch_add(count * kGranuleBytes, std::memory_order_relaxed);
}

}  // namespace bitslab
