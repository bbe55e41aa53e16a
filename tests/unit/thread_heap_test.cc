// Layer 4: thread heaps — same-thread reuse, double-free detection, cross-thread frees,
// thread exit, fork.
#include <doctest/doctest.h>

#include <pthread.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/api/bitslab.h"
#include "core/api/census.h"
#include "core/api/stats.h"
#include "core/backend/backend.h"
#include "core/base/config.h"
#include "core/os/os.h"
#include "core/pool/pool_classes.h"
#include "core/small/remote_frees.h"
#include "core/small/size_classes.h"
#include "core/small/slab.h"
#include "core/thread/heap_registry.h"
#include "core/thread/thread_heap.h"
#include "tests/support/child.h"

namespace {
void fill(void* p, size_t n, uint8_t seed) {
  auto* b = static_cast<uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i);
}
bool check(const void* p, size_t n, uint8_t seed) {
  auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i] != static_cast<uint8_t>(seed + i)) return false;
  return true;
}
// The child died as a double free should: killed, its report's first words "bitslab: double
// free of".
void check_double_free_abort(const bitslab::test::ChildResult& result) {
  INFO(bitslab::test::describe(result));
  CHECK(result.signaled);
  CHECK(result.stderr_text.find("bitslab: double free of ") == 0);
}
}  // namespace

TEST_CASE("thread heap: a freed block is the next one handed out (same thread, no atomics)") {
  void* a = bitslab::alloc(40);
  void* b = bitslab::alloc(40);
  REQUIRE((a && b));
  CHECK(a != b);
  bitslab::free(a);
  CHECK(bitslab::alloc(40) == a);  // the top of the class's block cache
  bitslab::free(a);
  bitslab::free(b);
}

// The block cache of a class holds kBlockCacheMaxSlots blocks at most, however much it grows;
// these frees overflow it, so both tiers (cache and bitmap) take blocks, and both must hand each
// block out once.
TEST_CASE("thread heap: blocks freed past the cache's capacity go to the bitmap, none twice") {
  constexpr size_t kBlocks = 3 * bitslab::kBlockCacheMaxSlots;
  std::vector<void*> blocks;
  for (size_t k = 0; k < kBlocks; ++k) blocks.push_back(bitslab::alloc(48));
  for (void* p : blocks) bitslab::free(p);
  std::set<void*> again;
  for (size_t k = 0; k < kBlocks; ++k) {
    void* p = bitslab::alloc(48);
    CHECK(again.insert(p).second);
    fill(p, 48, static_cast<uint8_t>(k));
  }
  for (void* p : again) bitslab::free(p);
}

TEST_CASE("thread heap: a double free of a block the cache spilled to the bitmap aborts") {
  auto result = bitslab::test::run_in_child([] {
    constexpr size_t kBlocks = 2 * bitslab::kBlockCacheMaxSlots;
    void* blocks[kBlocks];
    for (void*& p : blocks) p = bitslab::alloc(24);
    for (void* p : blocks) bitslab::free(p);  // the last ones find the cache full
    bitslab::free(blocks[kBlocks - 1]);
  });
  check_double_free_abort(result);
}

// A block freed into its slab's bitmap carries the mark as a cached one does, so that its second
// free takes the marked path even when the cache has room for it: 2048 frees of 24 B blocks fill
// the cache (1024 at most) and send the last one to the bitmap; a malloc makes room.
TEST_CASE("thread heap: a double free of a block in its slab's bitmap aborts while the cache has room") {
  auto result = bitslab::test::run_in_child([] {
    constexpr size_t kBlocks = 2 * bitslab::kBlockCacheMaxSlots;
    void* blocks[kBlocks];
    for (void*& p : blocks) p = bitslab::alloc(24);
    for (void* p : blocks) bitslab::free(p);
    bitslab::alloc(24);  // from the cache: room for one
    bitslab::free(blocks[kBlocks - 1]);
  });
  check_double_free_abort(result);
}

// A block start that its slab has not handed out yet (at its frontier: fresh, its bit free since
// the slab was made) is no block of the program's, though nothing in it says so.
TEST_CASE("thread heap: a free of a block its slab never handed out aborts, naming it") {
  auto result = bitslab::test::run_in_child([] {
    // Until a slab that is not carved to its end: at most one slab's blocks more.
    bitslab::Slab* s = nullptr;
    do s = bitslab::Slab::of(bitslab::alloc(400));
    while (s->frontier == s->capacity);
    bitslab::free(s->block_at(s->frontier));
  });
  INFO(bitslab::test::describe(result));
  CHECK(result.signaled);
  CHECK(result.stderr_text.find("bitslab: free of a pointer that bitslab never handed out: ") == 0);
}

// ---- the block cache grows ---------------------------------------------------------------

namespace {
// Bytes the heap's block caches have grown by: room past each class's first.
size_t block_cache_growth(const bitslab::ThreadHeap* heap) {
  size_t bytes = 0;
  for (unsigned cls = 0; cls < bitslab::kSmallClassCount; ++cls) {
    const size_t first = bitslab::ThreadHeap::first_block_cache_room(cls);
    bytes += (heap->block_cache_room(cls) - first) * bitslab::kSmallClassBytes[cls];
  }
  return bytes;
}

// On the calling thread: allocates n blocks of `size`, frees them all, and returns the cache's
// room for the class afterwards.
size_t room_after_run_of_frees(size_t size, size_t n) {
  std::vector<void*> blocks;
  for (size_t k = 0; k < n; ++k) blocks.push_back(bitslab::alloc(size));
  for (void* p : blocks) bitslab::free(p);
  return bitslab::tls_heap->block_cache_room(bitslab::small_class_of(size));
}

// Runs of n frees as above until the cache's room stops growing (each time it doubles, the first
// kBlockCacheGrowthRun - 1 frees past it go to the bitmap, so a run may end before it is grown
// in full); returns the room.
size_t room_after_runs_of_frees(size_t size, size_t n) {
  size_t room = 0, last = 0;
  do {
    last = room;
    room = room_after_run_of_frees(size, n);
  } while (room != last);
  return room;
}
}  // namespace

