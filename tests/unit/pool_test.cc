// Layer 3b: pool classes, chunk pools (lock-free, ABA-safe) and promotion.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "core/base/config.h"
#include "core/os/heap_range.h"
#include "core/os/os.h"
#include "core/pool/pool_classes.h"
#include "core/pool/pool_set.h"
#include "tests/support/child.h"

using namespace bitslab;

TEST_CASE("pool classes: eight per power of two, smallest fit, at most 12.5% over") {
  for (size_t size = kSmallMax + 1; size <= kPoolMax; size += 7) {
    const unsigned cls = pool_class_of(size);
    REQUIRE(cls < kPoolClassCount);
    CHECK(pool_class_bytes(cls) >= size);
    if (cls > 0) CHECK(pool_class_bytes(cls - 1) < size);
    CHECK((pool_class_bytes(cls) - size) * 8 < size);
  }
  CHECK(pool_class_of(kPoolMax) == kPoolClassCount - 1);
  CHECK(pool_class_bytes(7) == 2048);
  CHECK(pool_class_alignment(7) == 2048);
  CHECK(pool_class_alignment(0) == 128);  // 1152 = 9 * 128
  CHECK(pool_class_of(1032) == 0);        // sqlite3's 1024 B + its 8 B header: 1152, not 1280
}

// The table alloc_pool uses up to 32 KiB must give every size the class the formula gives.
TEST_CASE("pool classes: the lookup table agrees with pool_class_of for every size") {
  for (size_t size = kSmallMax + 1; size <= kPoolMax; ++size) {
    if (pool_class_of_fast(size) != pool_class_of(size)) {
      FAIL_CHECK("size " << size << ": table " << pool_class_of_fast(size) << ", formula "
                         << pool_class_of(size));
      break;
    }
  }
}

TEST_CASE("pool region: slot_index's multiply agrees with division for every class and offset") {
  // A region header, as PoolRegion::create makes it, in static storage: create writes only the
  // header, and slot_index computes offsets from `this`, so no granule is needed.
  alignas(64) static unsigned char storage[sizeof(PoolRegion)];
  const char* base = reinterpret_cast<const char*>(storage) + kPoolHeaderBytes;
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls) {
    CAPTURE(cls);
    memset(storage, 0, sizeof storage);  // create expects a zero-filled granule
    PoolRegion* r = PoolRegion::create(storage, cls);
    r->carved.store(r->slot_count, std::memory_order_relaxed);  // every slot handed out once
    const size_t bytes = size_t{r->slot_count} * r->slot_bytes;
    size_t mismatches = 0;
    // Every slot start, and the bytes just before and after it, across the whole region.
    for (size_t start = 0; start < bytes; start += r->slot_bytes) {
      for (size_t offset : {start, start + 1, start + 8, start + r->slot_bytes - 1}) {
        const uint32_t expected =
            offset % r->slot_bytes == 0 ? static_cast<uint32_t>(offset / r->slot_bytes) : PoolRegion::kNoSlot;
        mismatches += r->slot_index(base + offset) != expected;
      }
    }
    CHECK(mismatches == 0);
    CHECK(r->slot_index(base - 16) == PoolRegion::kNoSlot);  // in the header
    CHECK(r->slot_index(base - kPoolHeaderBytes) == PoolRegion::kNoSlot);
    CHECK(r->slot_index(base + bytes) == PoolRegion::kNoSlot);  // the tail past the last slot
  }
}

