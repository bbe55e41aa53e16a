// Death test: a double free must abort the process (SIGABRT) with a one-line
// message on stderr that says "double free" and names the block's address.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/preload/preload.h"
#include "tests/support/child.h"

namespace {

using bitslab::test::ChildResult;
using bitslab::test::run_in_child;

// Every "0x<hex>" number in the text, so the check does not depend on the
// case of the digits or on zero padding.
std::vector<std::uintptr_t> hex_numbers_in(const std::string& text) {
  std::vector<std::uintptr_t> numbers;
  for (std::size_t i = 0; i + 2 < text.size(); ++i) {
    if (text[i] == '0' && (text[i + 1] == 'x' || text[i + 1] == 'X') &&
        std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      numbers.push_back(static_cast<std::uintptr_t>(std::strtoull(text.c_str() + i + 2, nullptr, 16)));
    }
  }
  return numbers;
}

std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

void check_double_free_report(const ChildResult& result, const void* block) {
  INFO("child stderr: [", result.stderr_text, "]");
  REQUIRE_MESSAGE(result.signaled, "the child was not killed by a signal (exit status ",
                  result.exit_code, "): the double free was not detected");
  CHECK(result.signal == SIGABRT);
  CHECK(lowercase(result.stderr_text).find("double free") != std::string::npos);
  const auto numbers = hex_numbers_in(result.stderr_text);
  CHECK(std::find(numbers.begin(), numbers.end(), reinterpret_cast<std::uintptr_t>(block)) !=
        numbers.end());
}

}  // namespace

TEST_CASE("double free of a 32-byte block aborts and names the address") {
  // Allocated before the fork so the parent knows the address; the child
  // works on its copy of the heap.
  void* block = std::malloc(32);
  REQUIRE(block != nullptr);
  REQUIRE(preload::owns(block));
  const ChildResult result = run_in_child([block] {
    std::free(block);
    std::free(block);
  });
  check_double_free_report(result, block);
  std::free(block);  // the parent's copy was never freed
}

TEST_CASE("double free is caught even with other allocations in between") {
  void* block = std::malloc(32);
  REQUIRE(block != nullptr);
  const ChildResult result = run_in_child([block] {
    std::free(block);
    // Unrelated traffic in other size classes between the two frees.
    void* other[16];
    for (int i = 0; i < 16; ++i) other[i] = std::malloc(static_cast<std::size_t>(64 + 48 * i));
    for (void* p : other) std::free(p);
    std::free(block);
  });
  check_double_free_report(result, block);
  std::free(block);
}

// A 32 B block shares its cache line, so the thread that frees it sends it back to its owner:
// its bit in the slab's remote words stays set until the owner's next slow path. A second
// free meanwhile, by the owner or by another thread, must abort.
TEST_CASE("double free of a block another thread freed, not yet back with its owner, aborts") {
  for (const bool second_by_owner : {true, false}) {
    void* block = std::malloc(32);
    REQUIRE(block != nullptr);
    REQUIRE(preload::owns(block));
    const ChildResult result = run_in_child([block, second_by_owner] {
      std::thread([block] { std::free(block); }).join();
      if (second_by_owner)
        std::free(block);
      else
        std::thread([block] { std::free(block); }).join();
    });
    CAPTURE(second_by_owner);
    check_double_free_report(result, block);
    std::free(block);
  }
}

TEST_CASE("double free of a block freed past a full block cache aborts and names the address") {
  // A thread caches freed blocks of a class, 64 at first and up to 1024 for a long run of frees
  // (none in the hardened build); frees past that set the block's bit in its slab's bitmap and
  // mark the block, and a second free, finding the mark, finds the bit set. 2000 blocks of 24 B:
  // the last ones freed take that path. (With 200, which was enough before the cache grew, the
  // last one freed stayed cached.)
  constexpr int kBlocks = 2000;
  void* blocks[kBlocks];
  for (void*& p : blocks) {
    p = std::malloc(24);
    REQUIRE(p != nullptr);
  }
  void* last = blocks[kBlocks - 1];
  const ChildResult result = run_in_child([&blocks, last] {
    for (void* p : blocks) std::free(p);
    std::free(last);
  });
  check_double_free_report(result, last);
  for (void* p : blocks) std::free(p);
}

TEST_CASE("double free of a pool-sized block aborts and names the address") {
  // Pool chunks (1025 .. bitslab_max_core_size()) have their own double-free
  // check (an allocation bitmap per region).
  for (std::size_t n : {std::size_t{4096}, std::size_t{100000}}) {
    CAPTURE(n);
    void* block = std::malloc(n);
    REQUIRE(block != nullptr);
    REQUIRE(preload::owns(block));
    const ChildResult result = run_in_child([block] {
      std::free(block);
      std::free(block);
    });
    check_double_free_report(result, block);
    std::free(block);
  }
}

