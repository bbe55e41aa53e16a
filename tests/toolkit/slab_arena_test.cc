// The slab arena (toolkit/slab_arena.h) over both backends (toolkit/local_mem.h,
// toolkit/shm_mem.h): pool choice and promotion, exhaustion, alignment, move, the aborts on
// bad frees, threads, NUMA binding and locking, and sharing across processes (fork, and a
// separately started program, tests/toolkit/shm_peer.cc).
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <random>
#include <spawn.h>
#include <string>
#include <sys/mman.h>
#include <sys/wait.h>
#include <system_error>
#include <thread>
#include <type_traits>
#include <unistd.h>
#include <utility>
#include <vector>

#include "tests/support/child.h"
#include "toolkit/slab_arena.h"

extern char** environ;

namespace {

using bitslab::LocalMem;
using bitslab::SegmentSpec;
using bitslab::ShmMem;
using bitslab::ShmOptions;
using bitslab::test::ChildResult;
using bitslab::test::hex_address;
using bitslab::test::run_in_child;

// A shared-memory name unique to this process and test (parallel ctest runs do not collide),
// unlinked on the way out whatever happens; tests that expect the name to exist also check
// the unlink itself.
class ShmName {
 public:
  explicit ShmName(const char* what) : name_("/bitslab-test-" + std::to_string(getpid()) + "-" + what) {
    ShmMem::unlink(name_.c_str());
  }
  ~ShmName() { ShmMem::unlink(name_.c_str()); }
  ShmName(const ShmName&) = delete;
  ShmName& operator=(const ShmName&) = delete;
  const char* c_str() const { return name_.c_str(); }

