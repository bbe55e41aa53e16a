// core/os/os.h — the only door to the kernel's memory calls (L1). Everything here preserves errno
// except where a failure is reported, and nothing here allocates.
#pragma once
#include <cstddef>
#include <cstdint>

namespace bitslab::os {

// The OS page size, from sysconf(_SC_PAGESIZE) on first use. Never assumed to be 4096.
size_t page_size();

// Reserves `bytes` of address space aligned to `alignment` (a power of two), readable and
// writable but with no swap reservation (MAP_NORESERVE): pages are committed by first touch.
// Returns nullptr (errno = ENOMEM) when the kernel refuses, e.g. under `ulimit -v`.
void* reserve_aligned(size_t bytes, size_t alignment);

// Fault injection for out-of-memory tests: after `successes` more successful reservations,
// every reserve_aligned fails with ENOMEM, as it would under a tight RLIMIT_AS.
// BITSLAB_INJECT_OOM=N sets it at start-up.
void fail_reservations_after(uint64_t successes);

// Gives the physical pages of [p, p+bytes) back to the kernel; the range stays reserved and
// reads as zeros when touched again. p and bytes are page-aligned.
void decommit(void* p, size_t bytes);

// Makes [p, p+bytes) readable and writable, or inaccessible (guard pages). Page-aligned.
// Returns false (errno from mprotect) when the kernel refuses, e.g. out of memory map entries.
bool protect(void* p, size_t bytes, bool accessible);

// Monotonic time in nanoseconds, coarse (a few ms resolution; a vDSO read, no syscall): for
// purge periods, never for measurements.
uint64_t coarse_now_ns();
// Whether delay_ns have passed from since_ns to now_ns. Another thread may have read now_ns a
// little before since_ns was read: then no time has passed, not 2^64 ns.
inline bool elapsed(uint64_t now_ns, uint64_t since_ns, uint64_t delay_ns) {
  return now_ns >= since_ns && now_ns - since_ns >= delay_ns;
}

// Unmaps [p, p+bytes): the address space goes back to the kernel. Page-aligned.
void release(void* p, size_t bytes);

// Maps `bytes` (a multiple of the page size) of zeroed memory, committed by first touch, for
// bookkeeping outside the heap (the profiler's tables): no alignment, no fault injection.
// nullptr when the kernel refuses.
void* map_zeroed(size_t bytes);

}  // namespace bitslab::os
