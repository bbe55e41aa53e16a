#include "core/os/heap_range.h"

#include <cerrno>

#include "core/base/spin_lock.h"
#include "core/os/os.h"

namespace bitslab {

uint8_t HeapRange::map_[kGranuleCount];

namespace {
SpinLock g_claim_lock;
// The current reservation, handed out front to back in granules.
uintptr_t g_cursor = 0;
uintptr_t g_limit = 0;
size_t g_reserved = 0;
}  // namespace

void HeapRange::mark(uintptr_t start, size_t count, GranuleKind kind) {
  // Other threads read the map without the lock; a release store publishes the granule's
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
  SpinGuard guard(g_claim_lock);
  if (g_limit - g_cursor < bytes) {
    // Reserve a new step. Under `ulimit -v` a large step can fail where a smaller one fits,
    // so halve down to exactly what this claim needs before giving up. The unused tail of
    // the old reservation stays reserved and unclaimed (at most one step minus a granule).
    size_t step = kReserveStepBytes > bytes ? kReserveStepBytes : bytes;
    void* base = nullptr;
    while (base == nullptr) {
      base = os::reserve_aligned(step, kGranuleBytes);
      if (base != nullptr) break;
      if (step == bytes) {
        errno = ENOMEM;
        return nullptr;
      }
      step = step / 2 > bytes ? step / 2 : bytes;
    }
    // Only addresses below 2^47 fit the map. The kernel gives those unless asked otherwise
    // (5-level paging hands out higher ones only for a high hint), but never trust it blindly.
    if ((reinterpret_cast<uintptr_t>(base) + step - 1) >> kAddressBits != 0) {
      os::release(base, step);
      errno = ENOMEM;
      return nullptr;
    }
    g_cursor = reinterpret_cast<uintptr_t>(base);
    g_limit = g_cursor + step;
    g_reserved += step;
  }
  const uintptr_t start = g_cursor;
  g_cursor += bytes;
  mark(start + kGranuleBytes, count - 1, rest);
  mark(start, 1, first);
  return reinterpret_cast<void*>(start);
}

size_t HeapRange::reserved_bytes() {
  SpinGuard guard(g_claim_lock);
  return g_reserved;
}

SpinLock& HeapRange::fork_lock() { return g_claim_lock; }

}  // namespace bitslab