// A batch of frees longer than the cache doubles its room each time 16 frees in a row overflow
// it (the first 15 go to the bitmap), so that from the third batch on the whole batch stays
// cached, and its mallocs and frees never reach the bitmap. A flush (here trim, as at thread
// exit) empties it and starts it over at its first room.
TEST_CASE(
    "thread heap: a run of frees that overflows a class's cache doubles its room, and a flush starts it "
    "over") {
  std::thread([] {
    constexpr size_t kSize = 48;  // 8 KiB / 48 B: more than 64 blocks, so the first room is 64
    const unsigned cls = bitslab::small_class_of(kSize);
    bitslab::free(bitslab::alloc(kSize));
    bitslab::ThreadHeap* heap = bitslab::tls_heap;
    CHECK(heap->block_cache_room(cls) == bitslab::kBlockCacheSlots);
    CHECK(room_after_run_of_frees(kSize, 300) == 4 * bitslab::kBlockCacheSlots);  // 64 -> 256
    CHECK(room_after_run_of_frees(kSize, 300) == 8 * bitslab::kBlockCacheSlots);  // -> 512
    CHECK(room_after_run_of_frees(kSize, 300) == 8 * bitslab::kBlockCacheSlots);
    size_t cached[bitslab::kSmallClassCount] = {};
    heap->count_cached_blocks(cached);
    CHECK(cached[cls] == 300);  // the whole batch, none to the bitmap
    bitslab::trim();
    CHECK(heap->block_cache_room(cls) == bitslab::kBlockCacheSlots);
    CHECK(block_cache_growth(heap) == 0);
    std::fill(std::begin(cached), std::end(cached), 0);
    heap->count_cached_blocks(cached);
    CHECK(cached[cls] == 0);
    CHECK(room_after_run_of_frees(kSize, 100) == 2 * bitslab::kBlockCacheSlots);  // grows again
  }).join();
}

// A live set that churns (random frees and mallocs of one class) meets a full cache often, but
// with mallocs in between: its cache never grows.
TEST_CASE("thread heap: random mallocs and frees of a class never grow its cache") {
  std::thread([] {
    constexpr size_t kSize = 48, kLive = 2000;
    std::vector<void*> live;
    for (size_t k = 0; k < kLive; ++k) live.push_back(bitslab::alloc(kSize));
    uint64_t x = 88172645463325252ull;
    for (int op = 0; op < 200000; ++op) {  // a free, then a malloc half the time: the cache fills
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      std::swap(live[x % live.size()], live.back());
      bitslab::free(live.back());
      live.pop_back();
      if ((x >> 32) % 2 == 0 || live.size() < kLive / 2) live.push_back(bitslab::alloc(kSize));
    }
    CHECK(bitslab::tls_heap->block_cache_room(bitslab::small_class_of(kSize)) == bitslab::kBlockCacheSlots);
    for (void* p : live) bitslab::free(p);
  }).join();
}

// Another thread's blocks that a thread keeps (256 B: lines of their own) never grow its cache,
// even of a class it allocates: a cache that grows with churn holds up to 1024 blocks a class,
// each keeping its slab from going back (bench_server's RSS: 39 MiB against 32 when they did).
TEST_CASE("thread heap: other threads' blocks never grow a thread's block cache") {
  constexpr size_t kSize = 256, kBlocks = 300;
  const unsigned cls = bitslab::small_class_of(kSize);
  std::vector<void*> blocks;
  for (size_t k = 0; k < kBlocks; ++k) blocks.push_back(bitslab::alloc(kSize));
  size_t room = 0, cached = 0;
  std::thread([&] {
    bitslab::free(bitslab::alloc(kSize));  // a heap, which allocates the class too
    for (void* p : blocks) bitslab::free(p);
    room = bitslab::tls_heap->block_cache_room(cls);
    size_t held[bitslab::kSmallClassCount] = {};
    bitslab::tls_heap->count_cached_blocks(held);
    cached = held[cls];
  }).join();
  CHECK(room == bitslab::kBlockCacheBytes / kSize);  // 32 blocks, as at first
  CHECK(cached == room);                             // full: the rest went to their owner
}

// One heap's caches grow by kBlockCacheGrowthBytes in all: 1024 frees of 1 KiB take nearly all
// of it, and a second class then grows by what is left.
TEST_CASE("thread heap: a heap's block caches grow by its budget at most") {
  std::thread([] {
    CHECK(room_after_runs_of_frees(1024, bitslab::kBlockCacheMaxSlots) == bitslab::kBlockCacheMaxSlots);
    const size_t second = room_after_runs_of_frees(960, bitslab::kBlockCacheMaxSlots);
    CHECK(second < bitslab::kBlockCacheMaxSlots);
    CHECK(second > bitslab::kBlockCacheBytes / 960);  // the 7.7 KiB left gave it 8 more
    CHECK(block_cache_growth(bitslab::tls_heap) <= bitslab::kBlockCacheGrowthBytes);
    CHECK(block_cache_growth(bitslab::tls_heap) + bitslab::tls_heap->block_cache_growth_left() ==
          bitslab::kBlockCacheGrowthBytes);
    bitslab::trim();  // every byte of the budget back, the part a failed growth set aside too
    CHECK(block_cache_growth(bitslab::tls_heap) == 0);
    CHECK(bitslab::tls_heap->block_cache_growth_left() == bitslab::kBlockCacheGrowthBytes);
  }).join();
}

// A phase's last run of frees fills the grown caches of its classes; when the program moves on
// to other classes, the next purge (here reclaim) lets the heap flush and shrink the caches of
// the classes it no longer allocates, at its next slow path, so their slabs can go back. A class
// it still allocates keeps its room.
TEST_CASE("thread heap: after a purge, the grown caches of classes the thread no longer allocates shrink") {
  std::thread([] {
    const unsigned idle = bitslab::small_class_of(48), busy = bitslab::small_class_of(160);
    room_after_run_of_frees(48, 300);                            // 64 -> 256
    const size_t busy_room = room_after_run_of_frees(160, 200);  // 51 -> 204
    bitslab::ThreadHeap* heap = bitslab::tls_heap;
    size_t cached[bitslab::kSmallClassCount] = {};
    heap->count_cached_blocks(cached);
    const size_t busy_cached = cached[busy];
    bitslab::backend::reclaim();
    bitslab::free(bitslab::alloc(1024));  // a slow path: the heap notes each class's mallocs
    void* kept = bitslab::alloc(160);     // from the cache: `busy` is still allocated
    bitslab::backend::reclaim();
    bitslab::free(bitslab::alloc(960));  // a slow path after a purge: `idle` shrinks
    CHECK(heap->block_cache_room(idle) == bitslab::kBlockCacheSlots);
    CHECK(heap->block_cache_room(busy) == busy_room);
    CHECK(busy_room > 51);
    std::fill(std::begin(cached), std::end(cached), 0);
    heap->count_cached_blocks(cached);
    CHECK(cached[idle] == 0);  // its blocks are back in their slabs
    CHECK(cached[busy] == busy_cached - 1);
    bitslab::free(kept);
  }).join();
}