// free's check (ChunkPool::is_handed_out) reads the state byte that boundary_slot names, with
// no bound on the index: every pointer in a live region's granule must name a byte inside the
// header's state array, and each that names no carved chunk (a pointer into the header, or
// past the last slot, or at a slot never handed out) must find it kAvailable, which the check
// refuses.
TEST_CASE("pool region: boundary_slot names a state byte for any pointer in the granule") {
  PoolSet pools;
  pools.init();
  size_t header_hits = 0;
  size_t tail_hits = 0;
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls) {
    CAPTURE(cls);
    void* chunk = pools.allocate(pool_class_bytes(cls));
    REQUIRE(chunk != nullptr);
    const PoolRegion* r = PoolRegion::of(chunk);
    const char* granule = reinterpret_cast<const char*>(r);
    const uint32_t carved = r->carved.load();
    size_t out_of_array = 0;
    size_t not_available = 0;
    for (size_t offset = 0; offset < kGranuleBytes; offset += 16) {
      const uint32_t slot = r->boundary_slot(granule + offset);
      if (slot == PoolRegion::kNoSlot) continue;
      if (slot >= PoolRegion::kStateBytes) {
        ++out_of_array;
        continue;
      }
      if (offset >= kPoolHeaderBytes && slot < carved) continue;  // a chunk: any state
      header_hits += offset < kPoolHeaderBytes;
      tail_hits += offset >= kPoolHeaderBytes && slot >= r->slot_count;
      not_available += r->slot_state(slot) != PoolRegion::kAvailable;
    }
    CHECK(out_of_array == 0);
    CHECK(not_available == 0);
    pools.deallocate(chunk);
  }
  CHECK(header_hits > 0);  // the walk reached both ends' wrap-arounds
  CHECK(tail_hits > 0);
}

TEST_CASE("chunk pool: chunks are distinct, aligned, in pool granules, and a freed one is reused first") {
  PoolSet pools;
  pools.init();
  ChunkPool& pool = pools.pool(pool_class_of(4096));
  std::set<void*> seen;
  std::vector<void*> chunks;
  for (int i = 0; i < 100; ++i) {
    void* c = pool.allocate();
    REQUIRE(c != nullptr);
    CHECK(reinterpret_cast<uintptr_t>(c) % 4096 == 0);
    CHECK(HeapRange::kind_of(c) == GranuleKind::kPool);
    CHECK(PoolSet::usable_size(c) == 4096);
    memset(c, i, 4096);
    seen.insert(c);
    chunks.push_back(c);
  }
  CHECK(seen.size() == 100);
  CHECK(pool.carved_chunks() == 100);
  pool.deallocate(chunks.back());
  CHECK(pool.allocate() == chunks.back());
  for (void* c : chunks) pool.deallocate(c);
  CHECK(pool.carved_chunks() == 100);  // nothing new carved while free chunks exist
}

TEST_CASE("chunk pool: emptied regions are kept for reuse within the budget, the rest go back") {
  PoolSet pools;
  pools.init();  // regions straight from HeapRange: a region given back is unmapped
  ChunkPool& pool = pools.pool(pool_class_of(kPoolMax));
  const size_t per_region = (kGranuleBytes - kPoolHeaderBytes) / kPoolMax;
  const size_t mapped = HeapRange::mapped_bytes();
  const size_t regions = kEmptyRegionBudget + 2;
  std::vector<void*> chunks;
  for (size_t i = 0; i < regions * per_region; ++i) chunks.push_back(pool.allocate());
  CHECK(pool.region_count() == regions);
  for (void* c : chunks) pool.deallocate(c);
  // The budget's worth stay, mapped and committed; the two past it went back.
  CHECK(pool.region_count() == size_t{kEmptyRegionBudget});
  CHECK(HeapRange::mapped_bytes() == mapped + kEmptyRegionBudget * kGranuleBytes);
  CHECK(pool.live_chunks() == 0);
  // A batch as large again reuses the kept regions, and takes two new ones.
  for (void*& c : chunks) c = pool.allocate();
  CHECK(pool.region_count() == regions);
  for (void* c : chunks) pool.deallocate(c);
  pool.purge(0, 0, /*force=*/true);  // every kept region goes back
  CHECK(pool.region_count() == 0);
  CHECK(HeapRange::mapped_bytes() == mapped);
}

TEST_CASE("chunk pool: a pool that takes a new region makes the others give their empty ones back") {
  PoolSet pools;
  pools.init();
  ChunkPool& first = pools.pool(pool_class_of(64 * 1024));
  ChunkPool& second = pools.pool(pool_class_of(128 * 1024));
  first.deallocate(first.allocate());  // one region, now empty and kept
  REQUIRE(first.region_count() == 1);
  void* chunk = second.allocate();  // the footprint grows: a new region for another class
  CHECK(second.region_count() == 1);
  CHECK(first.region_count() == 0);  // its empty region went back at once
  void* again = first.allocate();    // and the first pool still works: a region of its own
  CHECK(first.region_count() == 1);
  first.deallocate(again);
  second.deallocate(chunk);
  pools.purge(0, 0, /*force=*/true, 0);
}

