// core/thread/heap_registry.h — every ThreadHeap ever made, and the parked ones (L5).
//
// Heaps live in metadata pages and are never destroyed, so a pointer to a heap (a slab's
// owner) stays valid forever. A free listed to the heap of a thread that has exited is applied
// at once by the listing thread (collect), which holds the parked heap meanwhile, so that the
// exited thread's slabs empty and go back while the threads that remain run.
#pragma once
#include <cstddef>

#include "core/base/spin_lock.h"
#include "core/thread/thread_heap.h"

namespace bitslab {

class HeapRegistry {
 public:
  // A parked heap, or a new one; nullptr (errno = ENOMEM) if no memory for a new one.
  static ThreadHeap* acquire();
  // Flushes the heap and parks it for the next thread.
  static void release(ThreadHeap* heap);
  // heap was seen parked with a slab listed to it (remote frees): unless a thread adopted it or
  // another lister is at it, applies them (ThreadHeap::drain_remote), so that its empty slabs
  // go back. Called by whichever thread listed the slab.
  static void collect(ThreadHeap* heap);
  // Flushes every heap parked at least idle_ns before now_ns that no thread is collecting
  // (ThreadHeap::flush): its remote frees applied, and the current slabs that emptied since its
  // thread exited given back. collect gives back only listed slabs that empty: a current slab
  // keeps no count, so one that other threads' frees empty waits for the heap's next flush.
  // Each purge of the backend calls this first (backend::set_parked_heaps_flush), with the
  // purge delay: a heap a new thread is about to adopt keeps its slabs (giving them back at
  // every collection raised thread churn's peak RSS 4-9%); reclaim (trim, out of memory) with
  // 0: every parked heap. It walks the parked heaps under the registry lock. Unless `wait`
  // (reclaim), it does nothing if the lock is held: a timed purge may run inside a flush that
  // holds it (a slab given back runs a due purge), and the next purge comes soon enough.
  // Reclaim waits; it never runs under the lock (no allocation does: acquire fails instead).
  static void flush_parked(uint64_t now_ns, uint64_t idle_ns, bool wait);

  // Calls visit(heap, ctx) for every heap ever made, under the registry lock.
  static void for_each_heap(void (*visit)(const ThreadHeap* heap, void* ctx), void* ctx);

  static size_t heap_count();
  static size_t heaps_in_use();

  // The registry's lock; taken around fork() by core/thread/fork.cc.
  static SpinLock& fork_lock();
  // In a fork child (locks already reset), where only the forking thread survives: the other
  // threads' heaps are retired for good (they may have been mid-operation when fork copied them).
  static void retire_after_fork(ThreadHeap* survivor);

 private:
  // Runs work(heap) as the parked heap's collector (state kCollecting), again while slabs were
  // listed to it meanwhile; nothing if a thread adopted it or another collector holds it.
  template <class Work>
  static void while_collecting(ThreadHeap* heap, Work work);
};

}  // namespace bitslab