// All heaps' caches together grow by kBlockCacheGrowthTotalBytes at most (32 threads' worth of
// 1 KiB runs); a heap's flush gives its growth back, so that a later thread grows in full.
TEST_CASE("thread heap: the process's block caches grow by the total budget at most, given back at exit") {
  constexpr size_t kThreads = bitslab::kBlockCacheGrowthTotalBytes / bitslab::kBlockCacheGrowthBytes + 8;
  std::atomic<size_t> grown{0}, arrived{0};
  std::atomic<bool> leave{false};
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      room_after_runs_of_frees(1024, bitslab::kBlockCacheMaxSlots);
      grown += block_cache_growth(bitslab::tls_heap);
      ++arrived;
      while (!leave.load()) std::this_thread::yield();  // every heap holds its growth until all have run
    });
  while (arrived.load() != kThreads) std::this_thread::yield();
  CHECK(grown.load() <= bitslab::kBlockCacheGrowthTotalBytes);
  CHECK(grown.load() >= bitslab::kBlockCacheGrowthTotalBytes - 2 * bitslab::kBlockCacheGrowthBytes);
  leave = true;
  for (std::thread& t : threads) t.join();
  size_t room = 0;
  std::thread([&] { room = room_after_runs_of_frees(1024, bitslab::kBlockCacheMaxSlots); }).join();
  CHECK(room == bitslab::kBlockCacheMaxSlots);
}

// A thread in teardown (after its heap went back) allocates through the shared empty heap,
// whose pool path also looks for idle grown caches after a purge: it has none, and must stay
// without a cache, and the process's growth budget whole.
TEST_CASE("thread heap: a thread's teardown allocations after a purge leave the empty heap without a cache") {
  static pthread_key_t key;
  static void* chunk = nullptr;
  REQUIRE(pthread_key_create(&key, [](void*) {  // runs after bitslab's own exit key: torn down
            bitslab::backend::reclaim();        // a purge since the empty heap last looked
            chunk = bitslab::alloc(2048);
          }) == 0);
  std::thread([] {
    bitslab::free(bitslab::alloc(16));  // a heap, so that bitslab's exit key tears it down first
    pthread_setspecific(key, &key);
  }).join();
  pthread_key_delete(key);
  REQUIRE(chunk != nullptr);
  bitslab::free(chunk);
  for (unsigned cls = 0; cls < bitslab::kSmallClassCount; ++cls)
    CHECK(bitslab::kEmptyHeap.block_cache_room(cls) == 0);
  CHECK(bitslab::kEmptyHeap.block_cache_growth_left() == 0);
  size_t room = 0;
  std::thread([&] { room = room_after_runs_of_frees(1024, bitslab::kBlockCacheMaxSlots); }).join();
  CHECK(room == bitslab::kBlockCacheMaxSlots);  // the process's budget is whole
}

// A block whose first word happens to equal a cache mark must still be freed normally: the
// mark is only a hint, the scan of the cache decides. Copying the word from a cached block
// produces exactly that case.
TEST_CASE("thread heap: program data that looks like the cache mark is not a double free") {
  void* cached = bitslab::alloc(64);
  void* live = bitslab::alloc(64);
  REQUIRE((cached && live));
  bitslab::free(cached);
  std::memcpy(live, cached, sizeof(uint64_t));  // the mark, as a program might copy it
  bitslab::free(live);                          // checked against the cache, then cached
  void* a = bitslab::alloc(64);
  void* b = bitslab::alloc(64);
  CHECK(a != b);
  CHECK(std::set<void*>{a, b} == std::set<void*>{cached, live});
  bitslab::free(a);
  bitslab::free(b);
}

// The same across threads: another thread frees a block whose first word equals its owner's
// mark (copied from a block the owner freed). Not a double free: a class freeing threads keep
// goes into that thread's cache (its next block of the class), a line-sharing one to its owner.
TEST_CASE("thread heap: another thread's free of program data that looks like the owner's mark") {
  for (size_t size : {size_t{256}, size_t{48}}) {
    void* freed = bitslab::alloc(size);
    void* live = bitslab::alloc(size);
    REQUIRE((freed && live));
    bitslab::free(freed);                        // marked with this heap's mark
    std::memcpy(live, freed, sizeof(uint64_t));  // the mark, as a program might copy it
    void* next = nullptr;
    bool pending = false;
    std::thread([&] {
      bitslab::free(bitslab::alloc(size));  // this thread's heap, with the class in use
      bitslab::free(live);                  // checked against the caches, then freed as usual
      bitslab::Slab* s = bitslab::Slab::of(live);
      pending = bitslab::RemoteFrees::pending(s, s->block_index(live));
      next = bitslab::alloc(size);
      bitslab::free(next);
    }).join();
    CHECK(pending);  // sent to its owner, even of a class the freeing thread keeps
    CHECK(next != live);
    bitslab::tls_heap->drain_remote();
    bitslab::free(bitslab::alloc(size));  // (freed is this heap's next block again)
  }
}

// The owner freed p and trim() moved it from the cache to its bitmap, still marked; another
// thread's free of p finds it in no cache and pending nowhere, and only the owner can read its
// bit. Kept by that thread (256 B is a class freeing threads keep), p would be handed out twice;
// sent back, the owner's next drain finds its bit free and aborts naming it.
TEST_CASE("thread heap: another thread's double free of a kept block back in its bitmap aborts") {
  for (size_t size : {size_t{256}, size_t{64}}) {
    CAPTURE(size);
    auto result = bitslab::test::run_in_child([size] {
      void* p = bitslab::alloc(size);
      void* keep = bitslab::alloc(size);  // the slab stays live
      bitslab::free(p);
      bitslab::trim();  // p to its bitmap, marked
      std::fprintf(stderr, "%s\n", bitslab::test::hex_address(p).c_str());
      std::thread([&] {
        bitslab::free(bitslab::alloc(size));  // this thread's heap, with the class in use
        bitslab::free(p);                     // the second free
        void* a = bitslab::alloc(size);
        void* b = bitslab::alloc(size);
        if (a == p || b == p) std::_Exit(3);  // p handed out while still free in its bitmap
        bitslab::free(a);
        bitslab::free(b);
      }).join();
      bitslab::trim();  // the owner drains: p's bit is free already
      bitslab::free(keep);
      std::_Exit(0);
    });
    INFO(bitslab::test::describe(result));
    CHECK(result.signaled);
    const size_t line_end = result.stderr_text.find('\n');
    REQUIRE(line_end != std::string::npos);
    const std::string address = result.stderr_text.substr(0, line_end);
    CHECK(result.stderr_text.find("bitslab: double free of " + address) != std::string::npos);
  }
}