TEST_CASE("chunk pool: an empty region goes back once idle through the delay") {
  PoolSet pools;
  pools.init();
  ChunkPool& pool = pools.pool(pool_class_of(64 * 1024));
  const size_t mapped = HeapRange::mapped_bytes();
  pool.deallocate(pool.allocate());  // one region, now empty and kept
  REQUIRE(pool.region_count() == 1);
  const uint64_t delay = 1000000000;                 // 1 s
  pool.purge(os::coarse_now_ns(), 0, false, delay);  // idle for less than the delay: kept
  CHECK(pool.region_count() == 1);
  pool.purge(os::coarse_now_ns(), 0, false);  // no delay given for empty regions: kept
  CHECK(pool.region_count() == 1);
  pool.purge(os::coarse_now_ns() + 2 * delay, 0, false, delay);
  CHECK(pool.region_count() == 0);
  CHECK(HeapRange::mapped_bytes() == mapped);
}

TEST_CASE("chunk pool: the pages of chunks free through the purge delay are decommitted") {
  PoolSet pools;
  pools.init();
  ChunkPool& pool = pools.pool(pool_class_of(16 * 1024));
  std::vector<char*> chunks;
  for (int i = 0; i < 40; ++i) {
    chunks.push_back(static_cast<char*>(pool.allocate()));
    memset(chunks.back(), 0x77, 16 * 1024);
  }
  // Free every other one but the last ten: runs of one free chunk, then ten in a row.
  for (int i = 0; i < 30; i += 2) pool.deallocate(chunks[i]);
  for (int i = 30; i < 40; ++i) pool.deallocate(chunks[i]);
  CHECK(pool.purge(~uint64_t{0}, 1000, false) > 0);  // long past any delay
  CHECK(pool.decommitted_bytes() >= 10 * 16 * 1024 - 2 * 4096);
  // Decommitted pages read back as zeros; the live chunks kept their contents.
  CHECK(chunks[35][100] == 0);
  CHECK(chunks[1][100] == 0x77);
  CHECK(chunks[29][16 * 1024 - 1] == 0x77);
  for (int i = 1; i < 30; i += 2) pool.deallocate(chunks[i]);
}

TEST_CASE("pool set: an exhausted pool promotes to the next, and try_allocate never does") {
  PoolSet pools;
  pools.init();
  const unsigned cls = pool_class_of(2000);  // 2048
  pools.set_capacity(cls, 3);
  void* a = pools.allocate(2000);
  void* b = pools.allocate(2000);
  void* c = pools.allocate(2000);
  REQUIRE((a && b && c));
  CHECK(PoolSet::usable_size(a) == 2048);
  CHECK(pools.try_allocate(2000) == nullptr);
  void* promoted = pools.allocate(2000);
  REQUIRE(promoted != nullptr);
  CHECK(PoolSet::usable_size(promoted) == pool_class_bytes(cls + 1));
  pools.deallocate(promoted);  // goes back to the pool it came from
  CHECK(pools.pool(cls + 1).allocate() == promoted);
  pools.deallocate(b);
  CHECK(pools.try_allocate(2000) == b);
  // Every class exhausted: nothing left, not even by promotion.
  PoolSet tiny;
  tiny.init();
  for (unsigned k = 0; k < kPoolClassCount; ++k) tiny.set_capacity(k, 1);
  CHECK(tiny.allocate(kPoolMax) != nullptr);
  CHECK(tiny.allocate(kPoolMax) == nullptr);
}

