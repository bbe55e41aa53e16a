#include <cerrno>
#include <cstdint>
#include <sys/mman.h>
#include <ctime>
#include <unistd.h>

#include "core/os/os.h"

#include "core/base/config.h"

namespace bitslab::os {

size_t page_size() {
  // A benign race: every thread computes the same value.
  static size_t cached = 0;
  size_t value = __atomic_load_n(&cached, __ATOMIC_RELAXED);
  if (value == 0) {
    long v = sysconf(_SC_PAGESIZE);
    value = v > 0 ? static_cast<size_t>(v) : kMinOsPageBytes;  // sysconf cannot fail for this name
    __atomic_store_n(&cached, value, __ATOMIC_RELAXED);
  }
  return value;
}

namespace {
// Reservations still allowed before injected failures start; ~0 = never fail.
uint64_t g_reservations_left = ~uint64_t{0};
}  // namespace

void fail_reservations_after(uint64_t successes) {
  __atomic_store_n(&g_reservations_left, successes, __ATOMIC_RELAXED);
}

void* reserve_aligned(size_t bytes, size_t alignment) {
  // Injected failure (tests): callers hold HeapRange's lock, so plain decrements are enough.
  uint64_t left = __atomic_load_n(&g_reservations_left, __ATOMIC_RELAXED);
  if (left != ~uint64_t{0}) {
    if (left == 0) {
      errno = ENOMEM;
      return nullptr;
    }
    __atomic_store_n(&g_reservations_left, left - 1, __ATOMIC_RELAXED);
  }
  const int saved_errno = errno;
  // Over-reserve by the alignment, then trim both ends: the kernel has no aligned mmap.
  const size_t span = bytes + alignment;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) {
    errno = ENOMEM;
    return nullptr;
  }
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + alignment - 1) & ~(uintptr_t{alignment} - 1);
  const size_t head = aligned - start;
  const size_t tail = span - head - bytes;
  if (head != 0) munmap(raw, head);
  if (tail != 0) munmap(reinterpret_cast<void*>(aligned + bytes), tail);
  errno = saved_errno;
  return reinterpret_cast<void*>(aligned);
}

void decommit(void* p, size_t bytes) {
  const int saved_errno = errno;
  // MADV_DONTNEED drops the pages at once, so RSS reflects what we hold (MADV_FREE would
  // leave them counted until the kernel is under pressure).
  madvise(p, bytes, MADV_DONTNEED);
  errno = saved_errno;
}

bool protect(void* p, size_t bytes, bool accessible) {
  return mprotect(p, bytes, accessible ? PROT_READ | PROT_WRITE : PROT_NONE) == 0;
}

uint64_t coarse_now_ns() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
  return uint64_t(t.tv_sec) * 1000000000u + uint64_t(t.tv_nsec);
}

void release(void* p, size_t bytes) {
  const int saved_errno = errno;
  munmap(p, bytes);
  errno = saved_errno;
}

void* map_zeroed(size_t bytes) {
  const int saved_errno = errno;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  errno = saved_errno;
  return p == MAP_FAILED ? nullptr : p;
}

}  // namespace bitslab::os