namespace {
// Blocks the slabs of class cls hold, live or free, in every heap.
uint64_t held_blocks(unsigned cls) {
  return bitslab::collect_stats(bitslab::StatsDetail::kByClass).small[cls].held;
}
// In a fork child: trims away what earlier tests left, then a thread allocates one block of
// `size` and exits, its heap parked with that block's slab current; the calling thread frees the
// block. Returns the blocks of one slab of the class.
uint64_t park_a_heap_with_one_block_freed(size_t size) {
  bitslab::trim();
  void* p = nullptr;
  std::thread([&] { p = bitslab::alloc(size); }).join();
  const uint64_t slab_blocks = bitslab::Slab::of(p)->capacity;
  bitslab::free(p);
  return slab_blocks;
}
}  // namespace

// A thread allocates one block and exits: its heap parks, the block's slab its current one,
// which keeps no count. Another thread frees the block (into its own cache: a kept class); trim
// sends it back, and the collection that applies it finds the current slab empty but cannot
// tell (no count). trim flushes the parked heaps too, which gives the slab back without
// waiting for a thread to adopt the heap. (Counts relative to before the trim: the child holds
// the slabs of the tests that ran before it in the parent.)
TEST_CASE("thread heap: trim gives back a parked heap's current slab that other threads' frees emptied") {
  auto result = bitslab::test::run_in_child([] {
    constexpr size_t kSize = 256;
    const unsigned cls = bitslab::small_class_of(kSize);
    const uint64_t slab_blocks = park_a_heap_with_one_block_freed(kSize);
    const uint64_t before = held_blocks(cls);  // with the block's slab (and other tests' of the class)
    bitslab::trim();
    const uint64_t after = held_blocks(cls);
    std::fprintf(stderr, "held %llu before trim, %llu after (a slab: %llu)\n",
                 static_cast<unsigned long long>(before), static_cast<unsigned long long>(after),
                 static_cast<unsigned long long>(slab_blocks));
    std::_Exit(after + slab_blocks <= before ? 0 : 4);
  });
  INFO(bitslab::test::describe(result));
  CHECK(result.exited);
  CHECK(result.exit_code == 0);
}

// The backend's timed purge flushes only heaps parked through a whole delay: a heap that a new
// thread may adopt any moment keeps the slab it would allocate from next. 48 B blocks go back to
// their owner when another thread frees them (no cache keeps them), so the main thread's free
// empties the parked heap's current slab at once.
TEST_CASE("thread heap: a timed purge keeps the slabs of a heap parked for less than the delay") {
  auto result = bitslab::test::run_in_child([] {
    constexpr size_t kSize = 48;
    const unsigned cls = bitslab::small_class_of(kSize);
    const uint64_t slab_blocks = park_a_heap_with_one_block_freed(kSize);
    const uint64_t before = held_blocks(cls);  // with the block's slab (and other tests' of the class)
    const uint64_t hour_ns = uint64_t{3600} * 1000000000;
    bitslab::HeapRegistry::flush_parked(bitslab::os::coarse_now_ns(), hour_ns, /*wait=*/false);
    const uint64_t after_timed = held_blocks(cls);
    bitslab::HeapRegistry::flush_parked(bitslab::os::coarse_now_ns(), 0, /*wait=*/true);
    const uint64_t after_all = held_blocks(cls);
    std::fprintf(stderr, "held %llu, %llu after a purge of heaps parked an hour, %llu after one of all\n",
                 static_cast<unsigned long long>(before), static_cast<unsigned long long>(after_timed),
                 static_cast<unsigned long long>(after_all));
    std::_Exit(after_timed == before && after_all + slab_blocks <= before ? 0 : 4);
  });
  INFO(bitslab::test::describe(result));
  CHECK(result.exited);
  CHECK(result.exit_code == 0);
}

TEST_CASE("thread heap: many blocks of every small class, contents intact") {
  std::vector<std::pair<void*, size_t>> live;
  std::set<void*> distinct;
  for (size_t size = 1; size <= bitslab::kSmallMax; size += 3) {
    for (int k = 0; k < 20; ++k) {
      void* p = bitslab::alloc(size);
      REQUIRE(p != nullptr);
      CHECK(reinterpret_cast<uintptr_t>(p) % bitslab::kMinAlign == 0);
      CHECK(bitslab::usable_size(p) >= size);
      fill(p, size, static_cast<uint8_t>(size));
      live.emplace_back(p, size);
      distinct.insert(p);
    }
  }
  CHECK(distinct.size() == live.size());
  for (auto [p, size] : live) {
    CHECK(check(p, size, static_cast<uint8_t>(size)));
    bitslab::free(p);
  }
}

TEST_CASE("thread heap: a double free aborts with one line naming the block") {
  void* p = bitslab::alloc(32);
  REQUIRE(p != nullptr);
  auto result = bitslab::test::run_in_child([&] {
    bitslab::free(p);
    bitslab::free(p);
  });
  CHECK(result.signaled);
  CHECK(result.signal == SIGABRT);
  CHECK(result.stderr_text == "bitslab: double free of " + bitslab::test::hex_address(p) + "\n");
  bitslab::free(p);
}

TEST_CASE("thread heap: an interior pointer or a pointer into a slab header aborts") {
  char* p = static_cast<char*>(bitslab::alloc(64));
  REQUIRE(p != nullptr);
  auto interior = bitslab::test::run_in_child([&] { bitslab::free(p + 8); });
  CHECK(interior.signaled);
  CHECK(interior.stderr_text.find("never handed out: " + bitslab::test::hex_address(p + 8)) !=
        std::string::npos);
  // The slab headers live in the granule's first page: its granule header, and p's slab header.
  char* granule_header =
      reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(p) & ~(bitslab::kGranuleBytes - 1)) + 8;
  char* slab_header = reinterpret_cast<char*>(bitslab::Slab::of(p)) + 8;
  for (char* header : {granule_header, slab_header}) {
    auto in_header = bitslab::test::run_in_child([&] { bitslab::free(header); });
    CHECK(in_header.signaled);
    CHECK(in_header.stderr_text.find("never handed out: " + bitslab::test::hex_address(header)) !=
          std::string::npos);
  }
  bitslab::free(p);
}