 private:
  std::string name_;
};

// bitslab::test::aborted_naming (one line, SIGABRT, the words and the address), and what the
// child did instead when it did not.
bool aborted_naming(const ChildResult& r, const void* address, const char* words) {
  const bool ok = bitslab::test::aborted_naming(r, address, words);
  if (!ok) MESSAGE(bitslab::test::describe(r));
  return ok;
}

uintptr_t address(const void* p) { return reinterpret_cast<uintptr_t>(p); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Compile time

TEST_CASE("slab arena: parameters are checked at compile time") {
  using bitslab::slab::Layout;
  static_assert(Layout<128, 64, 256, 1024>::kValid);
  static_assert(Layout<1, 16>::kValid);
  static_assert(Layout<UINT32_MAX - 1, 16>::kValid);
  static_assert(!Layout<128>::kHasSizes, "at least one size");
  static_assert(!Layout<128, 48>::kPowersOfTwo, "powers of two");
  static_assert(!Layout<128, 4>::kAtLeast8, ">= 8");
  static_assert(!Layout<128, 8>::kMaxAligned, "multiple of alignof(max_align_t)");
  static_assert(!Layout<128, 256, 64>::kAscending && !Layout<128, 64, 64>::kAscending, "strictly ascending");
  static_assert(!Layout<0, 64>::kCountInRange && !Layout<UINT32_MAX, 64>::kCountInRange, "Count range");
  static_assert(!Layout<UINT32_MAX - 1, size_t{1} << 20>::kFitsAddressSpace, "fits the address space");

  using Arena = LocalMem::Allocator<128, 64, 256, 1024>;
  static_assert(std::is_same_v<Arena, bitslab::Arena<LocalMem, 128, 64, 256, 1024>>);
  static_assert(std::is_same_v<ShmMem::Allocator<8, 64>, bitslab::Arena<ShmMem, 8, 64>>);
  static_assert(!std::is_copy_constructible_v<Arena> && !std::is_copy_assignable_v<Arena>);
  static_assert(std::is_nothrow_move_constructible_v<Arena> && std::is_nothrow_move_assignable_v<Arena>);
  static_assert(!std::is_constructible_v<Arena, const char*>, "LocalMem takes no name");
  static_assert(std::is_constructible_v<ShmMem::Allocator<8, 64>, const char*>);
  static_assert(Arena::kPoolCount == 3 && Arena::kMaxSize == 1024 && Arena::kChunksPerPool == 128);
  // The layout fingerprint tells arena types apart (and not backends: a layout is a layout).
  static_assert(Arena::kLayoutId != LocalMem::Allocator<129, 64, 256, 1024>::kLayoutId);
  static_assert(Arena::kLayoutId != LocalMem::Allocator<128, 64, 256, 2048>::kLayoutId);
  static_assert(Arena::kLayoutId == ShmMem::Allocator<128, 64, 256, 1024>::kLayoutId);
}

TEST_CASE("slab arena: footprint follows the documented formula") {
  // Count = 128, Sizes = 64, 256, 1024 (toolkit/slab_arena.h, "Footprint"):
  //   meta = 128 + 64 = 192
  //   pool 0: meta 0,     chunks 192,   end 192 + 8192    = 8384
  //   pool 1: meta 8384,  chunks 8704,  end 8704 + 32768  = 41472
  //   pool 2: meta 41472, chunks 41984, end 41984 + 131072 = 173056
  using Arena = LocalMem::Allocator<128, 64, 256, 1024>;
  static_assert(Arena::kBytes == 173056);
  const size_t payload = 128 * (64 + 256 + 1024);
  MESSAGE("LocalMem::Allocator<128, 64, 256, 1024>::kBytes = " << Arena::kBytes << " for " << payload
                                                                << " bytes of chunks");
  // One pool of 4096-byte chunks: the chunks start on the next 4096 boundary after the metadata.
  static_assert(LocalMem::Allocator<1, 4096>::kBytes == 4096 + 4096);
  // Big Count: the bitmap is ceil(1000 / 64) = 16 words (128 bytes): meta 256, chunks at 256.
  static_assert(LocalMem::Allocator<1000, 16>::kBytes == 256 + 1000 * 16);
  CHECK(Arena::kBytes - payload == 1024);
}

// ---------------------------------------------------------------------------------------------
// Allocation

TEST_CASE("slab arena: allocate picks the smallest fitting pool") {
  LocalMem::Allocator<4, 64, 256, 1024> arena;
  struct Case {
    size_t n, chunk;
  };
  for (const Case c : {Case{1, 64}, Case{63, 64}, Case{64, 64}, Case{65, 256}, Case{256, 256}, Case{257, 1024},
                       Case{1024, 1024}}) {
    CAPTURE(c.n);
    void* p = arena.allocate(c.n);
    REQUIRE(p != nullptr);
    CHECK(arena.chunkSizeOf(p) == c.chunk);
    void* q = arena.tryAllocate(c.n);
    REQUIRE(q != nullptr);
    CHECK(arena.chunkSizeOf(q) == c.chunk);
    arena.deallocate(p);
    arena.deallocate(q);
  }
  CHECK(arena.allocate(1025) == nullptr);
  CHECK(arena.tryAllocate(1025) == nullptr);
  CHECK(arena.allocate(SIZE_MAX) == nullptr);
  CHECK(arena.tryAllocate(SIZE_MAX) == nullptr);
  for (size_t pool = 0; pool < 3; ++pool) CHECK(arena.allocatedChunks(pool) == 0);
}

TEST_CASE("slab arena: n == 0 gets a chunk of the smallest pool") {
  LocalMem::Allocator<2, 32, 64> arena;
  void* a = arena.allocate(0);
  void* b = arena.tryAllocate(0);
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  CHECK(a != b);
  CHECK(arena.chunkSizeOf(a) == 32);
  CHECK(arena.chunkSizeOf(b) == 32);
  CHECK(arena.tryAllocate(0) == nullptr);  // the 32-byte pool is full
  void* c = arena.allocate(0);             // promoted
  CHECK(arena.chunkSizeOf(c) == 64);
  arena.deallocate(a);
  arena.deallocate(b);
  arena.deallocate(c);
}

TEST_CASE("slab arena: allocate promotes until every pool is full, then returns nullptr") {
  LocalMem::Allocator<4, 64, 256, 1024> arena;
  std::vector<void*> chunks;
  for (size_t expected : {64, 256, 1024}) {
    for (int i = 0; i < 4; ++i) {
      void* p = arena.allocate(16);
      REQUIRE(p != nullptr);
      CHECK(arena.chunkSizeOf(p) == expected);
      chunks.push_back(p);
    }
  }
  CHECK(arena.allocate(16) == nullptr);
  CHECK(arena.allocate(1) == nullptr);
  CHECK(arena.allocate(1024) == nullptr);
  for (size_t pool = 0; pool < 3; ++pool) CHECK(arena.allocatedChunks(pool) == 4);
  std::sort(chunks.begin(), chunks.end());
  CHECK(std::adjacent_find(chunks.begin(), chunks.end()) == chunks.end());

  // A promoted chunk goes back to the pool it came from (found by address), and the freed
  // 64-byte chunk is the next one handed out (LIFO).
  void* small = nullptr;
  void* promoted = nullptr;
  for (void* p : chunks) {
    if (arena.chunkSizeOf(p) == 64) small = p;
    if (arena.chunkSizeOf(p) == 1024) promoted = p;
  }
  arena.deallocate(promoted);
  CHECK(arena.allocatedChunks(2) == 3);
  arena.deallocate(small);
  CHECK(arena.allocatedChunks(0) == 3);
  CHECK(arena.allocate(8) == small);
  CHECK(arena.allocate(8) == promoted);
  CHECK(arena.allocate(8) == nullptr);
  for (void* p : chunks) arena.deallocate(p);
  for (size_t pool = 0; pool < 3; ++pool) CHECK(arena.allocatedChunks(pool) == 0);
}

TEST_CASE("slab arena: tryAllocate does not promote") {
  LocalMem::Allocator<3, 64, 256> arena;
  void* held[3];
  for (void*& p : held) {
    p = arena.tryAllocate(64);
    REQUIRE(p != nullptr);
    CHECK(arena.chunkSizeOf(p) == 64);
  }
  CHECK(arena.tryAllocate(64) == nullptr);   // its pool is full...
  CHECK(arena.tryAllocate(1) == nullptr);
  void* larger = arena.allocate(64);         // ...though the larger one has room
  REQUIRE(larger != nullptr);
  CHECK(arena.chunkSizeOf(larger) == 256);
  CHECK(arena.tryAllocate(65) != nullptr);   // which tryAllocate uses for what fits it exactly
  CHECK(arena.allocatedChunks(1) == 2);
  arena.deallocate(held[1]);
  CHECK(arena.tryAllocate(64) == held[1]);
}

TEST_CASE("slab arena: chunks are distinct, writable and aligned to min(size, 4096)") {
  using Arena = LocalMem::Allocator<8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384>;
  Arena arena;
  CHECK(address(arena.backend().data()) % 4096 == 0);
  std::vector<std::pair<unsigned char*, size_t>> chunks;
  for (size_t pool = 0; pool < Arena::kPoolCount; ++pool) {
    const size_t size = Arena::chunkSize(pool);
    CHECK(Arena::chunkAlignment(pool) == std::min<size_t>(size, 4096));
    for (size_t i = 0; i < Arena::kChunksPerPool; ++i) {
      auto* p = static_cast<unsigned char*>(arena.tryAllocate(size));
      REQUIRE(p != nullptr);
      CHECK(address(p) % Arena::chunkAlignment(pool) == 0);
      std::memset(p, static_cast<int>(pool + 1), size);
      chunks.emplace_back(p, size);
    }
    CHECK(arena.tryAllocate(size) == nullptr);
  }
  // Every chunk still holds its own pattern: no two overlap.
  for (const auto& [p, size] : chunks) {
    const auto expected = static_cast<unsigned char>(std::countr_zero(size) - 3);  // pool + 1
    CHECK(std::all_of(p, p + size, [&](unsigned char b) { return b == expected; }));
  }
  std::sort(chunks.begin(), chunks.end());
  for (size_t i = 1; i < chunks.size(); ++i) CHECK(chunks[i - 1].first + chunks[i - 1].second <= chunks[i].first);
  CHECK(chunks.back().first + chunks.back().second <=
        static_cast<unsigned char*>(arena.backend().data()) + Arena::kBytes);
  for (const auto& chunk : chunks) arena.deallocate(chunk.first);
}

TEST_CASE("slab arena: deallocate(nullptr), ownership and offsets") {
  LocalMem::Allocator<4, 64, 128> arena;
  arena.deallocate(nullptr);  // no-op
  void* p = arena.allocate(100);
  REQUIRE(p != nullptr);
  CHECK(arena.owns(p));
  CHECK(arena.owns(static_cast<char*>(p) + 127));  // inside the chunk
  int local = 0;
  CHECK_FALSE(arena.owns(&local));
  CHECK(arena.chunkSizeOf(&local) == 0);
  CHECK_FALSE(arena.owns(arena.backend().data()));  // metadata, not a chunk

  const size_t offset = arena.offsetOf(p);
  REQUIRE(offset != decltype(arena)::kNoOffset);
  CHECK(arena.atOffset(offset) == p);
  CHECK(arena.offsetOf(&local) == decltype(arena)::kNoOffset);
  CHECK(arena.atOffset(decltype(arena)::kBytes) == nullptr);
  CHECK(arena.allocatedChunks(1) == 1);
  CHECK(arena.allocatedChunks(7) == 0);  // no such pool
  arena.deallocate(p);
  CHECK(arena.allocatedChunks(1) == 0);
}

TEST_CASE("slab arena: move-only, and a moved-from arena is empty") {
  using Arena = LocalMem::Allocator<2, 64>;
  Arena a;
  void* p = a.allocate(64);
  REQUIRE(p != nullptr);

  Arena b = std::move(a);
  CHECK(a.allocate(64) == nullptr);  // NOLINT(bugprone-use-after-move): that is the point
  CHECK(a.tryAllocate(1) == nullptr);
  CHECK_FALSE(a.owns(p));
  CHECK(a.allocatedChunks(0) == 0);
  errno = 0;
  CHECK(a.mbind(0) == -1);
  CHECK(errno == EINVAL);
  CHECK(a.mlock() == -1);
  a.deallocate(nullptr);
  CHECK(b.owns(p));
  CHECK(b.allocatedChunks(0) == 1);

  Arena c;
  void* q = c.allocate(64);
  c = std::move(b);  // c's old mapping is released; it now has b's
  CHECK(c.owns(p));
  CHECK_FALSE(c.owns(q));
  CHECK(b.allocate(64) == nullptr);  // NOLINT(bugprone-use-after-move)
  c.deallocate(p);
  CHECK(c.allocatedChunks(0) == 0);
  Arena d = std::move(c);
  Arena& alias = d;
  d = std::move(alias);  // self-move keeps the mapping
  CHECK(d.allocate(64) != nullptr);
  // a, b, c are destroyed empty: nothing to unmap twice.
}

// ---------------------------------------------------------------------------------------------
// Bad frees abort, naming the address

TEST_CASE("slab arena: deallocate of a foreign pointer aborts") {
  using Arena = LocalMem::Allocator<4, 64, 128>;
  Arena arena;
  Arena other;
  int on_stack = 0;
  void* from_other = other.allocate(64);
  void* from_malloc = std::malloc(64);
  for (void* foreign : {static_cast<void*>(&on_stack), from_other, from_malloc}) {
    const ChildResult r = run_in_child([&] { arena.deallocate(foreign); });
    CHECK(aborted_naming(r, foreign, "not from this arena"));
  }
  std::free(from_malloc);
  // Into the arena, but not into a chunk: its metadata.
  void* meta = arena.atOffset(8);
  CHECK(aborted_naming(run_in_child([&] { arena.deallocate(meta); }), meta, "metadata"));
  // A moved-from arena owns nothing.
  void* mine = arena.allocate(64);
  const ChildResult r = run_in_child([&] {
    Arena taken = std::move(arena);
    arena.deallocate(mine);
  });
  CHECK(aborted_naming(r, mine, "not from this arena"));
}

TEST_CASE("slab arena: deallocate of an interior pointer aborts") {
  LocalMem::Allocator<4, 64, 128> arena;
  auto* p = static_cast<char*>(arena.allocate(100));
  for (char* inside : {p + 1, p + 16, p + 64, p + 127}) {
    CHECK(aborted_naming(run_in_child([&] { arena.deallocate(inside); }), inside, "inside a chunk"));
  }
  arena.deallocate(p);  // the chunk itself is still fine
  CHECK(arena.allocatedChunks(1) == 0);
}

TEST_CASE("slab arena: double free aborts") {
  LocalMem::Allocator<4, 64, 128> arena;
  void* p = arena.allocate(64);
  void* q = arena.allocate(64);
  arena.deallocate(p);
  CHECK(aborted_naming(run_in_child([&] { arena.deallocate(p); }), p, "double free"));
  // Also after the chunk went round again: allocated, freed, freed.
  void* again = arena.allocate(64);
  CHECK(again == p);
  const ChildResult r = run_in_child([&] {
    arena.deallocate(again);
    arena.deallocate(again);
  });
  CHECK(aborted_naming(r, p, "double free"));
  // A chunk never handed out (the one after q, not carved yet) is "not allocated" too.
  void* never = static_cast<char*>(q) + 64;
  CHECK(arena.owns(never));
  CHECK(aborted_naming(run_in_child([&] { arena.deallocate(never); }), never, "not allocated"));
  arena.deallocate(q);
}

TEST_CASE("slab arena: a free list damaged by a write after free is detected") {
  LocalMem::Allocator<4, 64> arena;
  void* p = arena.allocate(64);
  arena.deallocate(p);
  const ChildResult r = run_in_child([&] {
    std::memset(p, 0xee, 4);  // the link word of a free chunk: index 0xeeeeeeee >= Count
    (void)arena.allocate(64);
  });
  CHECK(aborted_naming(r, p, "corrupt free list"));
}

TEST_CASE("slab arena: a damaged shared free list stays caught in every process") {
  // The bad link must never become the shared head: the first process to meet it aborts, and
  // so does the next one, instead of being handed a chunk inside another pool's live chunk.
  ShmName name("damaged");
  ShmMem::Allocator<4, 16, 1024> arena(name.c_str());
  void* big = arena.allocate(1024);
  void* p = arena.allocate(16);
  arena.deallocate(p);
  *static_cast<uint32_t*>(p) = 100;  // a link to chunk 100 of a 4-chunk pool
  for (int process = 0; process < 2; ++process) {
    CHECK(aborted_naming(run_in_child([&] { (void)arena.allocate(16); }), p, "corrupt free list"));
  }
  arena.deallocate(big);
}

// ---------------------------------------------------------------------------------------------
// Threads

namespace {

// `threads` threads allocate (with promotion) and free at random, each holding up to `hold`
// chunks. Each chunk gets its holder's id and a serial (bytes 8-15: bytes 0-3 are the free
// list link, which a popping thread may still read, see toolkit/slab_arena.h), checked before
// it is freed; a claim table keyed by offset catches a chunk handed to two holders at once.
template <class Arena>
void hammer(Arena& arena, int threads, int hold, int operations) {
  std::vector<std::atomic<uint32_t>> claims(Arena::kBytes / 16);
  std::atomic<long> handed_twice{0}, overwritten{0}, too_small{0}, exhausted{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      const uint32_t me = static_cast<uint32_t>(t + 1);
      std::minstd_rand random(me);
      std::vector<std::pair<unsigned char*, uint32_t>> held;
      uint32_t serial = 0;
      const auto release = [&](size_t k) {
        auto [p, s] = held[k];
        uint32_t stored[2];
        std::memcpy(stored, p + 8, sizeof stored);
        if (stored[0] != me || stored[1] != s) overwritten.fetch_add(1);
        if (claims[arena.offsetOf(p) / 16].exchange(0) != me) handed_twice.fetch_add(1);
        arena.deallocate(p);
        held[k] = held.back();
        held.pop_back();
      };
      for (int i = 0; i < operations; ++i) {
        if (held.empty() || (static_cast<int>(held.size()) < hold && random() % 2 == 0)) {
          const size_t n = 1 + random() % Arena::kMaxSize;
          auto* p = static_cast<unsigned char*>(arena.allocate(n));
          if (p == nullptr) {
            exhausted.fetch_add(1);
            continue;
          }
          if (arena.chunkSizeOf(p) < n) too_small.fetch_add(1);
          if (claims[arena.offsetOf(p) / 16].exchange(me) != 0) handed_twice.fetch_add(1);
          const uint32_t stamp[2] = {me, ++serial};
          std::memcpy(p + 8, stamp, sizeof stamp);
          held.emplace_back(p, serial);
        } else {
          release(random() % held.size());
        }
      }
      while (!held.empty()) release(held.size() - 1);
    });
  }
  for (auto& w : workers) w.join();
  CHECK(handed_twice.load() == 0);
  CHECK(overwritten.load() == 0);
  CHECK(too_small.load() == 0);
  MESSAGE(threads << " threads x " << operations << " operations, " << exhausted.load()
                  << " allocations found the arena full");
  // Nothing lost, nothing left allocated: every chunk can be had once more, exactly once.
  for (size_t pool = 0; pool < Arena::kPoolCount; ++pool) {
    CHECK(arena.allocatedChunks(pool) == 0);
    size_t got = 0;
    while (arena.tryAllocate(Arena::chunkSize(pool)) != nullptr) ++got;
    CHECK(got == Arena::kChunksPerPool);
  }
}

}  // namespace

