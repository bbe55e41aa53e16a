// LeakCheckingAllocator (Zig's GeneralPurposeAllocator leak check): a tagged header links each
// live block; deinit() reports leaks by address and size; bad frees abort naming the address.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <malloc.h>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/api/bitslab.h"
#include "tests/support/child.h"
#include "tests/toolkit/allocator_test_support.h"
#include "toolkit/fixed_buffer_allocator.h"
#include "toolkit/leak_checking_allocator.h"

using bitslab::FixedBufferAllocator;
using bitslab::LeakCheckingAllocator;
using bitslab::test::hex_address;
using bitslab::test::run_in_child;
using namespace bitslab::test;
using Check = LeakCheckingAllocator::Check;

namespace {

// A backing allocator for tests: blocks from a FixedBufferAllocator, with the arguments of
// deallocate checked against those of allocate.
struct RecordingBacking {
  alignas(4096) unsigned char storage[1 << 16];
  FixedBufferAllocator buffer{storage, sizeof storage};
  size_t allocations = 0, deallocations = 0, bytes_out = 0;
  size_t last_request = 0;
  bool refuse = false;
  struct Record {
    void* block;
    size_t bytes, alignment;
  };
  std::vector<Record> live;  // test code: the checker itself never allocates

  bitslab::BackingAllocator backing() {
    bitslab::BackingAllocator b;
    b.allocate = [](void* self, size_t bytes, size_t alignment) -> void* {
      auto& r = *static_cast<RecordingBacking*>(self);
      if (r.refuse) return nullptr;  // without errno: the checker must set ENOMEM
      void* p = r.buffer.allocate(bytes, alignment);
      if (p == nullptr) return nullptr;
      ++r.allocations;
      r.bytes_out += bytes;
      r.last_request = bytes;
      r.live.push_back({p, bytes, alignment});
      return p;
    };
    b.deallocate = [](void* self, void* block, size_t bytes, size_t alignment) {
      auto& r = *static_cast<RecordingBacking*>(self);
      auto it = std::find_if(r.live.begin(), r.live.end(), [&](const Record& x) { return x.block == block; });
      REQUIRE(it != r.live.end());
      CHECK(it->bytes == bytes);
      CHECK(it->alignment == alignment);
      r.live.erase(it);
      ++r.deallocations;
      r.bytes_out -= bytes;
    };
    b.owns = [](void* self, const void* p) { return static_cast<RecordingBacking*>(self)->buffer.owns(p); };
    b.context = this;
    return b;
  }
};

struct LeakRecord {
  const void* block;
  size_t bytes;
};
void record_leak(void* context, const void* block, size_t bytes) {
  static_cast<std::vector<LeakRecord>*>(context)->push_back({block, bytes});
}

}  // namespace

TEST_CASE("leak checker: blocks freed in any order -> ok, counters follow") {
  std::vector<LeakRecord> leaks;
  bitslab::LeakCheckOptions options;
  options.reporter = record_leak;
  options.reporter_context = &leaks;
  LeakCheckingAllocator checked(options);  // over bitslab's core
  Sequence random;
  std::vector<Block> blocks;
  size_t bytes = 0;
  for (size_t i = 0; i < 500; ++i) {
    const size_t alignment = size_t{1} << random.next() % 13;  // 1 .. 4096
    const size_t size = random.next() % 3000;
    void* p = checked.allocate(size, alignment);
    REQUIRE(p != nullptr);
    CHECK(aligned(p, alignment));
    CHECK(checked.allocated_size(p) == size);
    blocks.push_back({static_cast<unsigned char*>(p), size, static_cast<unsigned char>(i)});
    fill(blocks.back());
    bytes += size;
  }
  CHECK(checked.live_blocks() == 500);
  CHECK(checked.live_bytes() == bytes);
  CHECK(disjoint(blocks));
  for (size_t i = 0; i < blocks.size(); ++i) std::swap(blocks[i], blocks[random.next() % blocks.size()]);
  for (const Block& b : blocks) {
    REQUIRE(intact(b));  // the headers around did not spill into the blocks
    if (b.pattern % 2 == 0) checked.deallocate(b.p, b.bytes);  // sized: checked too
    else checked.deallocate(b.p);
  }
  CHECK(checked.live_blocks() == 0);
  CHECK(checked.live_bytes() == 0);
  CHECK(checked.deinit() == Check::ok);
  CHECK(leaks.empty());
  checked.deallocate(nullptr);  // like free(nullptr)
}

