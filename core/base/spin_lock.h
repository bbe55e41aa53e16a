// core/base/spin_lock.h — a test-and-test-and-set lock for rare slow paths (reserving address
// space, handing heaps to threads). It never allocates and never sleeps in the kernel, so it is
// safe inside malloc; fork safety comes from core/thread/fork.cc taking every lock first (L0).
#pragma once
#include <atomic>

#include "core/base/compiler.h"

namespace bitslab {

class SpinLock {
 public:
  void lock() {
    for (;;) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      while (locked_.load(std::memory_order_relaxed)) BITSLAB_CPU_RELAX();
    }
  }
  void unlock() { locked_.store(false, std::memory_order_release); }
  // After fork() the child has one thread: whatever the lock said, nobody else holds it.
  void reset_after_fork() { locked_.store(false, std::memory_order_relaxed); }

 private:
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