TEST_CASE("chunk pool: double free and foreign pointers abort naming the address") {
  PoolSet pools;
  pools.init();
  void* chunk = pools.allocate(5000);
  REQUIRE(chunk != nullptr);
  auto twice = test::run_in_child([&] {
    pools.deallocate(chunk);
    pools.deallocate(chunk);
  });
  CHECK(twice.signaled);
  CHECK(twice.signal == SIGABRT);
  CHECK(twice.stderr_text.find("double free") != std::string::npos);
  CHECK(twice.stderr_text.find(test::hex_address(chunk)) != std::string::npos);

  char* interior = static_cast<char*>(chunk) + 16;
  auto inside = test::run_in_child([&] { pools.deallocate(interior); });
  CHECK(inside.signaled);
  CHECK(inside.stderr_text.find("never handed out") != std::string::npos);
  CHECK(inside.stderr_text.find(test::hex_address(interior)) != std::string::npos);

  char* header = reinterpret_cast<char*>(PoolRegion::of(chunk)) + 4096;
  auto in_header = test::run_in_child([&] { pools.deallocate(header); });
  CHECK(in_header.signaled);
  CHECK(in_header.stderr_text.find("never handed out") != std::string::npos);
  CHECK(in_header.stderr_text.find(test::hex_address(header)) != std::string::npos);

  char* uncarved = static_cast<char*>(chunk) + 50 * PoolSet::usable_size(chunk);
  auto beyond = test::run_in_child([&] { pools.deallocate(uncarved); });
  CHECK(beyond.signaled);
  CHECK(beyond.stderr_text.find("never handed out") != std::string::npos);

  // 1280 B slots leave a 768 B tail, and a pointer 512 B into the header is a whole number of
  // slots from slot 0 modulo the granule (free's check wraps there, PoolRegion::boundary_slot).
  void* small = pools.allocate(1280);
  REQUIRE(small != nullptr);
  char* granule = reinterpret_cast<char*>(PoolRegion::of(small));
  const size_t slot_room = kGranuleBytes - kPoolHeaderBytes;
  REQUIRE(slot_room % 1280 == 768);
  for (char* p : {granule + 512, granule + kPoolHeaderBytes + (slot_room - 768)}) {
    auto wrapped = test::run_in_child([&] { pools.deallocate(p); });
    CHECK(wrapped.signaled);
    CHECK(wrapped.stderr_text.find("never handed out: " + test::hex_address(p)) != std::string::npos);
  }
  pools.deallocate(small);
}

// free's one check reads the slot's state byte alone (ChunkPool::is_handed_out): the pool
// must keep it true as a chunk leaves the region and comes back, without a thread cache between.
TEST_CASE("chunk pool: a slot's state byte says handed out, then available, then handed out again") {
  PoolSet pools;
  pools.init();
  void* chunk = pools.allocate(5000);
  REQUIRE(chunk != nullptr);
  PoolRegion* region = PoolRegion::of(chunk);
  const uint32_t slot = region->slot_of(chunk);
  CHECK(region->slot_state(slot) == PoolRegion::kHandedOut);
  pools.deallocate(chunk);
  CHECK(region->slot_state(slot) == PoolRegion::kAvailable);
  CHECK(region->is_free(slot));
  void* again = pools.allocate(5000);  // the lowest available slot: the same one
  REQUIRE(again == chunk);
  CHECK(region->slot_state(slot) == PoolRegion::kHandedOut);
  pools.deallocate(again);
}

// A thread cache's refill: the row it fills pops lowest first, and its chunks are already in
// the state the cache keeps them in (no second pass over the row).
TEST_CASE("chunk pool: a batch comes highest first, in the state asked for, a short one from out[0]") {
  PoolSet pools;
  pools.init();
  ChunkPool& pool = pools.pool(pool_class_of(8192));
  void* out[12];
  uint8_t* states[12];
  REQUIRE(pool.allocate_batch(out, states, 12, PoolRegion::kCached) == 12);
  for (size_t i = 0; i < 12; ++i) {
    PoolRegion* r = PoolRegion::of(out[i]);
    const uint32_t slot = r->slot_of(out[i]);
    CHECK(slot == 11 - i);  // a fresh pool: slots 0..11, the lowest last
    CHECK(states[i] == &r->state[slot]);
    CHECK(r->slot_state(slot) == PoolRegion::kCached);
  }
  pool.release(out, 12);
  // Out of granules after one region (15 slots of the largest class) with 20 asked: the 15
  // start at out[0], still highest first.
  struct OneGranule final : GranuleSource {
    size_t left = 1;
    void* take(size_t count, GranuleKind first, GranuleKind rest) override {
      if (left == 0) return nullptr;
      --left;
      return DirectGranules::instance().take(count, first, rest);
    }
    void give(void* start, size_t count) override { DirectGranules::instance().give(start, count); }
  } one_granule;
  ChunkPool starved;
  starved.configure(pool_class_of(kPoolMax), ChunkPool::kUnlimited, &one_granule);
  const size_t per_region = (kGranuleBytes - kPoolHeaderBytes) / kPoolMax;
  void* more[20] = {};
  uint8_t* more_states[20] = {};
  REQUIRE(starved.allocate_batch(more, more_states, 20) == per_region);
  for (size_t i = 0; i < per_region; ++i) {
    REQUIRE(more[i] != nullptr);
    PoolRegion* r = PoolRegion::of(more[i]);
    CHECK(r->slot_of(more[i]) == per_region - 1 - i);
    CHECK(more_states[i] == &r->state[per_region - 1 - i]);
    CHECK(r->slot_state(per_region - 1 - i) == PoolRegion::kHandedOut);
  }
  starved.release(more, per_region);  // the region empties: back to the source
}