// ---- pool chunk caches ----------------------------------------------------------------------

namespace {
// Chunks of pool class cls that its regions count as handed out: the program's, and those in
// threads' caches.
size_t chunks_out(unsigned cls) { return bitslab::backend::pools().pool(cls).live_chunks(); }
}  // namespace

// A class's cache starts at kPoolCacheStartSlots chunks and grows at each refill: batches of
// 16 chunks of 4 KiB, twice what it starts with, allocated then freed, settle wholly in the
// thread's cache: after a few rounds the regions see no more traffic (as many chunks out of
// them after each round), and at least the 16 are held. The thread's exit gives them back.
TEST_CASE("thread heap: a pool class used in batches of 16 grows its cache to hold a batch") {
  constexpr size_t kBatch = 16;
  REQUIRE(kBatch == 2 * bitslab::kPoolCacheStartSlots);
  const unsigned cls = bitslab::pool_class_of(4096);
  const size_t before = chunks_out(cls);
  constexpr int kRounds = 12;
  size_t out[kRounds];
  std::thread([&] {
    void* chunks[kBatch];
    for (int round = 0; round < kRounds; ++round) {
      for (void*& c : chunks) c = bitslab::alloc(4096);
      for (void* c : chunks) bitslab::free(c);
      out[round] = chunks_out(cls) - before;
    }
  }).join();
  CHECK(out[kRounds - 1] >= kBatch);
  CHECK(out[kRounds - 1] <= bitslab::kPoolCacheSlots);
  for (int round = kRounds / 2; round < kRounds; ++round) CHECK(out[round] == out[kRounds - 1]);
  CHECK(chunks_out(cls) == before);  // the exit flushed the cache
}

// The growth is the heap's to share: batches in 8 classes of 4-8 KiB would grow each cache by
// 24 chunks (1.1 MiB in all); the heap's allowance stops them at kPoolCacheGrowthBytes more
// than they start with.
TEST_CASE("thread heap: a thread's pool caches grow by kPoolCacheGrowthBytes at most") {
  const unsigned first = bitslab::pool_class_of(4096);
  constexpr unsigned kClasses = 8;
  size_t before[kClasses];
  for (unsigned k = 0; k < kClasses; ++k) before[k] = chunks_out(first + k);
  size_t cached_bytes = 0, start_bytes = 0;
  std::thread([&] {
    void* chunks[bitslab::kPoolCacheSlots];
    for (unsigned k = 0; k < kClasses; ++k) {
      const size_t size = bitslab::pool_class_bytes(first + k);
      for (int round = 0; round < 8; ++round) {
        for (void*& c : chunks) c = bitslab::alloc(size);
        for (void* c : chunks) bitslab::free(c);
      }
    }
    for (unsigned k = 0; k < kClasses; ++k) {
      const size_t size = bitslab::pool_class_bytes(first + k);
      cached_bytes += (chunks_out(first + k) - before[k]) * size;
      start_bytes += bitslab::kPoolCacheStartSlots * size;
    }
  }).join();
  CHECK(cached_bytes > start_bytes);  // some grew
  CHECK(cached_bytes <= start_bytes + bitslab::kPoolCacheGrowthBytes);
}

TEST_CASE("thread heap: blocks freed by another thread come back to the owner") {
  constexpr int kCount = 20000;
  std::vector<void*> blocks(kCount);
  for (int i = 0; i < kCount; ++i) {
    blocks[i] = bitslab::alloc(16 + (i % 64) * 16);
    fill(blocks[i], 16, static_cast<uint8_t>(i));
  }
  std::atomic<int> bad{0};
  std::thread other([&] {
    for (int i = 0; i < kCount; ++i) {
      if (!check(blocks[i], 16, static_cast<uint8_t>(i))) ++bad;
      bitslab::free(blocks[i]);  // remote: the owner's to apply
    }
  });
  other.join();
  CHECK(bad == 0);
  // The owner applies the posted frees on its slow path and reuses the memory: allocating the
  // same blocks again needs no more slab pages than the first time held (had the frees been
  // lost, every one of them would need a new block).
  const auto before = bitslab::stats();
  std::vector<void*> again(kCount);
  for (int i = 0; i < kCount; ++i) again[i] = bitslab::alloc(16 + (i % 64) * 16);
  const auto after = bitslab::stats();
  CHECK(after.slab_pages_in_use <= before.slab_pages_in_use + 1);
  for (void* p : again) bitslab::free(p);
}

// The freeing thread stays alive and never allocates again, so nothing of its own (a slow path,
// its exit) would hand over what it held back: its frees must reach the owner as they happen,
// past its full cache.
TEST_CASE("thread heap: blocks freed by a thread that never allocates again come back to the owner") {
  constexpr int kCount = 20000 + 7;  // ~20 slabs of 64 B blocks
  std::vector<void*> blocks(kCount);
  for (void*& p : blocks) p = bitslab::alloc(64);
  std::atomic<int> stage{0};
  std::thread freer([&] {
    bitslab::free(bitslab::alloc(64));  // its heap: it caches what fits
    for (void* p : blocks) bitslab::free(p);
    stage = 1;
    while (stage != 2) std::this_thread::yield();  // alive, and allocating nothing
  });
  while (stage != 1) std::this_thread::yield();
  // The owner's slow path applies the posted frees; its new blocks must reuse those slabs. Had
  // the frees stayed with the freer, all 20 007 blocks would need new slabs (~20 pages).
  const auto before = bitslab::stats();
  for (void*& p : blocks) p = bitslab::alloc(64);
  const auto after = bitslab::stats();
  CHECK(after.slab_pages_in_use <= before.slab_pages_in_use + 1);
  stage = 2;
  freer.join();
  for (void* p : blocks) bitslab::free(p);
}

// 100 B blocks share cache lines, so a freeing thread never keeps them (and its cache of the
// class is full besides): the first free sets p's remote bit, marked, and the second, finding
// the mark, finds the bit set.
TEST_CASE("thread heap: a remote double free by one thread aborts") {
  auto result = bitslab::test::run_in_child([] {
    void* p = bitslab::alloc(100);
    std::thread([p] {
      std::vector<void*> own;  // this thread's blocks of the class fill its cache
      for (size_t i = 0; i < bitslab::kBlockCacheSlots; ++i) own.push_back(bitslab::alloc(100));
      for (void* q : own) bitslab::free(q);
      bitslab::free(p);
      bitslab::free(p);
    }).join();
    for (int i = 0; i < 100000; ++i) bitslab::free(bitslab::alloc(100));  // reaches the slow path
    for (int i = 0; i < 5000; ++i) bitslab::alloc(100);
  });
  check_double_free_abort(result);
}

