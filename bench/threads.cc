// threads: many short-lived threads, each with a small burst of allocation.
//
// --threads-total threads run one after another, at most --concurrent at once
// (thread i starts once thread i - concurrent has been joined). Each thread
// frees the blocks its predecessors left in a shared mailbox, allocates --size
// small blocks (32-256 B), frees three quarters of them in random order and
// leaves the rest in the mailbox for whichever thread comes next, then exits.
// So the allocator's per-thread set-up and tear-down run thousands of times
// (a thread pool that is not one, a server spawning a thread per
// connection), and blocks outlive the thread that allocated them: an allocator
// with per-thread heaps must give an exited thread's memory a home.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "bench.h"

namespace {

constexpr const char* kSummary =
    "Short-lived threads (at most --concurrent at once), each allocating a few\n"
    "hundred small blocks (32-256 B), freeing most, leaving the rest to the next\n"
    "thread. Prints threads per second and us per thread.";

constexpr std::uint32_t kMinSize = 32;
constexpr std::uint32_t kMaxSize = 256;
constexpr std::uint64_t kHandOffEvery = 4;  // every 4th block goes to the next thread

// Block layout: next pointer (for the mailbox), size and tag at the head, the
// tag again at the tail.
using Header = bench::ListedBlock;
static_assert(sizeof(Header) + sizeof(std::uint32_t) <= kMinSize);

// Blocks left by exited threads, for the next thread to free.
struct Mailbox {
  std::mutex mutex;
  Header* head = nullptr;
  std::uint64_t count = 0;
};

void check(const Header* block) { bench::check_listed("bench_threads", block, kMinSize, kMaxSize); }

// Checks and frees a list; returns its length.
std::uint64_t free_list(Header* block) {
  std::uint64_t count = 0;
  while (block != nullptr) {
    check(block);
    Header* next = block->next;
    std::free(block);
    block = next;
    ++count;
  }
  return count;
}

void run_thread(std::uint64_t seed, std::uint64_t block_count, Mailbox& mailbox) {
  Header* inherited = nullptr;
  {
    std::lock_guard<std::mutex> lock(mailbox.mutex);
    inherited = std::exchange(mailbox.head, nullptr);
    mailbox.count = 0;
  }
  free_list(inherited);

  bench::SplitMix64 rng(seed);
  std::vector<Header*> blocks(block_count);
  for (Header*& block : blocks) {
    const std::uint32_t size = kMinSize + rng.below(kMaxSize - kMinSize + 1);
    block = bench::new_listed("bench_threads", size, static_cast<std::uint32_t>(rng.next()));
  }

  // Fisher-Yates, so the frees come in an order unrelated to the allocations.
  for (std::uint64_t i = block_count; i > 1; --i) {
    std::swap(blocks[i - 1], blocks[rng.below(static_cast<std::uint32_t>(i))]);
  }
  Header* handed = nullptr;
  Header* handed_tail = nullptr;
  std::uint64_t handed_count = 0;
  for (std::uint64_t i = 0; i < block_count; ++i) {
    Header* block = blocks[i];
    check(block);
    if (i % kHandOffEvery == 0) {
      block->next = handed;
      handed = block;
      if (handed_tail == nullptr) handed_tail = block;
      ++handed_count;
    } else {
      std::free(block);
    }
  }
  if (handed != nullptr) {
    std::lock_guard<std::mutex> lock(mailbox.mutex);
    handed_tail->next = mailbox.head;
    mailbox.head = handed;
    mailbox.count += handed_count;
  }
}

}  // namespace

int main(int argc, char** argv) {
  // 40000 threads: about 1.7 s under glibc on the 2-core dev machine, where
  // a thread's creation, run and join take ~40 us; 2000 would be over in 0.1 s.
  std::uint64_t total = 40'000;
  std::uint64_t concurrent = 4;
  std::uint64_t block_count = 300;
  std::uint64_t seed = 1;
  bench::parse_flags(argc, argv, kSummary,
                     {{"threads-total", &total, 1, "threads started in all"},
                      {"concurrent", &concurrent, 1, "threads alive at most at once"},
                      {"size", &block_count, 1, "blocks each thread allocates"},
                      {"seed", &seed, 0, "PRNG seed"}});
  if (block_count > UINT32_MAX) {
    std::fprintf(stderr, "bench_threads: --size must be below 2^32\n");
    return 2;
  }

  Mailbox mailbox;
  bench::SplitMix64 seeder(seed);
  // Slot i % concurrent holds thread i until it is joined, to start thread
  // i + concurrent. Threads take about as long as each other, so joining the
  // oldest first keeps about --concurrent alive.
  std::vector<std::thread> slots(concurrent);
  std::uint64_t start_ns = bench::now_ns();
  for (std::uint64_t i = 0; i < total; ++i) {
    std::thread& slot = slots[i % concurrent];
    if (slot.joinable()) slot.join();
    slot = std::thread(run_thread, seeder.next(), block_count, std::ref(mailbox));
  }
  for (std::thread& slot : slots) {
    if (slot.joinable()) slot.join();
  }
  double wall_ns = static_cast<double>(bench::now_ns() - start_ns);

  // Untimed: what the last threads left is checked and freed here.
  std::uint64_t left = free_list(std::exchange(mailbox.head, nullptr));
  if (left != mailbox.count) {
    std::fprintf(stderr, "bench_threads: heap corruption: mailbox held %llu blocks, counted %llu\n",
                 static_cast<unsigned long long>(left),
                 static_cast<unsigned long long>(mailbox.count));
    std::abort();
  }

  bench::Result("threads")
      .add("threads_total", total)
      .add("concurrent", concurrent)
      .add("blocks", block_count)
      .add("seed", seed)
      .add("seconds", wall_ns / 1e9, 3)
      .add("threads_per_s", static_cast<double>(total) / (wall_ns / 1e9), 0)
      .add("us_per_thread", wall_ns / 1e3 / static_cast<double>(total), 2)
      .print();
  return 0;
}