TEST_CASE("leak checker: a leak is reported with its address and size, then forgotten") {
  std::vector<LeakRecord> leaks;
  bitslab::LeakCheckOptions options;
  options.reporter = record_leak;
  options.reporter_context = &leaks;
  LeakCheckingAllocator checked(options);
  void* kept = checked.allocate(10);
  void* leaked1 = checked.allocate(24);
  void* leaked2 = checked.allocate(5000, 256);
  checked.deallocate(kept);
  REQUIRE(checked.live_blocks() == 2);
  CHECK(checked.live_bytes() == 5024);

  CHECK(checked.deinit() == Check::leak);
  REQUIRE(leaks.size() == 2);
  std::sort(leaks.begin(), leaks.end(), [](const LeakRecord& a, const LeakRecord& b) { return a.bytes < b.bytes; });
  CHECK(leaks[0].block == leaked1);
  CHECK(leaks[0].bytes == 24);
  CHECK(leaks[1].block == leaked2);
  CHECK(leaks[1].bytes == 5000);
  CHECK(checked.live_blocks() == 0);  // forgotten: the allocator starts over
  CHECK(checked.deinit() == Check::ok);

  // A reported leak may still be freed later (it goes to the backing), once.
  checked.deallocate(leaked1);
  checked.deallocate(leaked2);
  CHECK(checked.live_blocks() == 0);
  void* fresh = checked.allocate(8);
  CHECK(checked.live_blocks() == 1);
  checked.deallocate(fresh);
}

TEST_CASE("leak checker: the stderr report names address and size, and more than 20 leaks are counted") {
  auto one = run_in_child([] {
    LeakCheckingAllocator checked;
    checked.allocate(24);
    _exit(checked.deinit() == Check::leak ? 3 : 4);
  });
  REQUIRE(one.exited);
  CHECK(one.exit_code == 3);
  CHECK(one.stderr_text.find("bitslab: leak: block 0x") != std::string::npos);
  CHECK(one.stderr_text.find(" of 24 bytes\n") != std::string::npos);
  CHECK(one.stderr_text.find("bitslab: leak: 1 block, 24 bytes not freed") != std::string::npos);

  // The address printed is the block's: the child prints the line it expects, after the report.
  auto named = run_in_child([] {
    LeakCheckingAllocator checked;
    void* p = checked.allocate(40);
    const std::string expected = "block " + hex_address(p) + " of 40 bytes";
    checked.deinit();
    bitslab::warn({"expected: ", expected.c_str()});
  });
  REQUIRE(named.exited);
  const size_t marker = named.stderr_text.find("expected: ");
  REQUIRE(marker != std::string::npos);
  const std::string expected = named.stderr_text.substr(marker + 10, named.stderr_text.find('\n', marker) - marker - 10);
  CHECK(named.stderr_text.find("bitslab: leak: " + expected + "\n") < marker);

  auto many = run_in_child([] {
    LeakCheckingAllocator checked;
    for (int i = 0; i < 25; ++i) checked.allocate(16);
    checked.deinit();
  });
  REQUIRE(many.exited);
  size_t lines = 0;
  for (size_t at = 0; (at = many.stderr_text.find("bitslab: leak: block ", at)) != std::string::npos; ++at) ++lines;
  CHECK(lines == 20);
  CHECK(many.stderr_text.find("bitslab: leak: ... and 5 more blocks") != std::string::npos);
  CHECK(many.stderr_text.find("bitslab: leak: 25 blocks, 400 bytes not freed") != std::string::npos);
}

TEST_CASE("leak checker: the destructor checks, and fail_on_leak aborts naming the count") {
  auto quiet = run_in_child([] {
    LeakCheckingAllocator checked;
    checked.allocate(8);
  });  // destructor reports, does not abort
  CHECK(quiet.exited);
  CHECK(quiet.exit_code == 0);
  CHECK(quiet.stderr_text.find("bitslab: leak: 1 block, 8 bytes not freed") != std::string::npos);

  auto failing = run_in_child([] {
    bitslab::LeakCheckOptions options;
    options.fail_on_leak = true;
    LeakCheckingAllocator checked(options);
    checked.allocate(24);
    checked.allocate(24);
  });
  CHECK(failing.signaled);
  CHECK(failing.signal == SIGABRT);
  CHECK(failing.stderr_text.find("bitslab: LeakCheckingAllocator: 2 leaked blocks, 48 bytes (fail_on_leak)") !=
        std::string::npos);

  auto after_deinit = run_in_child([] {  // the leak found by an explicit deinit() counts too
    LeakCheckingAllocator checked;
    checked.set_fail_on_leak(true);
    checked.allocate(1);
    (void)checked.deinit();
  });
  CHECK(after_deinit.signaled);
  CHECK(after_deinit.stderr_text.find("1 leaked block, 1 bytes (fail_on_leak)") != std::string::npos);

  auto clean = run_in_child([] {
    bitslab::LeakCheckOptions options;
    options.fail_on_leak = true;
    LeakCheckingAllocator checked(options);
    checked.deallocate(checked.allocate(24));
  });
  CHECK(clean.exited);
  CHECK(clean.exit_code == 0);
  CHECK(clean.stderr_text.empty());
}