// The mark is the program's to overwrite once the block is free (a use after free): the second
// free then looks like a first one, and the remote bit, still set, tells.
TEST_CASE("thread heap: a remote double free whose mark the program overwrote aborts before it is applied") {
  auto result = bitslab::test::run_in_child([] {
    void* p = bitslab::alloc(100);
    std::thread([p] {
      bitslab::free(bitslab::alloc(300));  // this thread's heap exists
      bitslab::free(p);                    // 100 B: its remote bit set, for the owner
      std::memset(p, 0, 8);                // the mark gone
      bitslab::free(p);
    }).join();
    std::_Exit(0);
  });
  check_double_free_abort(result);
}

// ---- another thread's frees stay with it --------------------------------------------------

namespace {
// Allocates a block of `size` here and frees it on a new thread (whose heap exists, with its
// cache of the class empty), which then allocates `size`: whether it got the same block back,
// i.e. kept it in its own cache rather than sending it to its owner.
bool freeing_thread_reuses(size_t size) {
  void* p = bitslab::alloc(size);
  REQUIRE(p != nullptr);
  void* again = nullptr;
  std::thread([&] {
    void* other_class = bitslab::alloc(300);  // the thread's heap exists
    bitslab::free(p);                         // remote
    again = bitslab::alloc(size);
    bitslab::free(again);
    bitslab::free(other_class);
  }).join();
  return again == p;
}
}  // namespace

TEST_CASE("thread heap: a block freed by another thread is that thread's next block of the class") {
  CHECK(freeing_thread_reuses(256));  // alone on its four cache lines
}

// A 160 B block is not alone on its lines, but it has one of its own between the two it may share
// with its neighbours' ends: the freeing thread keeps it, as it keeps 256 B.
TEST_CASE("thread heap: a 160 B block freed by another thread is that thread's next block of the class") {
  CHECK(freeing_thread_reuses(150));
}

// A 32 B block shares its line with its owner's other blocks: reused by the freeing thread, two
// threads would write one line. It goes back to the owner instead, and the freeing thread's
// next block comes from its own slab.
TEST_CASE("thread heap: a block that shares a cache line goes back to its owner, not to the freeing thread") {
  CHECK_FALSE(freeing_thread_reuses(32));
}

namespace {
// A block of the main thread's, first freed by a helper thread that then stays alive (the block
// sits in its cache), then freed again by `second` ("owner": the main thread, "freer": the
// helper itself, "third": a thread of its own). Runs in a child.
void double_free_after_remote_cache(const char* second) {
  void* p = bitslab::alloc(256);  // a class the freeing thread keeps
  std::atomic<int> stage{0};
  const bool freer_again = std::strcmp(second, "freer") == 0;
  std::thread freer([&] {
    bitslab::free(bitslab::alloc(300));  // this thread's heap exists
    bitslab::free(p);                    // cached by this thread, with the owner's mark
    if (freer_again) bitslab::free(p);
    stage = 1;
    while (stage != 2) std::this_thread::yield();
  });
  while (stage != 1) std::this_thread::yield();
  if (std::strcmp(second, "owner") == 0) bitslab::free(p);
  if (std::strcmp(second, "third") == 0) std::thread([p] { bitslab::free(p); }).join();
  stage = 2;
  freer.join();
}

void check_double_free_after_remote_cache(const char* second) {
  auto result = bitslab::test::run_in_child([&] {
    double_free_after_remote_cache(second);
    std::_Exit(0);
  });
  check_double_free_abort(result);
}
}  // namespace

TEST_CASE("thread heap: a double free by the thread that cached another thread's block aborts") {
  check_double_free_after_remote_cache("freer");
}

TEST_CASE("thread heap: a double free by the owner of a block another thread cached aborts") {
  check_double_free_after_remote_cache("owner");
}

TEST_CASE("thread heap: a double free by a third thread of a block another thread cached aborts") {
  check_double_free_after_remote_cache("third");
}

// 32 B blocks share cache lines, so a freeing thread sends them to their owner: their remote bit
// is set until the owner applies it. A second free meanwhile, by any thread, is caught.
TEST_CASE("thread heap: a double free by a third thread of a block another thread sent to its owner aborts") {
  auto result = bitslab::test::run_in_child([] {
    void* p = bitslab::alloc(32);
    std::atomic<int> stage{0};
    std::thread freer([&] {
      bitslab::free(bitslab::alloc(300));  // this thread's heap exists
      bitslab::free(p);                    // its remote bit set, not yet applied
      stage = 1;
      while (stage != 2) std::this_thread::yield();
    });
    while (stage != 1) std::this_thread::yield();
    std::thread([p] {
      bitslab::free(bitslab::alloc(300));
      bitslab::free(p);
    }).join();
    stage = 2;
    freer.join();
    std::_Exit(0);
  });
  check_double_free_abort(result);
}

TEST_CASE("thread heap: a double free by the owner of a block another thread sent it aborts") {
  auto result = bitslab::test::run_in_child([] {
    void* p = bitslab::alloc(32);
    std::thread([p] {
      bitslab::free(bitslab::alloc(300));
      bitslab::free(p);
    }).join();         // p's remote bit is set, its slab on this heap's list
    bitslab::free(p);  // marked: the bit is found
    // Past the class's cache (16 blocks of 512 B) and a bitmap word (64): the slow path, which
    // applies the list, runs at least once, whatever this process allocated before.
    for (int i = 0; i < 200; ++i) bitslab::alloc(500);
    std::_Exit(0);
  });
  check_double_free_abort(result);
}

// A second free that no mark can reveal: the first free was applied (the block is free in its
// owner's bitmap again, not yet handed out), and the program's data in the block's first word
// is taken for data. The owner's bitmap, where the second free is applied, still says free.
TEST_CASE("thread heap: a remote double free of a block its owner took back aborts when applied") {
  auto result = bitslab::test::run_in_child([] {
    void* p = bitslab::alloc(100);
    const auto free_on_a_thread = [p] {
      std::thread([p] {
        bitslab::free(bitslab::alloc(300));  // this thread's heap exists
        bitslab::free(p);                    // 100 B: its remote bit set, for the owner
      }).join();
    };
    const auto apply_remote_frees = [] {  // 500 B blocks: the slow path runs, p's class untouched
      for (int i = 0; i < 200; ++i) bitslab::alloc(500);
    };
    free_on_a_thread();
    apply_remote_frees();  // p is free in the bitmap again
    free_on_a_thread();
    apply_remote_frees();
    std::_Exit(0);
  });
  check_double_free_abort(result);
}