TEST_CASE("slab arena: threads never get the same chunk twice") {
  SUBCASE("roomy: 4 threads, 256 chunks per pool") {
    LocalMem::Allocator<256, 64, 128> arena;
    hammer(arena, 4, 16, 100000);
  }
  SUBCASE("tight: pools run dry and promote under contention") {
    LocalMem::Allocator<6, 32, 64, 128> arena;
    hammer(arena, 4, 8, 100000);
  }
}

TEST_CASE("slab arena: threads share a ShmMem arena too") {
  ShmName name("threads");
  ShmMem::Allocator<8, 64, 128> arena(name.c_str());
  hammer(arena, 3, 8, 50000);
  CHECK(ShmMem::unlink(name.c_str()) == 0);
}

// ---------------------------------------------------------------------------------------------
// NUMA binding and locking in RAM

namespace {

#if defined(__SANITIZE_ADDRESS__)  // g++ and clang++ with -fsanitize=address
constexpr bool kMlockIsIntercepted = true;  // ASan's mlock returns 0 and locks nothing
#else
constexpr bool kMlockIsIntercepted = false;
#endif

// Kibibytes this process has locked in RAM (VmLck in /proc/self/status), -1 if unreadable.
long lockedKib() {
  std::FILE* status = std::fopen("/proc/self/status", "r");
  if (status == nullptr) return -1;
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof line, status) != nullptr)
    if (std::sscanf(line, "VmLck: %ld kB", &kib) == 1) break;
  std::fclose(status);
  return kib;
}

