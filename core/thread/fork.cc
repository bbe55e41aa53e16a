#include "core/thread/fork.h"

#include <sys/single_threaded.h>

#include "core/backend/backend.h"
#include "core/large/guarded_blocks.h"
#include "core/os/heap_range.h"
#include "core/pool/pool_classes.h"
#include "core/profile/frame_rule_cache.h"
#include "core/profile/profiler.h"
#include "core/thread/heap_registry.h"

// stdio's list lock (glibc exports it; weak, so that another libc without it still links).
extern "C" {
void _IO_list_lock() __attribute__((weak));
void _IO_list_unlock() __attribute__((weak));
}

namespace bitslab::fork_protocol {

static_assert(kMaxLocks >= kPoolClassCount + 7, "room for every lock");

// The order: a lock comes before every lock that code holding it may take, so that prefork
// never waits for a lock whose holder waits for one prefork already holds.
//   heap profiler      its tables' lock: code holding it takes no other lock of ours
//   frame rule cache   the stack walk's (only tried, never waited for): takes no other
//   heap registry      acquire() takes a granule of metadata under it      → page heap
//   guarded blocks     allocate() maps granules under it (hardened only)   → (HeapRange: no lock)
//   pool locks         a pool takes a new region under its lock            → page heap
//   slab pages, pages  take_page() adds a granule under the allocator's    → page heap
//   page heap          takes no other lock (it maps and unmaps outside its own)
// The slab page cache (Boost.Lockfree) and the pools' free stacks are lock-free: every change is
// one CAS, so the child sees each either before or after it, and the structure is whole. What a
// vanished thread had taken off one and not yet put back (a page, a chunk) is lost to the child:
// memory, never correctness.
size_t locks(NamedLock out[kMaxLocks]) {
  size_t n = 0;
  out[n++] = {"heap profiler", 0, &profile::fork_lock()};
  out[n++] = {"frame rule cache", 0, &profile::frame_rule_cache_lock()};
  out[n++] = {"heap registry", 0, &HeapRegistry::fork_lock()};
  if constexpr (kHardened) out[n++] = {"guarded large blocks", 0, &guarded::fork_lock()};
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls)
    out[n++] = {"pool class", cls, &backend::pools().pool(cls).fork_lock()};
  out[n++] = {"slab page allocator", 0, &backend::slab_system_pages().fork_lock()};
  out[n++] = {"OS page allocator", 0, &SystemPageAllocator::instance().fork_lock()};
  out[n++] = {"page heap", 0, &backend::page_heap().fork_lock()};
  return n;
}

// The whole protocol, in the order glibc 2.36's fork runs it:
//   1. the atfork prepare handlers (ours: prefork below), then stdio's list lock
//      (_IO_list_lock) and glibc's own malloc locks, then the copy;
//   2. in the parent: glibc's locks released, then the parent handlers (postfork_parent);
//   3. in the child: glibc resets its locks and stdio's list lock, then the child handlers.
// Two hazards decide what prefork may do:
//   - Single-threaded, the fork may come from a signal handler that interrupted this very thread
//     inside malloc, holding one of our locks: taking it would wait forever. No other thread
//     exists to race with, so nothing is taken, and nothing is released or reset afterwards (the
//     interrupted code still holds, and will release, what it held). glibc does the same.
//   - Multi-threaded, a thread in fflush(NULL) holds stdio's list lock and waits for a FILE's
//     lock; a thread in getline holds that FILE's lock and calls realloc. Had prefork taken our
//     locks first, realloc would wait for prefork's thread, which would wait for the list lock
//     in step 1: a cycle. So prefork takes the list lock first (it is recursive: glibc's own
//     take in step 1 nests), then ours; code holding one of our locks never waits for stdio.
bool g_locked_for_fork = false;  // written only by the forking thread, under every lock

void prefork() {
  if (__libc_single_threaded) return;
  if (_IO_list_lock != nullptr) _IO_list_lock();
  NamedLock all[kMaxLocks];
  const size_t n = locks(all);
  for (size_t i = 0; i < n; ++i) all[i].lock->lock();
  g_locked_for_fork = true;
}

void postfork_parent() {
  if (!g_locked_for_fork) return;
  g_locked_for_fork = false;
  NamedLock all[kMaxLocks];
  for (size_t i = locks(all); i-- > 0;) all[i].lock->unlock();
  if (_IO_list_unlock != nullptr) _IO_list_unlock();
}

void postfork_child() {
  if (!g_locked_for_fork) return;  // the copy of the flag: set only if prefork took the locks
  g_locked_for_fork = false;
  NamedLock all[kMaxLocks];
  const size_t n = locks(all);
  for (size_t i = 0; i < n; ++i) all[i].lock->reset_after_fork();
  HeapRegistry::retire_after_fork(tls_heap == &kEmptyHeap ? nullptr : tls_heap);
  backend::after_fork_in_child();  // the background purge thread, if any, stayed in the parent
  // stdio's list lock: glibc has reset it in the child already (step 3).
}

}  // namespace bitslab::fork_protocol
