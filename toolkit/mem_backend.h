// toolkit/mem_backend.h — the contract between the slab arena (toolkit/slab_arena.h) and the
// memory it lives in, and the two calls both backends share (NUMA binding, locking in RAM).
//
// A backend is a move-only owner of one page-aligned mapping. The arena tells it what it needs
// with a SegmentSpec:
//
//   Backend(<backend arguments>..., const SegmentSpec& spec)   throws std::system_error
//   void*  data() const noexcept      // spec.bytes usable bytes, page-aligned; nullptr once moved from
//   size_t size() const noexcept      // spec.bytes; 0 once moved from
//   bool   created() const noexcept   // this handle ran spec.format (false: it attached)
//   int    mbind(int numa_node) const noexcept   // 0, or -1 with errno
//   int    mlock() const noexcept                // 0, or -1 with errno
//
// The backend runs spec.format exactly once per segment, on zeroed memory, before any handle
// to that segment returns from its constructor: a LocalMem formats its private mapping; of the
// processes attaching a ShmMem name, the one that creates the segment formats it and the others
// wait for it (toolkit/shm_mem.h).
#pragma once
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <linux/mempolicy.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace bitslab {

// Declared here so that each backend can name its arena type, LocalMem::Allocator<...> and
// ShmMem::Allocator<...>; defined in toolkit/slab_arena.h (include that to use either).
template <class Backend, size_t Count, size_t... Sizes>
class Arena;

// What an arena asks of its backend; a compile-time constant of each arena type.
struct SegmentSpec {
  size_t bytes;     // the arena's footprint (Arena::kBytes)
  uint64_t layout;  // fingerprint of the arena type: a shared segment attached by another type is refused
  void (*format)(void* base) noexcept;  // writes the initial state into zeroed memory
};

namespace mem {

// The largest node mbind accepts: the kernel's own limit (MAX_NUMNODES is at most 1 << 10).
// It bounds the node mask, which lives on the stack: no allocation in mbind.
inline constexpr int kMaxNumaNodes = 1 << 10;

// Binds the pages of [addr, addr + bytes) to `numa_node` (MPOL_BIND), moving those already
// touched by this process (MPOL_MF_MOVE; pages another process has touched stay where they
// are). The raw system call, so that nothing depends on libnuma. 0, or -1 with errno:
// EINVAL for a node that is negative, too large or not online, ENOSYS for a kernel without
// NUMA support, EPERM where a seccomp profile forbids mbind.
inline int bindToNode(void* addr, size_t bytes, int numa_node) noexcept {
  if (addr == nullptr || numa_node < 0 || numa_node >= kMaxNumaNodes) {
    errno = EINVAL;
    return -1;
  }
  constexpr size_t kBitsPerWord = 8 * sizeof(unsigned long);
  unsigned long mask[kMaxNumaNodes / kBitsPerWord] = {};
  const auto node = static_cast<size_t>(numa_node);
  mask[node / kBitsPerWord] |= 1UL << (node % kBitsPerWord);
  // The kernel reads maxnode - 1 bits of the mask (a historical off-by-one kept for ABI
  // compatibility), hence the + 1.
  const unsigned long maxnode = kMaxNumaNodes + 1;
  const long rc = syscall(SYS_mbind, addr, bytes, static_cast<unsigned long>(MPOL_BIND), mask, maxnode,
                          static_cast<unsigned long>(MPOL_MF_MOVE));
  return rc == 0 ? 0 : -1;
}

// Locks [addr, addr + bytes) in RAM (faulting every page in now). 0, or -1 with errno
// (EPERM or ENOMEM without CAP_IPC_LOCK beyond RLIMIT_MEMLOCK, EAGAIN).
inline int lockInRam(void* addr, size_t bytes) noexcept {
  if (addr == nullptr) {
    errno = EINVAL;
    return -1;
  }
  return ::mlock(addr, bytes) == 0 ? 0 : -1;
}

}  // namespace mem
}  // namespace bitslab