// The result of a call and the errno it left, read at once: a doctest reporter that prints
// between the call and the check (-s) would change errno.
struct Outcome {
  int result;
  int error;
};
template <class Call>
Outcome outcomeOf(Call call) {
  errno = 0;
  const int result = call();
  return {result, errno};
}

// chunkBytes: what the arena's chunks take at least (Count times the sum of its sizes).
template <class Arena>
void checkBindAndLock(Arena& arena, size_t chunkBytes) {
  const Outcome bound = outcomeOf([&] { return arena.mbind(0); });
  if (bound.result != 0) {
    // A kernel without NUMA support; in a container whose seccomp profile forbids mbind, EPERM.
    MESSAGE("mbind(0) failed: " << std::strerror(bound.error));
    CHECK((bound.error == ENOSYS || bound.error == EPERM));
  }
  const Outcome far = outcomeOf([&] { return arena.mbind(1000); });  // no machine has node 1000
  CHECK(far.result == -1);
  CHECK((far.error == EINVAL || far.error == ENOSYS || far.error == EPERM));
  const Outcome negative = outcomeOf([&] { return arena.mbind(-1); });
  CHECK(negative.result == -1);
  CHECK(negative.error == EINVAL);
  CHECK(arena.mbind(bitslab::mem::kMaxNumaNodes) == -1);

  const long lockedBefore = lockedKib();
  const Outcome locked = outcomeOf([&] { return arena.mlock(); });
  if (locked.result != 0) {
    // RLIMIT_MEMLOCK too low for an unprivileged user: refused with the errno mlock(2) gives.
    MESSAGE("mlock failed: " << std::strerror(locked.error));
    CHECK(locked.result == -1);
    CHECK((locked.error == EPERM || locked.error == ENOMEM || locked.error == EAGAIN));
  } else if (kMlockIsIntercepted) {
    MESSAGE("AddressSanitizer replaces mlock with a no-op: the lock itself is not checked");
  } else {
    // Locked for real: the kernel counts at least the chunks' pages as locked now.
    REQUIRE(lockedBefore >= 0);
    CHECK(lockedKib() - lockedBefore >= static_cast<long>(chunkBytes / 1024));
  }
  // Still an arena after either.
  void* p = arena.allocate(1);
  CHECK(p != nullptr);
  arena.deallocate(p);
}

}  // namespace

