#include "core/thread/fork.h"

#include "core/backend/backend.h"
#include "core/large/guarded_blocks.h"
#include "core/os/heap_range.h"
#include "core/pool/pool_classes.h"
#include "core/thread/heap_registry.h"

namespace bitslab::fork_protocol {

static_assert(kMaxLocks >= kPoolClassCount + 5, "room for every lock");

// The order: a lock comes before every lock that code holding it may take, so that prefork
// never waits for a lock whose holder waits for one prefork already holds.
//   heap registry      acquire() claims a granule of metadata under it     → heap range
//   guarded blocks     allocate() claims granules under it (hardened only) → heap range
//   pool grow locks    carve() claims a region under its class's lock      → heap range
//   slab pages, pages  take_page() adds a granule under the allocator's    → heap range
//   heap range         claims take nothing else
// The slab page cache (Boost.Lockfree) and the pools' free stacks are lock-free: every change is
// one CAS, so the child sees each either before or after it, and the structure is whole. What a
// vanished thread had taken off one and not yet put back (a page, a chunk) is lost to the child:
// memory, never correctness.
size_t locks(NamedLock out[kMaxLocks]) {
  size_t n = 0;
  out[n++] = {"heap registry", 0, &HeapRegistry::fork_lock()};
  if constexpr (kHardened) out[n++] = {"guarded large blocks", 0, &guarded::fork_lock()};
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls)
    out[n++] = {"pool class growth", cls, &backend::pools().pool(cls).fork_lock()};
  out[n++] = {"slab page allocator", 0, &backend::slab_system_pages().fork_lock()};
  out[n++] = {"OS page allocator", 0, &SystemPageAllocator::instance().fork_lock()};
  out[n++] = {"heap range claims", 0, &HeapRange::fork_lock()};
  return n;
}

void prefork() {
  NamedLock all[kMaxLocks];
  const size_t n = locks(all);
  for (size_t i = 0; i < n; ++i) all[i].lock->lock();
}

void postfork_parent() {
  NamedLock all[kMaxLocks];
  for (size_t i = locks(all); i-- > 0;) all[i].lock->unlock();
}

void postfork_child() {
  NamedLock all[kMaxLocks];
  const size_t n = locks(all);
  for (size_t i = 0; i < n; ++i) all[i].lock->reset_after_fork();
  HeapRegistry::retire_after_fork(tls_heap == &kEmptyHeap ? nullptr : tls_heap);
}

}  // namespace bitslab::fork_protocol
