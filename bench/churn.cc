// churn: the small-object workload.
//
// A copy keeps a live set of slots. Each step picks a random slot: a full slot
// has its block checked and freed, an empty one gets a new block. The set so
// hovers around half full and blocks die at random ages, as in the heap of a
// long-running program, which is harder on an allocator than LIFO reuse.
//
// --threads N runs N independent copies, each with its own slots and seed and
// nothing shared, to see how per-thread caches scale. With one copy no thread
// is created at all: glibc's malloc skips its locks in a single-threaded
// process, and that is the case a single-threaded program sees.
#include <algorithm>
#include <barrier>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "bench.h"

namespace {

constexpr const char* kSummary =
    "Random malloc/free over a live set of small objects (16 B - 8 KiB).\n"
    "One op is one malloc or one free; ns_per_op is per copy (wall time / iters).";

struct Slot {
  unsigned char* block = nullptr;
  std::uint32_t size = 0;
  std::uint32_t tag = 0;  // written at both ends of the block, checked on free
};

// Mostly 16-256 B, a tail up to 1 KiB and a rare block of a few KiB, sizes
// not rounded to anything, so every size class and its rounding is hit.
// Mean ~210 B.
std::uint32_t draw_size(bench::SplitMix64& rng) {
  std::uint32_t pick = rng.below(1000);
  if (pick < 550) return 16 + rng.below(64 - 16 + 1);       // 55%: 16-64 B
  if (pick < 870) return 65 + rng.below(256 - 65 + 1);      // 32%: 65-256 B
  if (pick < 990) return 257 + rng.below(1024 - 257 + 1);   // 12%: 257 B-1 KiB
  return 1025 + rng.below(8192 - 1025 + 1);                 //  1%: 1-8 KiB
}

void write_tag(const Slot& slot) { bench::write_tags(slot.block, slot.size, slot.tag); }

void check_tag(const Slot& slot) { bench::check_tags("bench_churn", slot.block, slot.size, slot.tag); }

struct CopyResult {
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  std::uint64_t peak_live_bytes = 0;
};

void run_copy(std::uint64_t seed, std::uint64_t iters, std::uint64_t slot_count,
              std::barrier<>& start_line, CopyResult& result) {
  bench::SplitMix64 rng(seed);
  std::vector<Slot> slots(slot_count);
  std::uint64_t live_bytes = 0;
  std::uint64_t peak_live_bytes = 0;

  start_line.arrive_and_wait();
  result.start_ns = bench::now_ns();
  for (std::uint64_t i = 0; i < iters; ++i) {
    std::uint64_t r = rng.next();
    Slot& slot = slots[((r >> 32) * slot_count) >> 32];
    if (slot.block != nullptr) {
      check_tag(slot);
      std::free(slot.block);
      live_bytes -= slot.size;
      slot.block = nullptr;
    } else {
      slot.size = draw_size(rng);
      slot.block = static_cast<unsigned char*>(std::malloc(slot.size));
      if (slot.block == nullptr) {
        std::fprintf(stderr, "bench_churn: malloc(%u) failed\n", slot.size);
        std::abort();
      }
      slot.tag = static_cast<std::uint32_t>(r);
      write_tag(slot);
      live_bytes += slot.size;
      peak_live_bytes = std::max(peak_live_bytes, live_bytes);
    }
  }
  result.end_ns = bench::now_ns();
  result.peak_live_bytes = peak_live_bytes;

  // Untimed: the blocks still live are checked too, then released.
  for (Slot& slot : slots) {
    if (slot.block == nullptr) continue;
    check_tag(slot);
    std::free(slot.block);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // 40M ops take about 1.4 s under glibc on the 2-core dev machine.
  std::uint64_t iters = 40'000'000;
  std::uint64_t threads = 1;
  std::uint64_t slot_count = 100'000;
  std::uint64_t seed = 1;
  bench::parse_flags(argc, argv, kSummary,
                     {{"iters", &iters, 1, "ops per copy"},
                      {"threads", &threads, 1, "independent copies, one thread each"},
                      {"size", &slot_count, 1, "live-set slots per copy"},
                      {"seed", &seed, 0, "PRNG seed"}});
  if (slot_count > UINT32_MAX) {
    std::fprintf(stderr, "bench_churn: --size must be below 2^32\n");
    return 2;
  }

  // Each copy gets its own seed, drawn from --seed, so copies do not move in
  // lockstep and the whole run is still reproducible.
  bench::SplitMix64 seeder(seed);
  std::vector<std::uint64_t> copy_seeds(threads);
  for (std::uint64_t& copy_seed : copy_seeds) copy_seed = seeder.next();

  std::barrier<> start_line(static_cast<std::ptrdiff_t>(threads));
  std::vector<CopyResult> results(threads);
  std::vector<std::thread> workers;
  for (std::uint64_t copy = 1; copy < threads; ++copy) {
    workers.emplace_back(run_copy, copy_seeds[copy], iters, slot_count, std::ref(start_line),
                         std::ref(results[copy]));
  }
  run_copy(copy_seeds[0], iters, slot_count, start_line, results[0]);
  for (std::thread& worker : workers) worker.join();

  std::uint64_t start_ns = results[0].start_ns;
  std::uint64_t end_ns = results[0].end_ns;
  // Summed over the copies, whose peaks need not coincide: an upper bound of
  // the bytes live at once, to hold peak RSS against.
  std::uint64_t peak_live_bytes = 0;
  for (const CopyResult& result : results) {
    start_ns = std::min(start_ns, result.start_ns);
    end_ns = std::max(end_ns, result.end_ns);
    peak_live_bytes += result.peak_live_bytes;
  }
  double wall_ns = static_cast<double>(end_ns - start_ns);
  double total_ops = static_cast<double>(iters) * static_cast<double>(threads);

  bench::Result("churn")
      .add("threads", threads)
      .add("iters", iters)
      .add("slots", slot_count)
      .add("seed", seed)
      .add("seconds", wall_ns / 1e9, 3)
      .add("ops_per_s", total_ops / (wall_ns / 1e9), 0)
      .add("ns_per_op", wall_ns / static_cast<double>(iters), 2)
      .add("peak_live_kib", peak_live_bytes / 1024)
      .print();
  return 0;
}