// A thread keeps up to 8 freed chunks of a class in its cache, counted as handed out in their
// region's bitmap, with a byte per slot in the region's header saying "in a cache"; past that,
// frees send chunks back to their region, where a second free finds the chunk's bit set. Each
// test below reaches one of the places a freed chunk can be when it is freed again.
TEST_CASE("double free of a pool chunk back in its region aborts and names the address") {
  // A thread frees the chunks and exits: its cache goes back to the regions, so the second
  // free finds the region's bit set, and no chunk in a cache.
  constexpr int kChunks = 32;
  void* chunks[kChunks];
  for (void*& c : chunks) c = std::malloc(3000);
  void* first = chunks[0];
  const ChildResult result = run_in_child([&chunks, first] {
    std::thread([&chunks] {
      for (void* c : chunks) std::free(c);
    }).join();
    std::free(first);
  });
  check_double_free_report(result, first);
  for (void* c : chunks) std::free(c);
}

TEST_CASE("double free of a pool chunk that another, running thread caches aborts and names it") {
  void* chunk = std::malloc(6000);
  REQUIRE(preload::owns(chunk));
  const ChildResult result = run_in_child([chunk] {
    std::atomic<int> stage{0};
    std::thread freer([&] {
      std::free(std::malloc(16));  // the thread's heap: a thread that has none caches nothing
      std::free(chunk);            // into the freer's cache, where it stays while it runs
      stage = 1;
      while (stage != 2) std::this_thread::yield();
    });
    while (stage != 1) std::this_thread::yield();
    std::free(chunk);
    // At once, with the freer still running: the free itself must abort, not a later flush of
    // the two caches that would both hold the chunk.
    std::_Exit(0);
  });
  check_double_free_report(result, chunk);
  std::free(chunk);
}

TEST_CASE("a free of a pool chunk that sits in a cache, never handed out, aborts and names it") {
  // The first allocation of a class takes a batch of chunks, the lowest slots of a new region:
  // the caller's (slot 0) and the rest for the cache, popped lowest first. 1900 B (class 1920)
  // is a size no other test here uses, so the region is new and the slots are adjacent.
  constexpr std::size_t kSlot = 1920;
  const ChildResult result = run_in_child([] {
    char* first = static_cast<char*>(std::malloc(1900));
    char* second = static_cast<char*>(std::malloc(1900));
    if (second != first + kSlot) std::_Exit(3);  // not the layout the test needs
    std::fprintf(stderr, "%p\n", static_cast<void*>(first + 2 * kSlot));
    std::free(first + 2 * kSlot);  // slot 2: in this thread's cache, never the program's:
                                   // reported as a double free (a cached chunk is a freed one)
  });
  INFO("child stderr: [", result.stderr_text, "]");
  REQUIRE_MESSAGE(!(result.exited && result.exit_code == 3), "the chunks were not laid out as expected");
  const auto numbers = hex_numbers_in(result.stderr_text);
  REQUIRE(!numbers.empty());
  check_double_free_report(result, reinterpret_cast<void*>(numbers.front()));
}

// Free pool chunks hold no link (the regions' bitmaps say which are free), so a write into a freed
// chunk — a use after free — cannot make malloc hand out a chunk that is still in use, in either
// build. The write here forges the pointer a free list would have held.
TEST_CASE("a pointer written into freed pool chunks cannot make malloc hand out a live one") {
  constexpr int kChunks = 96;  // more than a thread's cache of 32: most reach the regions
  char* chunks[kChunks];
  for (char*& c : chunks) c = static_cast<char*>(std::malloc(3000));
  for (char* c : chunks) std::free(c);
  char* live = static_cast<char*>(std::malloc(3000));
  REQUIRE(live != nullptr);
  for (char* c : chunks)
    if (c != live) std::memcpy(c, &live, sizeof live);  // the freed chunks now "point" at it
  std::vector<void*> again;
  for (int i = 0; i < 2 * kChunks; ++i) {
    void* p = std::malloc(3000);
    CHECK(p != live);
    again.push_back(p);
  }
  std::sort(again.begin(), again.end());
  CHECK(std::adjacent_find(again.begin(), again.end()) == again.end());  // each handed out once
  for (void* p : again) std::free(p);
  std::free(live);
}

TEST_CASE("a correct free sequence in the same setup does not abort") {
  // Control for the tests above: the fork/pipe harness itself must let a
  // well-behaved child exit 0 with nothing on stderr.
  const ChildResult result = run_in_child([] {
    void* p = std::malloc(32);
    std::free(p);
  });
  INFO("child stderr: [", result.stderr_text, "]");
  CHECK(result.exited);
  CHECK(result.exit_code == 0);
  CHECK(result.stderr_text.empty());
}
