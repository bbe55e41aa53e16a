// mstress: generations of threads that allocate, trade blocks through a shared table, and are
// replaced, in the manner of mimalloc's stress test (the "mstress" row of the allocator
// benchmarks).
//
// Each of --generations rounds starts --threads threads and joins them all. A thread keeps a
// set of --retained live blocks of its own (mostly 16-256 B, now and then up to 4 KiB or
// 64 KiB) and replaces a random one on most steps; on one step in four it swaps a fresh block
// into a random slot of the shared transfer table (--transfers slots) and frees what it takes
// out: a block another thread allocated, often one of an earlier generation whose thread has
// exited. When it finishes, a thread frees half of its set and leaves the other half in the
// table's overflow list for the next generation to free. So blocks cross threads on every
// path: freed by a running thread, by a thread that started after their owner exited, and
// after their owner's heap was reused by someone else.
//
// Every block carries its size and a tag at both ends; whichever thread frees it checks them.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "bench.h"

namespace {

constexpr const char* kSummary =
    "Generations of threads (mimalloc's mstress pattern): each keeps a set of live blocks,\n"
    "swaps blocks through a shared table with the others, and exits; the next generation\n"
    "frees what it left. Prints seconds and steps per second.";

using Block = bench::ListedBlock;
constexpr std::uint32_t kMinSize = sizeof(Block) + sizeof(std::uint32_t);
constexpr std::uint32_t kMaxSize = 64 * 1024;

// Mostly small, a tail of medium and a few big: 16-256 B 94%, up to 4 KiB 5.9%, up to 64 KiB 0.1%.
std::uint32_t draw_size(bench::SplitMix64& rng) {
  const std::uint32_t r = rng.below(1000);
  const std::uint32_t top = r == 0 ? kMaxSize : r < 60 ? 4096 : 256;
  const std::uint32_t size = 16 + rng.below(top - 16 + 1);
  return size < kMinSize ? kMinSize : size;
}

Block* make_block(bench::SplitMix64& rng) {
  const std::uint32_t size = draw_size(rng);
  return bench::new_listed("bench_mstress", size, static_cast<std::uint32_t>(rng.next()));
}

void check_and_free(Block* block) {
  if (block == nullptr) return;
  bench::check_listed("bench_mstress", block, kMinSize, kMaxSize);
  std::free(block);
}

struct Shared {
  explicit Shared(std::uint64_t transfers) : table(transfers) {
    for (auto& slot : table) slot.store(nullptr, std::memory_order_relaxed);
  }
  std::vector<std::atomic<Block*>> table;
  std::mutex leftover_lock;  // blocks a finished thread left for the next generation
  Block* leftover = nullptr;
};

void run_thread(std::uint64_t seed, std::uint64_t steps, std::uint64_t retained_count, Shared& shared) {
  bench::SplitMix64 rng(seed);
  // First, what the previous generation left: blocks of threads that have exited.
  Block* inherited = nullptr;
  {
    std::lock_guard<std::mutex> lock(shared.leftover_lock);
    inherited = shared.leftover;
    shared.leftover = nullptr;
  }
  while (inherited != nullptr) {
    Block* next = inherited->next;
    check_and_free(inherited);
    inherited = next;
  }

  std::vector<Block*> retained(retained_count, nullptr);
  for (std::uint64_t step = 0; step < steps; ++step) {
    const std::uint64_t r = rng.next();
    if ((r & 3) == 0) {  // trade: a fresh block in, someone else's block out
      const std::uint32_t slot = rng.below(static_cast<std::uint32_t>(shared.table.size()));
      check_and_free(shared.table[slot].exchange(make_block(rng), std::memory_order_acq_rel));
    } else {  // replace one of this thread's own blocks
      Block*& own = retained[rng.below(static_cast<std::uint32_t>(retained_count))];
      check_and_free(own);
      own = make_block(rng);
    }
  }

  // Half freed here, half left for the next generation.
  Block* left = nullptr;
  Block* left_tail = nullptr;
  for (std::uint64_t i = 0; i < retained_count; ++i) {
    Block* block = retained[i];
    if (block == nullptr) continue;
    if (i % 2 == 0) {
      check_and_free(block);
      continue;
    }
    bench::check_listed("bench_mstress", block, kMinSize, kMaxSize);
    block->next = left;
    left = block;
    if (left_tail == nullptr) left_tail = block;
  }
  if (left != nullptr) {
    std::lock_guard<std::mutex> lock(shared.leftover_lock);
    left_tail->next = shared.leftover;
    shared.leftover = left;
  }
}

}  // namespace

int main(int argc, char** argv) {
  // 8 threads x 10 generations x 400k steps: about 2 s under glibc on the 2-core dev machine.
  std::uint64_t threads = 8;
  std::uint64_t generations = 10;
  std::uint64_t steps = 400'000;
  std::uint64_t retained = 2'000;
  std::uint64_t transfers = 1'000;
  std::uint64_t seed = 1;
  bench::parse_flags(argc, argv, kSummary,
                     {{"threads", &threads, 1, "threads per generation"},
                      {"generations", &generations, 1, "generations of threads, one after another"},
                      {"steps", &steps, 1, "steps per thread (one malloc and one free each)"},
                      {"retained", &retained, 1, "live blocks each thread keeps"},
                      {"transfers", &transfers, 1, "slots of the shared table"},
                      {"seed", &seed, 0, "PRNG seed"}});
  if (retained > UINT32_MAX || transfers > UINT32_MAX) {
    std::fprintf(stderr, "bench_mstress: --retained and --transfers must be below 2^32\n");
    return 2;
  }

  Shared shared(transfers);
  bench::SplitMix64 seeder(seed);
  const std::uint64_t start_ns = bench::now_ns();
  for (std::uint64_t g = 0; g < generations; ++g) {
    std::vector<std::thread> workers;
    for (std::uint64_t t = 0; t < threads; ++t)
      workers.emplace_back(run_thread, seeder.next(), steps, retained, std::ref(shared));
    for (std::thread& worker : workers) worker.join();
  }
  const std::uint64_t end_ns = bench::now_ns();

  // Untimed: what is left in the table and the overflow list is checked and freed.
  for (auto& slot : shared.table) check_and_free(slot.exchange(nullptr));
  while (shared.leftover != nullptr) {
    Block* next = shared.leftover->next;
    check_and_free(shared.leftover);
    shared.leftover = next;
  }

  const double seconds = static_cast<double>(end_ns - start_ns) / 1e9;
  const double total_steps = static_cast<double>(threads * generations * steps);
  bench::Result("mstress")
      .add("threads", threads)
      .add("generations", generations)
      .add("steps", steps)
      .add("retained", retained)
      .add("transfers", transfers)
      .add("seed", seed)
      .add("seconds", seconds, 3)
      .add("steps_per_s", total_steps / seconds, 0)
      .print();
  return 0;
}