// A release takes the chunks a region at a time (PoolRegion::make_available): chunks of two
// regions, interleaved, must each go back to their own region, and one released twice aborts.
TEST_CASE("chunk pool: a release across regions frees each chunk in its own, and twice aborts") {
  PoolSet pools;
  pools.init();
  ChunkPool& pool = pools.pool(pool_class_of(kPoolMax));
  const size_t per_region = (kGranuleBytes - kPoolHeaderBytes) / kPoolMax;
  std::vector<void*> first, second;
  for (size_t i = 0; i < per_region + 4; ++i) {
    void* c = pool.allocate();
    REQUIRE(c != nullptr);
    (i < per_region ? first : second).push_back(c);
  }
  REQUIRE(PoolRegion::of(first[0]) != PoolRegion::of(second[0]));
  // One of each region stays out (so neither empties); the rest go back interleaved.
  std::vector<void*> mixed;
  for (size_t i = 1; i < first.size(); ++i) {
    mixed.push_back(first[i]);
    if (i < second.size()) mixed.push_back(second[i]);
  }
  pool.release(mixed.data(), mixed.size());
  CHECK(pool.live_chunks() == 2);
  for (void* c : mixed) {
    PoolRegion* r = PoolRegion::of(c);
    CHECK(r->is_free(r->slot_of(c)));
    CHECK(r->slot_state(r->slot_of(c)) == PoolRegion::kAvailable);
  }
  CHECK(PoolRegion::of(first[0])->available == per_region - 1);
  CHECK(PoolRegion::of(second[0])->available == PoolRegion::of(second[0])->slot_count - 1);
  // A chunk released again (a double free that raced past free's check) aborts, named.
  void* twice = second[2];
  auto result = test::run_in_child([&] { pool.release(&twice, 1); });
  CHECK_MESSAGE(test::aborted_naming(result, twice, "double free"), test::describe(result));
  pool.release(&first[0], 1);
  pool.release(&second[0], 1);
}

TEST_CASE("chunk pool: concurrent allocate/free never hands one chunk to two threads") {
  PoolSet pools;
  pools.init();
  ChunkPool& pool = pools.pool(0);
  std::atomic<bool> failed{false};
  auto worker = [&](uint32_t tag) {
    void* mine[16];
    for (int round = 0; round < 20000 && !failed; ++round) {
      const int n = 1 + round % 16;
      for (int i = 0; i < n; ++i) {
        mine[i] = pool.allocate();
        if (mine[i] == nullptr) {
          failed = true;
          return;
        }
        memcpy(mine[i], &tag, sizeof tag);
      }
      for (int i = 0; i < n; ++i) {
        uint32_t seen;
        memcpy(&seen, static_cast<char*>(mine[i]) + 0, sizeof seen);
        if (seen != tag) failed = true;
        pool.deallocate(mine[i]);
      }
    }
  };
  std::thread t1(worker, 0x11111111u), t2(worker, 0x22222222u), t3(worker, 0x33333333u);
  t1.join();
  t2.join();
  t3.join();
  CHECK_FALSE(failed);
}
