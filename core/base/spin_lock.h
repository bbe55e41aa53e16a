// core/base/spin_lock.h — a test-and-test-and-set lock for slow paths (reserving address space,
// handing heaps to threads, refilling a pool class). It never allocates, so it is safe inside
// malloc; fork safety comes from core/thread/fork.cc taking every lock first (L0).
//
// A waiter spins briefly, then yields its CPU at every look: with more threads than cores the
// holder may be preempted, and a pure spin then burns whole time slices waiting for a thread
// that cannot run (8 threads on 2 cores in mstress: 5% of all time was the pool lock's spin).
#pragma once
#include <sched.h>

#include <atomic>

#include "core/base/compiler.h"

namespace bitslab {

class SpinLock {
 public:
  void lock() {
    unsigned spins = 0;
    for (;;) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      while (locked_.load(std::memory_order_relaxed)) {
        if (spins < kSpinsBeforeYield) {
          ++spins;
          BITSLAB_CPU_RELAX();
        } else {
          sched_yield();
        }
      }
    }
  }
  // For a holder that can do without: never waits (so never waits on a thread that vanished
  // in a fork, nor on the code a signal handler interrupted).
  bool try_lock() {
    return !locked_.load(std::memory_order_relaxed) && !locked_.exchange(true, std::memory_order_acquire);
  }
  void unlock() { locked_.store(false, std::memory_order_release); }
  // After fork() the child has one thread: whatever the lock said, nobody else holds it.
  void reset_after_fork() { locked_.store(false, std::memory_order_relaxed); }

 private:
  // About a microsecond of pause instructions: longer than a slow path holds the lock.
  static constexpr unsigned kSpinsBeforeYield = 64;
  std::atomic<bool> locked_{false};
};

class SpinGuard {
 public:
  explicit SpinGuard(SpinLock& l) : lock_(l) { lock_.lock(); }
  ~SpinGuard() { lock_.unlock(); }
  SpinGuard(const SpinGuard&) = delete;
  SpinGuard& operator=(const SpinGuard&) = delete;

 private:
  SpinLock& lock_;
};

}  // namespace bitslab