TEST_CASE("leak checker: a double free aborts naming the address") {
  void* block = nullptr;
  LeakCheckingAllocator checked;
  block = checked.allocate(48);
  checked.deallocate(block);
  auto result = run_in_child([&] { checked.deallocate(block); });
  CHECK(result.signaled);
  CHECK(result.signal == SIGABRT);
  CHECK(result.stderr_text.find("LeakCheckingAllocator: double free of " + hex_address(block)) != std::string::npos);

  // A reported leak freed twice, too.
  auto leaked_twice = run_in_child([] {
    LeakCheckingAllocator leaky;
    void* p = leaky.allocate(8);
    leaky.deinit();
    leaky.deallocate(p);
    bitslab::warn({"first free passed"});
    leaky.deallocate(p);
  });
  CHECK(leaked_twice.signaled);
  CHECK(leaked_twice.stderr_text.find("first free passed") != std::string::npos);
  CHECK(leaked_twice.stderr_text.find("double free of 0x") != std::string::npos);
}

TEST_CASE("leak checker: a foreign pointer aborts naming the address") {
  LeakCheckingAllocator checked;
  LeakCheckingAllocator other;
  alignas(16) static char not_heap[64];
  void* core_block = bitslab::alloc(64);       // bitslab's, but not through the checker
  void* others_block = other.allocate(64);     // the right kind of header, the wrong owner
  void* inside = static_cast<char*>(checked.allocate(64)) + 16;  // inside a live block
  for (void* foreign : {static_cast<void*>(not_heap), core_block, others_block, inside,
                        static_cast<void*>(static_cast<char*>(core_block) + 1)}) {
    CAPTURE(hex_address(foreign));
    auto result = run_in_child([&] { checked.deallocate(foreign); });
    CHECK(result.signaled);
    CHECK(result.signal == SIGABRT);
    CHECK(result.stderr_text.find("never handed out: " + hex_address(foreign)) != std::string::npos);
  }
  other.deallocate(others_block);
  bitslab::free(core_block);
  CHECK(checked.live_blocks() == 1);
  checked.deallocate(static_cast<char*>(inside) - 16);
}

TEST_CASE("leak checker: a wrong size or an overwritten header aborts naming the address") {
  LeakCheckingAllocator checked;
  void* p = checked.allocate(100);
  auto wrong_size = run_in_child([&] { checked.deallocate(p, 99); });
  CHECK(wrong_size.signaled);
  CHECK(wrong_size.stderr_text.find("free with a wrong size of " + hex_address(p)) != std::string::npos);

  auto underflow = run_in_child([&] {
    memset(static_cast<char*>(p) - LeakCheckingAllocator::kHeaderBytes, 0x41, 8);  // the prev link
    checked.deallocate(p);
  });
  CHECK(underflow.signaled);
  CHECK(underflow.stderr_text.find("block header overwritten (a write out of bounds?) at " + hex_address(p)) !=
        std::string::npos);

  auto size_field = run_in_child([&] {  // the size: else live_bytes and the backing go wrong
    reinterpret_cast<LeakCheckingAllocator::BlockHeader*>(static_cast<char*>(p) - 32)->bytes = 1;
    checked.deallocate(p);
  });
  CHECK(size_field.signaled);
  CHECK(size_field.stderr_text.find("overwritten (a write out of bounds?) at " + hex_address(p)) != std::string::npos);

  // A damaged neighbour is found when a block next to it in the list is freed, and named.
  void* newer = checked.allocate(16);  // the list: newer, p
  auto neighbour = run_in_child([&] {
    reinterpret_cast<LeakCheckingAllocator::BlockHeader*>(static_cast<char*>(p) - 32)->bytes = 7;
    checked.deallocate(newer);
  });
  CHECK(neighbour.signaled);
  CHECK(neighbour.stderr_text.find("overwritten (a write out of bounds?) at " + hex_address(p)) != std::string::npos);
  auto walk = run_in_child([&] {  // and by deinit's walk
    memset(static_cast<char*>(p) - 32 + 8, 0, 8);  // the next link
    checked.deinit();
  });
  CHECK(walk.signaled);
  CHECK(walk.stderr_text.find("overwritten (a write out of bounds?) at " + hex_address(p)) != std::string::npos);
  checked.deallocate(newer);

  auto tag = run_in_child([&] {
    static_cast<char*>(p)[-1] ^= 1;  // the byte right below the block: the tag
    checked.deallocate(p);
  });
  CHECK(tag.signaled);
  CHECK(tag.stderr_text.find(hex_address(p)) != std::string::npos);
  checked.deallocate(p);
}

