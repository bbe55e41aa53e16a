#include "core/thread/heap_registry.h"

#include <cerrno>
#include <new>

#include "core/backend/backend.h"
#include "core/base/bits.h"
#include "core/os/heap_range.h"
#include "core/os/os.h"

namespace bitslab {

namespace {
SpinLock g_lock;
ThreadHeap* g_all = nullptr;     // every heap, through next_all_
ThreadHeap* g_parked = nullptr;  // heaps no thread runs, through next_parked_
size_t g_count = 0;
size_t g_in_use = 0;
// Heaps are cut from granules of metadata, front to back.
uintptr_t g_meta_cursor = 0;
uintptr_t g_meta_limit = 0;

constexpr size_t kHeapStride = align_up(sizeof(ThreadHeap), 64);
}  // namespace

ThreadHeap* HeapRegistry::acquire() {
  SpinGuard guard(g_lock);
  // The first parked heap no thread is collecting right now.
  ThreadHeap* heap = nullptr;
  for (ThreadHeap** link = &g_parked; *link != nullptr; link = &(*link)->next_parked_) {
    uint8_t parked = ThreadHeap::kParked;
    if (__atomic_compare_exchange_n(&(*link)->state_, &parked, ThreadHeap::kInUse, false, __ATOMIC_SEQ_CST,
                                    __ATOMIC_RELAXED)) {
      heap = *link;
      *link = heap->next_parked_;
      break;
    }
  }
  if (heap == nullptr) {
    if (g_meta_limit - g_meta_cursor < kHeapStride) {
      void* granule = backend::page_heap().take(1, GranuleKind::kPages);
      if (granule == nullptr) {
        errno = ENOMEM;
        return nullptr;
      }
      g_meta_cursor = reinterpret_cast<uintptr_t>(granule);
      g_meta_limit = g_meta_cursor + kGranuleBytes;
    }
    heap = new (reinterpret_cast<void*>(g_meta_cursor)) ThreadHeap;  // not ThreadHeap(): no zeroing
    heap->enable_cache();
    g_meta_cursor += kHeapStride;
    heap->next_all_ = g_all;
    g_all = heap;
    ++g_count;
    heap->state_ = ThreadHeap::kInUse;
  }
  ++g_in_use;
  return heap;
}

void HeapRegistry::release(ThreadHeap* heap) {
  heap->flush();
  {
    SpinGuard guard(g_lock);
    heap->next_parked_ = g_parked;
    heap->parked_since_ns_ = os::coarse_now_ns();
    g_parked = heap;
    --g_in_use;
    __atomic_store_n(&heap->state_, ThreadHeap::kParked, __ATOMIC_SEQ_CST);
  }
  // Slabs listed after the flush, by threads that saw the heap still in use, would otherwise wait
  // for the next adopter.
  if (heap->has_remote_frees()) collect(heap);
}

template <class Work>
void HeapRegistry::while_collecting(ThreadHeap* heap, Work work) {
  // Claimed by CAS, without the lock: the heap stays on the parked list, and acquire() passes
  // over it meanwhile. Each pass applies what was listed before it; a lister that saw
  // kCollecting left its blocks to the next pass (seq_cst on both sides: after storing
  // kParked, has_remote_frees sees them).
  for (;;) {
    uint8_t parked = ThreadHeap::kParked;
    if (!__atomic_compare_exchange_n(&heap->state_, &parked, ThreadHeap::kCollecting, false, __ATOMIC_SEQ_CST,
                                     __ATOMIC_RELAXED))
      return;  // adopted by a new thread, or another lister is collecting it
    work(heap);
    __atomic_store_n(&heap->state_, ThreadHeap::kParked, __ATOMIC_SEQ_CST);
    if (!heap->has_remote_frees()) return;
  }
}

void HeapRegistry::collect(ThreadHeap* heap) {
  while_collecting(heap, [](ThreadHeap* h) { h->drain_remote(); });
}

void HeapRegistry::flush_parked(uint64_t now_ns, uint64_t idle_ns, bool wait) {
  // The lock guards the parked list's links (acquire() unlinks under it).
  if (wait) {
    g_lock.lock();
  } else if (!g_lock.try_lock()) {
    return;
  }
  for (ThreadHeap* h = g_parked; h != nullptr; h = h->next_parked_) {
    const bool idle =
        idle_ns == 0 || (now_ns > h->parked_since_ns_ && now_ns - h->parked_since_ns_ >= idle_ns);
    if (idle) while_collecting(h, [](ThreadHeap* heap) { heap->flush(); });
  }
  g_lock.unlock();
}

void HeapRegistry::for_each_heap(void (*visit)(const ThreadHeap* heap, void* ctx), void* ctx) {
  SpinGuard guard(g_lock);
  for (const ThreadHeap* h = g_all; h != nullptr; h = h->next_all_) visit(h, ctx);
}

size_t HeapRegistry::heap_count() {
  SpinGuard guard(g_lock);
  return g_count;
}

size_t HeapRegistry::heaps_in_use() {
  SpinGuard guard(g_lock);
  return g_in_use;
}

SpinLock& HeapRegistry::fork_lock() { return g_lock; }

void HeapRegistry::retire_after_fork(ThreadHeap* survivor) {
  // The other threads do not exist in the child, but their heaps may have been in the middle of
  // an operation when fork() copied them (a list half relinked, a batch half built): no lock
  // guards a heap. So the child never adopts them: they stay out of the parked list for good.
  // Blocks of theirs that the child frees go to their remote lists and stay there. That costs
  // the child their memory, never its correctness.
  for (ThreadHeap* h = g_all; h != nullptr; h = h->next_all_) {
    if (h != survivor && (h->state_ == ThreadHeap::kInUse || h->state_ == ThreadHeap::kCollecting)) {
      if (h->state_ == ThreadHeap::kInUse) --g_in_use;
      h->state_ = ThreadHeap::kRetired;  // a collecting thread is gone too: the heap may be half-applied
    }
  }
}

}  // namespace bitslab
