// fastpath: the cost of malloc+free itself, with nothing else in the loop.
//
// Two patterns per size:
//   pair   malloc then free at once: the best case, one block bouncing
//          through the thread's cache.
//   batch  1000 mallocs, then the 1000 frees in allocation order: the cache
//          overflows and refills, so the paths behind it run too.
// Blocks are not written to: this measures the allocator's own work, and the
// page faults it causes by releasing and retaking memory.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench.h"

namespace {

constexpr const char* kSummary =
    "malloc+free pairs and batches of 1000 for sizes 16, 64, 256, 1024, 4096, 32768.\n"
    "Prints ns per malloc+free pair for each size and pattern.";

constexpr std::uint64_t kDefaultSizes[] = {16, 64, 256, 1024, 4096, 32768};
constexpr std::uint64_t kBatch = 1000;

// Sizes above 1 KiB run fewer pairs, as many bytes in all as a 1 KiB run.
// Their batches cost glibc about 1 us a pair (it trims its heap after each
// batch and faults it back in on the next), and at full count they alone would
// take seconds. ns_per_pair stays comparable across sizes.
constexpr std::uint64_t kFullCountUpTo = 1024;

std::uint64_t pairs_for(std::uint64_t size, std::uint64_t pairs) {
  if (size <= kFullCountUpTo) return pairs;
  std::uint64_t scaled = pairs * kFullCountUpTo / size;
  return scaled > kBatch ? scaled : kBatch;
}

void* checked_malloc(std::uint64_t size) {
  void* p = std::malloc(size);
  if (p == nullptr) {
    std::fprintf(stderr, "bench_fastpath: malloc(%llu) failed\n",
                 static_cast<unsigned long long>(size));
    std::abort();
  }
  bench::escape(p);
  return p;
}

void run_pairs(std::uint64_t size, std::uint64_t pairs) {
  for (std::uint64_t i = 0; i < pairs; ++i) std::free(checked_malloc(size));
}

void run_batches(std::uint64_t size, std::uint64_t rounds, std::vector<void*>& blocks) {
  for (std::uint64_t round = 0; round < rounds; ++round) {
    for (void*& block : blocks) block = checked_malloc(size);
    for (void* block : blocks) std::free(block);
  }
}

void report(const char* pattern, std::uint64_t size, std::uint64_t pairs,
            std::uint64_t elapsed_ns) {
  bench::Result("fastpath")
      .add("pattern", pattern)
      .add("size", size)
      .add("pairs", pairs)
      .add("ns_per_pair", static_cast<double>(elapsed_ns) / static_cast<double>(pairs), 2)
      .print();
}

void measure_size(std::uint64_t size, std::uint64_t pairs, std::vector<void*>& blocks) {
  // One untimed batch first: the first touch of fresh pages and the growth
  // of the allocator's caches are not what this benchmark is about.
  run_batches(size, 1, blocks);

  std::uint64_t start_ns = bench::now_ns();
  run_pairs(size, pairs);
  report("pair", size, pairs, bench::now_ns() - start_ns);

  // Whole batches only, at least one.
  std::uint64_t rounds = pairs / kBatch > 0 ? pairs / kBatch : 1;
  start_ns = bench::now_ns();
  run_batches(size, rounds, blocks);
  report("batch", size, rounds * kBatch, bench::now_ns() - start_ns);
}

}  // namespace

int main(int argc, char** argv) {
  // 2M pairs per measurement: about 1.2 s in all under glibc on the 2-core
  // dev machine.
  std::uint64_t pairs = 2'000'000;
  std::uint64_t only_size = 0;
  bench::parse_flags(argc, argv, kSummary,
                     {{"iters", &pairs, 1, "malloc+free pairs per size and pattern (fewer above 1 KiB)"},
                      {"size", &only_size, 0, "measure this one size in bytes (0: all)"}});

  std::vector<void*> blocks(kBatch);
  if (only_size != 0) {
    measure_size(only_size, pairs_for(only_size, pairs), blocks);
  } else {
    for (std::uint64_t size : kDefaultSizes) measure_size(size, pairs_for(size, pairs), blocks);
  }
  return 0;
}