TEST_CASE("slab arena: mbind and mlock (LocalMem)") {
  LocalMem::Allocator<64, 64, 4096> arena;
  checkBindAndLock(arena, 64 * (64 + 4096));
}

TEST_CASE("slab arena: mbind and mlock (ShmMem)") {
  ShmName name("numa");
  ShmMem::Allocator<64, 64, 4096> arena(name.c_str());
  checkBindAndLock(arena, 64 * (64 + 4096));
  CHECK(ShmMem::unlink(name.c_str()) == 0);
}

// ---------------------------------------------------------------------------------------------
// ShmMem: attaching, layouts, names

TEST_CASE("slab arena: two ShmMem handles in one process share the arena") {
  ShmName name("two-handles");
  using Shared = ShmMem::Allocator<4, 64, 256>;
  Shared first(name.c_str());
  Shared second(name.c_str());
  CHECK(first.backend().created());
  CHECK_FALSE(second.backend().created());
  CHECK(first.backend().data() != second.backend().data());  // two mappings

  auto* p = static_cast<char*>(first.allocate(200));
  REQUIRE(p != nullptr);
  std::strcpy(p, "written through the first mapping");
  auto* seen = static_cast<char*>(second.atOffset(first.offsetOf(p)));
  CHECK(std::string(seen) == "written through the first mapping");
  CHECK(second.allocatedChunks(1) == 1);
  second.deallocate(seen);  // freed through the other mapping
  CHECK(first.allocatedChunks(1) == 0);
  // The next allocation, through either handle, reuses it.
  CHECK(second.offsetOf(second.allocate(256)) == first.offsetOf(p));
  CHECK(ShmMem::unlink(name.c_str()) == 0);
}