// The 16 B class keeps its remote words past its last block (core/small/slab.h), behind a
// canary: an overflow out of that block must not be taken for frees of blocks the program holds.
TEST_CASE("thread heap: an overflow past a 16 B slab's last block into its remote words is caught") {
  auto result = bitslab::test::run_in_child([] {
    std::thread([] {
      // 16 B blocks until one is its slab's last (they go out in address order; the thread's
      // heap, adopted, may start in a slab used before), and the one before it, in that slab.
      const uint32_t last_index =
          static_cast<uint32_t>(bitslab::small_capacity(bitslab::small_class_of(16))) - 1;
      char* before = nullptr;
      char* last = static_cast<char*>(bitslab::alloc(16));
      for (uint32_t i = 0; i <= 2 * last_index && bitslab::Slab::of(last)->block_index(last) != last_index;
           ++i) {
        before = last;
        last = static_cast<char*>(bitslab::alloc(16));
      }
      REQUIRE(bitslab::Slab::of(last)->block_index(last) == last_index);
      REQUIRE(bitslab::Slab::of(before) == bitslab::Slab::of(last));
      std::memset(last, 0xff, 24);                         // 8 bytes past the block's end
      std::thread([&] { bitslab::free(before); }).join();  // a remote free lists the slab
      std::fprintf(stderr, "page %p\n", bitslab::Slab::of(last)->page());
      for (int i = 0; i < 200; ++i) bitslab::alloc(500);  // the slow path applies it
    }).join();
    std::_Exit(0);
  });
  INFO(bitslab::test::describe(result));
  CHECK(result.signaled);
  const size_t line_end = result.stderr_text.find('\n');
  REQUIRE(line_end != std::string::npos);
  const std::string page = result.stderr_text.substr(5, line_end - 5);
  CHECK(result.stderr_text.find("bitslab: heap corruption: the remote-free words past this slab's last block "
                                "were overwritten: " +
                                page) == line_end + 1);
}

// A thread that only frees keeps nothing back: each free reaches its owner at once, so the
// owner's next refill has it (a heap for it held blocks in its cache while the thread slept).
TEST_CASE("thread heap: a thread that only frees gets no heap and posts each remote free at once") {
  // A class that goes back to its owner (48 B) and one a freeing thread with a heap keeps (256 B).
  void* p = bitslab::alloc(48);
  void* q = bitslab::alloc(256);
  REQUIRE(p != nullptr);
  REQUIRE(q != nullptr);
  bitslab::ThreadHeap* owner = bitslab::tls_heap;
  owner->drain_remote();  // whatever earlier tests posted here
  REQUIRE(!owner->has_remote_frees());
  size_t before = 0, after = 0;
  bool posted = false, q_posted = false;
  int errno_after = 0;
  std::thread([&] {
    before = bitslab::stats().heaps_in_use;
    errno = 1234;
    bitslab::free(p);
    errno_after = errno;                 // free leaves errno alone
    posted = owner->has_remote_frees();  // before this thread exits (an exit would flush)
    bitslab::free(q);
    bitslab::Slab* s = bitslab::Slab::of(q);
    q_posted = bitslab::RemoteFrees::pending(s, s->block_index(q));
    after = bitslab::stats().heaps_in_use;
  }).join();
  CHECK(posted);
  CHECK(q_posted);
  CHECK(after == before);
  CHECK(errno_after == 1234);
  owner->drain_remote();
}

// The owner applies each remote word to a listed slab inline, counting it down; the word that
// empties a slab must still give it back to the page cache.
TEST_CASE("thread heap: slabs that another thread's frees empty go back when the owner applies them") {
  constexpr size_t kPerSlab = bitslab::kSlabBytes / 48;
  constexpr size_t kCount = 6 * kPerSlab;  // 48 B: 6 slabs' worth, the last one current
  std::vector<void*> blocks(kCount);
  for (void*& p : blocks) p = bitslab::alloc(48);
  bitslab::ThreadHeap* owner = bitslab::tls_heap;  // (made by the first alloc, if this test runs alone)
  owner->drain_remote();                           // whatever earlier tests posted here
  const size_t held = bitslab::stats().slab_pages_in_use;
  // 48 B blocks share cache lines: the freeing thread (no heap of its own) sets every one's
  // remote bit.
  std::thread([&] {
    for (void* p : blocks) bitslab::free(p);
  }).join();
  owner->drain_remote();
  // At least the 5 listed slabs emptied and went back; only the current one stays.
  CHECK(bitslab::stats().slab_pages_in_use + 5 <= held);
}

TEST_CASE("thread heap: blocks another thread cached go back to their owner when it exits") {
  const unsigned kClass768 = bitslab::small_class_of(768);
  REQUIRE(bitslab::kSmallClassBytes[kClass768] == 768);
  const bitslab::Census before = bitslab::take_census();
  std::vector<void*> blocks;
  for (int i = 0; i < 100; ++i) blocks.push_back(bitslab::alloc(750));
  std::thread([&] {
    bitslab::free(bitslab::alloc(300));       // this thread's heap exists
    for (void* p : blocks) bitslab::free(p);  // the first 10 fill its cache of 768 B
  }).join();
  // The exit flushed the cache: the 10 cached blocks went to the owner with the rest, so no
  // block of the class is left live or held anywhere.
  const bitslab::Census after = bitslab::take_census();
  CHECK(after.small_blocks[kClass768] == before.small_blocks[kClass768]);
  // And the owner hands them out again: 100 new blocks need no new slab.
  const auto pages_before = bitslab::stats().slab_pages_in_use;
  for (void*& p : blocks) p = bitslab::alloc(750);
  CHECK(bitslab::stats().slab_pages_in_use <= pages_before);
  for (void* p : blocks) bitslab::free(p);
}

