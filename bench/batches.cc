// batches: glibc's simple malloc benchmark (benchtests/bench-malloc-simple.c) in shape.
//
// For each batch length (25, 100, 400, 1600 blocks) and each block size (16 B to 4 KiB,
// powers of two), a thread allocates a batch of blocks, writes the first byte of each, and
// frees them in allocation order, over and over. Short batches live in the thread's caches;
// long ones of large blocks spill past them to the slabs' bitmaps and the pool regions, so the
// paths behind the caches set the time. Prints ns per malloc+free pair for each batch length
// and size, and the total.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench.h"

namespace {

constexpr const char* kSummary =
    "glibc's bench-malloc-simple shape: batches of 25, 100, 400 and 1600 blocks of 16 B - 4 KiB,\n"
    "allocated, first byte written, freed in order. Prints ns per malloc+free pair per batch\n"
    "length and size, and the total seconds.";

constexpr std::uint64_t kBatchLengths[] = {25, 100, 400, 1600};
constexpr std::uint64_t kSizes[] = {16, 32, 64, 128, 256, 512, 1024, 2048, 4096};

void run(std::vector<void*>& blocks, std::uint64_t size, std::uint64_t rounds) {
  for (std::uint64_t round = 0; round < rounds; ++round) {
    for (void*& block : blocks) {
      block = std::malloc(size);
      if (block == nullptr) {
        std::fprintf(stderr, "bench_batches: malloc(%llu) failed\n", static_cast<unsigned long long>(size));
        std::abort();
      }
      *static_cast<volatile unsigned char*>(block) = 1;  // a program uses what it asks for
    }
    for (void* block : blocks) std::free(block);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Pairs per (length, size) measurement: about 0.5 s in all under glibc on the dev machine.
  std::uint64_t pairs = 400'000;
  bench::parse_flags(argc, argv, kSummary,
                     {{"iters", &pairs, 1, "malloc+free pairs per batch length and size"}});

  const std::uint64_t total_start_ns = bench::now_ns();
  for (std::uint64_t length : kBatchLengths) {
    std::vector<void*> blocks(length);
    for (std::uint64_t size : kSizes) {
      const std::uint64_t rounds = pairs / length > 0 ? pairs / length : 1;
      run(blocks, size, 1);  // untimed: first touch of the pages, cache growth
      const std::uint64_t start_ns = bench::now_ns();
      run(blocks, size, rounds);
      const std::uint64_t elapsed_ns = bench::now_ns() - start_ns;
      bench::Result("batches")
          .add("length", length)
          .add("size", size)
          .add("ns_per_pair", static_cast<double>(elapsed_ns) / static_cast<double>(rounds * length), 2)
          .print();
    }
  }
  bench::Result("batches")
      .add("seconds", static_cast<double>(bench::now_ns() - total_start_ns) / 1e9, 3)
      .print();
  return 0;
}