TEST_CASE("slab arena: attaching a ShmMem segment as another layout throws") {
  ShmName name("layout");
  using Shared = ShmMem::Allocator<16, 64, 256>;
  Shared arena(name.c_str());
  void* p = arena.allocate(64);
  std::memset(p, 0x5a, 64);

  // Another size: refused before mapping.
  try {
    ShmMem::Allocator<32, 64, 256> other(name.c_str());
    FAIL("a segment of another size was attached");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == EINVAL);
    CHECK(std::string(e.what()).find(name.c_str()) != std::string::npos);
    MESSAGE(std::string(e.what()));
  }
  // The same size, another layout (fingerprint): refused after the ready flag is seen.
  const SegmentSpec same_size{Shared::kBytes, Shared::kLayoutId ^ 1, [](void*) noexcept {}};
  try {
    ShmMem other(name.c_str(), same_size);
    FAIL("a segment of another layout was attached");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == EINVAL);
    MESSAGE(std::string(e.what()));
  }
  // Neither attempt touched the arena.
  const auto* bytes = static_cast<unsigned char*>(p);
  CHECK(std::all_of(bytes, bytes + 64, [](unsigned char b) { return b == 0x5a; }));
  CHECK(arena.allocatedChunks(0) == 1);
  Shared same(name.c_str());
  CHECK(same.allocatedChunks(0) == 1);
  CHECK(ShmMem::unlink(name.c_str()) == 0);
}