TEST_CASE("thread heap: an exiting thread's empty slabs go back, and its heap is reused") {
  // Warm up one thread so its heap exists and is parked.
  std::thread([] { bitslab::free(bitslab::alloc(8)); }).join();
  const auto before = bitslab::stats();
  for (int t = 0; t < 50; ++t) {
    std::thread([] {
      std::vector<void*> v;
      for (int i = 0; i < 5000; ++i) v.push_back(bitslab::alloc(24 + (i % 8) * 100));
      for (void* p : v) bitslab::free(p);
    }).join();
  }
  const auto after = bitslab::stats();
  CHECK(after.heaps == before.heaps);  // each new thread adopted the parked heap
  CHECK(after.heaps_in_use == before.heaps_in_use);
  CHECK(after.slab_pages_in_use <= before.slab_pages_in_use + 2);
}

TEST_CASE("thread heap: frees into an exited thread's slabs are applied at once, with no new thread") {
  // 48 B blocks (a class the freeing thread never keeps: they all travel to their owner),
  // allocated by a thread that then exits, its heap parked.
  constexpr unsigned kClass48 = 2;
  REQUIRE(bitslab::kSmallClassBytes[kClass48] == 48);
  constexpr int kCount = 40000;  // ~30 slabs
  std::vector<void*> blocks(kCount);
  bitslab::free(bitslab::alloc(300));  // this thread has a heap: it never adopts the parked one
  const bitslab::Census before = bitslab::take_census();
  std::thread([&] {
    for (void*& p : blocks) p = bitslab::alloc(48);
  }).join();
  const size_t held = bitslab::stats().slab_pages_in_use;
  for (void* p : blocks) bitslab::free(p);  // each slab listed to the parked heap, and collected
  // Applied as they were freed: no thread started since, so none adopted the parked heap.
  const bitslab::Census after = bitslab::take_census();
  CHECK(after.in_flight[kClass48] <= before.in_flight[kClass48]);
  CHECK(after.small_blocks[kClass48] <= before.small_blocks[kClass48]);
  // And slabs that emptied went back (how many depends on what the parked heap held before).
  CHECK(bitslab::stats().slab_pages_in_use < held);
}

TEST_CASE("thread heap: many threads allocating and freeing each other's blocks") {
  constexpr int kThreads = 4, kRounds = 20000;
  // Each block holds its size in its first 4 bytes and a check byte in its last; both are read
  // back by whichever thread frees it, so a block handed out twice or overwritten shows.
  auto check_byte = [](uint32_t size) { return static_cast<uint8_t>(size * 7 + 1); };
  std::atomic<int> bad{0};
  auto check_and_free = [&](void* p) {
    if (p == nullptr) return;
    uint32_t size;
    std::memcpy(&size, p, sizeof size);
    if (size < 8 || size > 3007 || static_cast<uint8_t*>(p)[size - 1] != check_byte(size)) ++bad;
    bitslab::free(p);
  };
  std::atomic<void*> mailbox[kThreads];
  for (auto& m : mailbox) m = nullptr;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        const auto size = static_cast<uint32_t>(8 + (static_cast<size_t>(r) * 37 + t) % 3000);
        auto* p = static_cast<uint8_t*>(bitslab::alloc(size));
        if (p == nullptr) { ++bad; return; }
        std::memcpy(p, &size, sizeof size);
        p[size - 1] = check_byte(size);
        // Swap it into a neighbour's mailbox and free whatever was there.
        check_and_free(mailbox[(t + 1) % kThreads].exchange(p));
        check_and_free(mailbox[t].exchange(nullptr));
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& m : mailbox) check_and_free(m.exchange(nullptr));
  CHECK(bad == 0);
}

TEST_CASE("thread heap: a child forked while threads allocate can allocate and free") {
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  for (int t = 0; t < 2; ++t)
    busy.emplace_back([&] {
      while (!stop) bitslab::free(bitslab::alloc(5000 + 100));
    });
  for (int i = 0; i < 20; ++i) {
    // Under a 10 s watchdog: a child stuck on a lock dies of SIGALRM and fails the check.
    const auto child = bitslab::test::run_in_child([] {
      for (int k = 0; k < 10000; ++k) bitslab::free(bitslab::alloc(static_cast<size_t>(k) % 4000 + 1));
      std::thread([] { bitslab::free(bitslab::alloc(64)); }).join();
    });
    CHECK_MESSAGE((child.exited && child.exit_code == 0), bitslab::test::describe(child));
  }
  stop = true;
  for (auto& th : busy) th.join();
}

TEST_CASE("thread heap census: live blocks by class, net of cached and remote-freed blocks") {
  const unsigned kClass768 = bitslab::small_class_of(768);
  REQUIRE(bitslab::kSmallClassBytes[kClass768] == 768);
  const bitslab::Census before = bitslab::take_census();
  std::vector<void*> blocks;
  for (int i = 0; i < 300; ++i) blocks.push_back(bitslab::alloc(750));
  void* chunks[5];
  for (void*& c : chunks) c = bitslab::alloc(5000);  // pool class 5120
  for (int i = 0; i < 50; ++i) bitslab::free(blocks[i]);    // into this heap's block cache
  for (int i = 50; i < 150; ++i) bitslab::free(blocks[i]);  // past the cache: the bitmap
  // Another thread frees 100 more: some in its cache while it runs, the rest in this heap's
  // slabs' remote words. Neither may count as live.
  std::atomic<int> stage{0};
  std::thread freer([&] {
    for (int i = 150; i < 250; ++i) bitslab::free(blocks[i]);
    stage = 1;
    while (stage != 2) std::this_thread::yield();
  });
  while (stage != 1) std::this_thread::yield();
  const bitslab::Census during = bitslab::take_census();
  stage = 2;
  freer.join();
  const bitslab::Census after = bitslab::take_census();
  CHECK(during.small_blocks[kClass768] - before.small_blocks[kClass768] == 50);
  CHECK(after.small_blocks[kClass768] - before.small_blocks[kClass768] == 50);
  const unsigned pool5120 = bitslab::pool_class_of(5000);
  REQUIRE(bitslab::pool_class_bytes(pool5120) == 5120);
  CHECK(after.pool_chunks[pool5120] - before.pool_chunks[pool5120] == 5);
  bitslab::free(chunks[0]);
  CHECK(bitslab::take_census().pool_chunks[pool5120] - before.pool_chunks[pool5120] == 4);
  for (int i = 1; i < 5; ++i) bitslab::free(chunks[i]);
  for (int i = 250; i < 300; ++i) bitslab::free(blocks[i]);
  const bitslab::Census end = bitslab::take_census();
  CHECK(end.small_blocks[kClass768] == before.small_blocks[kClass768]);
  CHECK(end.blocks() == before.blocks());
}
