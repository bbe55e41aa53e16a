// Layer 4: the fork protocol (core/thread/fork.h). fork() copies only the calling thread, so a
// lock another thread holds at that moment stays held in the child unless the atfork handlers
// took it first. Here another thread holds each lock of the core in turn, deterministically,
// at the moment of fork; the child then takes every lock through ordinary allocation and must
// finish under a watchdog. Without the handlers, every lock's child hangs and is killed.
//
// Built twice: against the default core (unit.*) and the hardened one (unit_hardened.*), which
// has one more lock.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "core/api/bitslab.h"
#include "core/backend/backend.h"
#include "core/large/guarded_blocks.h"
#include "core/page/system_page_allocator.h"
#include "core/pool/pool_classes.h"
#include "core/profile/frame_rule_cache.h"
#include "core/profile/profiler.h"
#include "core/thread/bootstrap.h"
#include "core/thread/fork.h"
#include "tests/support/child.h"

namespace {

using bitslab::fork_protocol::NamedLock;

// Allocates until `grew()` says the layer behind a lock was entered, at most `limit` blocks of
// `size`; frees them. Fails the child (exit 3) if it never grew: then the lock was not tested.
template <typename Grew>
void allocate_until(size_t size, size_t limit, Grew grew, const char* what) {
  std::vector<void*> blocks;
  while (!grew() && blocks.size() < limit) blocks.push_back(bitslab::alloc(size));
  const bool ok = grew();
  for (void* p : blocks) bitslab::free(p);
  if (!ok) {
    std::fprintf(stderr, "the child never reached %s\n", what);
    _exit(3);
  }
}

// Takes every lock of the core through its ordinary users.
void take_every_lock() {
  // The heap profiler's lock: taken directly, since the profiler is off in this binary (its
  // paths are tested end to end in tests/scripts/profile_test.py's fork case).
  bitslab::profile::fork_lock().lock();
  bitslab::profile::fork_lock().unlock();
  // The profiler's frame rule cache: its walks only try the lock, so it is taken directly too.
  bitslab::profile::frame_rule_cache_lock().lock();
  bitslab::profile::frame_rule_cache_lock().unlock();
  // Heap registry: a new thread acquires a heap, and parks it when it exits.
  std::thread([] { bitslab::free(bitslab::alloc(64)); }).join();
  // Each pool's growth lock, and the heap range's claim lock: allocate until a new region.
  for (unsigned cls = 0; cls < bitslab::kPoolClassCount; ++cls) {
    bitslab::ChunkPool& pool = bitslab::backend::pools().pool(cls);
    const size_t regions = pool.region_count();
    allocate_until(
        bitslab::pool_class_bytes(cls), size_t{1} << 20, [&] { return pool.region_count() > regions; },
        "a new pool region");
  }
  // The slab page allocator: allocate until the slab page cache had to ask it for a page.
  bitslab::SystemPageAllocator& slabs = bitslab::backend::slab_system_pages();
  const size_t slab_pages = slabs.pages_in_use();
  allocate_until(
      1024, size_t{1} << 20, [&] { return slabs.pages_in_use() > slab_pages; }, "a new slab page");
  // The OS page allocator (metadata and toolkit users).
  void* page = nullptr;
  if (bitslab::SystemPageAllocator::instance().allocate(&page, 1) != 1) _exit(4);
  bitslab::SystemPageAllocator::instance().deallocate(&page, 1);
  // Guarded large blocks (the hardened build makes them).
  if constexpr (bitslab::kHardened) {
    void* large = bitslab::guarded::allocate(size_t{1} << 20, 0);
    if (large == nullptr) _exit(5);
    bitslab::guarded::deallocate(large);
  }
}

}  // namespace

TEST_CASE(
    "fork protocol: every lock of the core, held by another thread at fork, is free in the forked child") {
  bitslab::free(bitslab::alloc(1));  // the core is initialised: its locks exist, handlers registered
  NamedLock locks[bitslab::fork_protocol::kMaxLocks];
  const size_t n = bitslab::fork_protocol::locks(locks);
  REQUIRE(n == bitslab::kPoolClassCount + (bitslab::kHardened ? 7 : 6));
  // The workload alone, without a held lock, finishes (else a failure below would mean nothing).
  const auto control = bitslab::test::run_in_child(take_every_lock, 10);
  REQUIRE_MESSAGE((control.exited && control.exit_code == 0), bitslab::test::describe(control));

  for (size_t i = 0; i < n; ++i) {
    const NamedLock& held = locks[i];
    INFO("lock held at fork: ", std::string(held.name), " ", held.index);
    std::atomic<bool> holding{false};
    std::atomic<bool> child_done{false};
    // Holds the lock across the fork: the prepare handler must wait for it, so the child gets
    // it free. Released on a timer, since with the handlers fork() does not return until then.
    // Then it sleeps, neither exiting nor allocating, until the child is done: a thread that
    // exits while fork() copies the process may hold a lock of the sanitizer's allocator (its
    // thread teardown frees), and GCC 12's ASan takes none of its locks at fork, so the child
    // would hang on that lock rather than on ours (seen in CI; gdb showed the child waiting in
    // SizeClassAllocator64::GetFromAllocator).
    std::thread holder([&] {
      held.lock->lock();
      holding = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      held.lock->unlock();
      while (!child_done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    while (!holding) std::this_thread::yield();
    // The workload takes milliseconds; a child still running after 2 s is stuck on the lock.
    const auto child = bitslab::test::run_in_child(take_every_lock, 2);
    child_done = true;
    holder.join();
    CHECK_MESSAGE((child.exited && child.exit_code == 0 && child.stderr_text.empty()),
                  bitslab::test::describe(child));
  }
}

// The order is the one core/thread/fork.cc documents, and no lock is taken twice (a lock listed
// twice would deadlock prefork against itself).
TEST_CASE("fork protocol: the lock list names each lock once, in the order the handlers take them") {
  bitslab::free(bitslab::alloc(1));
  NamedLock locks[bitslab::fork_protocol::kMaxLocks];
  const size_t n = bitslab::fork_protocol::locks(locks);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j) CHECK(locks[i].lock != locks[j].lock);
  CHECK(std::string(locks[0].name) == "heap profiler");  // outermost: it takes no other
  CHECK(std::string(locks[1].name) == "frame rule cache");
  CHECK(std::string(locks[2].name) == "heap registry");
  CHECK(std::string(locks[n - 1].name) == "page heap");  // innermost
}