TEST_CASE("slab arena: ShmMem gives up on a segment that is never published") {
  ShmName name("stuck");
  using Shared = ShmMem::Allocator<4, 64>;
  const ShmOptions quick{0600, std::chrono::milliseconds(100)};
  // A creator that died before sizing the object...
  const int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  REQUIRE(fd >= 0);
  try {
    Shared arena(name.c_str(), quick);
    FAIL("attached an unsized segment");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == ETIMEDOUT);
  }
  // ...and one that died while formatting: the right size, the ready flag never set.
  REQUIRE(ftruncate(fd, static_cast<off_t>(Shared::kBytes + 64)) == 0);
  try {
    Shared arena(name.c_str(), quick);
    FAIL("attached an unpublished segment");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == ETIMEDOUT);
  }
  // Not a bitslab segment at all: refused at once.
  void* map = mmap(nullptr, Shared::kBytes + 64, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  REQUIRE(map != MAP_FAILED);
  std::memset(map, 0x7f, Shared::kBytes + 64);
  munmap(map, Shared::kBytes + 64);
  close(fd);
  CHECK_THROWS_AS(Shared(name.c_str(), quick), std::system_error);
}

TEST_CASE("slab arena: a process attaching waits for the creator to finish formatting") {
  ShmName name("slow-creator");
  static constexpr auto slowFormat = [](void* base) noexcept {
    usleep(200 * 1000);
    static_cast<unsigned char*>(base)[0] = 0xab;
  };
  const SegmentSpec spec{4096, 0x5e9, slowFormat};
  std::fflush(nullptr);
  const pid_t creator = fork();
  REQUIRE(creator >= 0);
  if (creator == 0) {
    alarm(10);  // watchdog: a creator that hangs dies, and the checks below fail
    try {
      ShmMem created(name.c_str(), spec);
      _exit(created.created() ? 0 : 1);
    } catch (...) {
      _exit(2);
    }
  }
  // Wait for the name, then attach while the creator is still formatting.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  int fd = -1;
  while ((fd = shm_open(name.c_str(), O_RDONLY, 0)) < 0 && std::chrono::steady_clock::now() < deadline) usleep(100);
  REQUIRE(fd >= 0);
  close(fd);
  const auto start = std::chrono::steady_clock::now();
  ShmMem attached(name.c_str(), spec);
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  MESSAGE("the attaching process waited " << waited.count() << " ms for the creator");
  CHECK_FALSE(attached.created());
  CHECK(static_cast<unsigned char*>(attached.data())[0] == 0xab);
  int status = 0;
  REQUIRE(waitpid(creator, &status, 0) == creator);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("slab arena: ShmMem names") {
  errno = 0;
  CHECK(ShmMem::unlink("/bitslab-test-no-such-segment-ever") == -1);
  CHECK(errno == ENOENT);
  errno = 0;
  CHECK(ShmMem::unlink(nullptr) == -1);
  CHECK(errno == EINVAL);
  try {
    ShmMem::Allocator<4, 64> arena("/bitslab-test/with/slashes");
    FAIL("a name with slashes was accepted");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == EINVAL);
  }
  try {
    ShmMem::Allocator<4, 64> arena(static_cast<const char*>(nullptr));
    FAIL("a null name was accepted");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == EINVAL);
  }
}

// ---------------------------------------------------------------------------------------------
// ShmMem across processes

TEST_CASE("slab arena: across fork, a child attaches by name") {
  ShmName name("fork");
  using Shared = ShmMem::Allocator<16, 64, 256>;
  Shared arena(name.c_str());
  auto* mailbox = static_cast<uint64_t*>(arena.allocate(256));  // [0] count, [1 + i] offsets
  auto* greeting = static_cast<char*>(arena.allocate(64));
  REQUIRE(mailbox != nullptr);
  REQUIRE(greeting != nullptr);
  std::strcpy(greeting, "from the parent");
  const size_t mailbox_at = arena.offsetOf(mailbox);
  const size_t greeting_at = arena.offsetOf(greeting);
  constexpr int kChildChunks = 5;

  const ChildResult r = run_in_child([&] {
    Shared attached(name.c_str());  // a mapping of its own, at another address
    if (attached.backend().created()) _exit(10);
    auto* box = static_cast<uint64_t*>(attached.atOffset(mailbox_at));
    auto* hello = static_cast<char*>(attached.atOffset(greeting_at));
    if (std::strcmp(hello, "from the parent") != 0) _exit(11);
    attached.deallocate(hello);  // allocated by the parent, freed here
    for (int i = 0; i < kChildChunks; ++i) {
      auto* chunk = static_cast<char*>(attached.allocate(64));
      if (chunk == nullptr) _exit(12);
      std::snprintf(chunk, 64, "child chunk %d", i);
      box[1 + i] = attached.offsetOf(chunk);
    }
    box[0] = kChildChunks;
  });
  INFO(r.stderr_text);
  REQUIRE(r.exited);
  REQUIRE(r.exit_code == 0);

  CHECK(mailbox[0] == kChildChunks);
  CHECK(arena.allocatedChunks(0) == kChildChunks);  // the greeting went, the child's came
  CHECK(arena.allocatedChunks(1) == 1);              // the mailbox
  for (int i = 0; i < kChildChunks; ++i) {
    auto* chunk = static_cast<char*>(arena.atOffset(mailbox[1 + i]));
    REQUIRE(chunk != nullptr);
    CHECK(std::string(chunk) == "child chunk " + std::to_string(i));
    arena.deallocate(chunk);  // allocated by the child, freed here
  }
  CHECK(arena.allocatedChunks(0) == 0);
  arena.deallocate(mailbox);
  CHECK(arena.allocatedChunks(1) == 0);
  CHECK(ShmMem::unlink(name.c_str()) == 0);
}