TEST_CASE("leak checker: bad input gives nullptr and errno, and changes nothing") {
  LeakCheckingAllocator checked;
  for (size_t bad_alignment : {size_t{0}, size_t{3}, size_t{24}}) {
    errno = 0;
    CHECK(checked.allocate(8, bad_alignment) == nullptr);
    CHECK(errno == EINVAL);
  }
  for (size_t huge : {SIZE_MAX, SIZE_MAX - 31, bitslab::max_size()}) {  // the core serves up to 256 KiB
    errno = 0;
    CHECK(checked.allocate(huge) == nullptr);
    CHECK(errno == ENOMEM);
  }
  errno = 0;
  CHECK(checked.allocate(SIZE_MAX - 100, size_t{1} << 40) == nullptr);
  CHECK(errno == ENOMEM);
  CHECK(checked.live_blocks() == 0);

  RecordingBacking recording;
  LeakCheckingAllocator over_refusing({}, recording.backing());
  recording.refuse = true;
  errno = 0;
  CHECK(over_refusing.allocate(8) == nullptr);
  CHECK(errno == ENOMEM);  // the backing set no errno
  CHECK(over_refusing.live_blocks() == 0);
}

TEST_CASE("leak checker: over a user backing, each block costs a 32-byte header and goes back whole") {
  RecordingBacking recording;
  {
    LeakCheckingAllocator checked({}, recording.backing());
    void* p = checked.allocate(64);
    CHECK(recording.last_request == 64 + 32);  // the per-block overhead: one 32-byte header
    void* odd = checked.allocate(16);          // 48 bytes: the buffer is now 16- but not 32-aligned
    void* q = checked.allocate(10, 32);        // alignment 32: still the header alone
    CHECK(recording.last_request == 10 + 32);
    void* r = checked.allocate(10, 1024);      // larger alignments: `alignment` bytes in front
    CHECK(recording.last_request == 10 + 1024);
    CHECK(aligned(q, 32));
    CHECK(aligned(r, 1024));
    void* z = checked.allocate(0);
    CHECK(z != nullptr);
    CHECK(checked.allocated_size(z) == 0);
    for (void* block : {p, odd, q, r, z}) checked.deallocate(block);
    CHECK(recording.deallocations == 5);  // the same bytes and alignment as asked (checked there)
    CHECK(recording.bytes_out == 0);
    CHECK(checked.deinit() == Check::ok);

    // The backing's owns() keeps the checker from reading in front of an address outside it.
    alignas(16) static char elsewhere[64];
    auto result = run_in_child([&] { checked.deallocate(elsewhere + 32); });
    CHECK(result.signaled);
    CHECK(result.stderr_text.find("never handed out: " + hex_address(elsewhere + 32)) != std::string::npos);
  }
  CHECK(recording.live.empty());
}

TEST_CASE("leak checker: several threads allocate and free at once") {
  std::vector<LeakRecord> leaks;
  bitslab::LeakCheckOptions options;
  options.reporter = record_leak;
  options.reporter_context = &leaks;
  LeakCheckingAllocator checked(options);
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) {
      }
      void* mine[64];
      for (int round = 0; round < 200; ++round) {
        for (int i = 0; i < 64; ++i) mine[i] = checked.allocate(16 + (i * 7 + t) % 200);
        for (int i = 0; i < 64; i += 2) checked.deallocate(mine[i]);
        for (int i = 1; i < 64; i += 2) checked.deallocate(mine[i]);
      }
      for (int i = 0; i < 3; ++i) checked.allocate(8);  // 3 leaks per thread
    });
  }
  go.store(true);
  for (auto& thread : threads) thread.join();
  CHECK(checked.live_blocks() == 12);
  CHECK(checked.live_bytes() == 96);
  CHECK(checked.deinit() == Check::leak);
  CHECK(leaks.size() == 12);
}

TEST_CASE("leak checker: never calls malloc (glibc's byte count stays the same)") {
  LeakCheckingAllocator checked;
  checked.deallocate(checked.allocate(8));  // the core's thread heap is set up before measuring
  void* blocks[100];
  const size_t before = mallinfo2().uordblks;
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 100; ++i) blocks[i] = checked.allocate(static_cast<size_t>(i) * 37);
    for (int i = 0; i < 100; i += 3) checked.deallocate(blocks[i]);
    for (int i = 1; i < 100; i += 3) checked.deallocate(blocks[i], static_cast<size_t>(i) * 37);
    for (int i = 2; i < 100; i += 3) checked.deallocate(blocks[i]);
  }
  const size_t after = mallinfo2().uordblks;
  CHECK(before == after);
}