TEST_CASE("slab arena: across fork, a child uses the inherited mapping") {
  ShmName name("inherited");
  ShmMem::Allocator<8, 64> arena(name.c_str());
  // Unlinked at once: the mapping lives on in both processes.
  CHECK(ShmMem::unlink(name.c_str()) == 0);
  void** slot = static_cast<void**>(arena.allocate(64));
  REQUIRE(slot != nullptr);
  const ChildResult r = run_in_child([&] {
    auto* chunk = static_cast<char*>(arena.allocate(64));  // same addresses as the parent's
    if (chunk == nullptr) _exit(10);
    std::strcpy(chunk, "inherited");
    *slot = chunk;
  });
  INFO(r.stderr_text);
  REQUIRE(r.exited);
  REQUIRE(r.exit_code == 0);
  CHECK(arena.allocatedChunks(0) == 2);
  REQUIRE(*slot != nullptr);
  CHECK(std::string(static_cast<char*>(*slot)) == "inherited");
  arena.deallocate(*slot);
  arena.deallocate(slot);
  CHECK(arena.allocatedChunks(0) == 0);
}

#ifdef BITSLAB_SHM_PEER
namespace {

int runPeer(std::vector<std::string> args) {
  std::vector<char*> argv;
  std::string path = BITSLAB_SHM_PEER;
  argv.push_back(path.data());
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, path.c_str(), nullptr, nullptr, argv.data(), environ) != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

TEST_CASE("slab arena: a separately started process attaches by name") {
  // Must match tests/toolkit/shm_peer.cc: PeerArena, the mailbox, the pattern.
  using PeerArena = ShmMem::Allocator<32, 64, 512>;
  constexpr uint32_t kPeerMagic = 0x50454552;
  constexpr size_t kCount = 24;

  ShmName name("peer");
  PeerArena arena(name.c_str());
  auto* mailbox = static_cast<uint64_t*>(arena.allocate(512));
  auto* greeting = static_cast<char*>(arena.allocate(64));
  REQUIRE(mailbox != nullptr);
  REQUIRE(greeting != nullptr);
  std::strcpy(greeting, "hello, peer");

  const int code = runPeer({name.c_str(), std::to_string(arena.offsetOf(mailbox)),
                            std::to_string(arena.offsetOf(greeting)), std::to_string(kCount)});
  REQUIRE(code == 0);
  CHECK(mailbox[0] == kCount);
  CHECK(arena.allocatedChunks(0) == kCount);  // the greeting freed by the peer, its chunks in
  CHECK(arena.allocatedChunks(1) == 1);
  for (size_t i = 0; i < kCount; ++i) {
    CAPTURE(i);
    auto* chunk = static_cast<unsigned char*>(arena.atOffset(mailbox[1 + i]));
    REQUIRE(chunk != nullptr);
    CHECK(arena.chunkSizeOf(chunk) == 64);
    uint32_t magic = 0, index = 0;
    std::memcpy(&magic, chunk, 4);
    std::memcpy(&index, chunk + 4, 4);
    CHECK(magic == kPeerMagic);
    CHECK(index == i);
    CHECK(std::all_of(chunk + 8, chunk + 64, [&](unsigned char b) { return b == ((i + 1) & 0xff); }));
    arena.deallocate(chunk);  // allocated by the peer, freed here
  }
  CHECK(arena.allocatedChunks(0) == 0);
  // The peer attaching as another layout is refused there, and harms nothing here.
  CHECK(runPeer({"--expect-mismatch", name.c_str()}) == 0);
  arena.deallocate(mailbox);
  CHECK(arena.allocatedChunks(1) == 0);
  CHECK(ShmMem::unlink(name.c_str()) == 0);
  // Once the name is gone, the peer cannot attach (it would create a fresh one: refused as
  // "did not exist", exit 3).
  CHECK(runPeer({name.c_str(), "0", "0", "1"}) == 3);
}
#else
TEST_CASE("slab arena: a separately started process attaches by name") {
  MESSAGE("BITSLAB_SHM_PEER is not defined: the peer program was not built; skipped");
}
#endif
