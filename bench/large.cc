// large: big blocks, 64 KiB - 32 MiB, through the allocator's large path.
//
// A live set of --size slots. Each op picks a random slot, checks and frees
// its block if it has one, allocates a new block of a log-uniform random size
// (as many blocks of 64-128 KiB as of 16-32 MiB) and touches it: one byte
// written per page, as a program writing into a buffer it asked for would
// fault every page in. The live set keeps some big blocks in use the whole
// time, so the allocator cannot hand back the same block each op, and the
// heap stays fragmented between blocks of very different sizes.
//
// What is measured is mostly the kernel: mmap/munmap, page faults and zeroing
// of fresh pages. An allocator that keeps freed large blocks mapped and reuses
// them saves the faults; one that unmaps every free pays them each time but
// keeps its RSS down. Peak RSS (scripts/ab) shows the other side of the trade.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <vector>

#include "bench.h"

namespace {

constexpr const char* kSummary =
    "Large blocks (log-uniform 64 KiB - 32 MiB): free a random slot of a small live\n"
    "set, allocate a new block, write one byte per page. Prints ns per op\n"
    "(free + malloc + touch) and the pages touched per op.";

struct Slot {
  unsigned char* block = nullptr;
  std::uint64_t size = 0;
  std::uint8_t tag = 0;
};

// The byte written at the start of page k of a block: differs from page to
// page and from block to block, so a block that overlaps another, or whose
// pages were dropped (MADV_DONTNEED'd to zeros) while it was live, shows.
std::uint8_t page_byte(const Slot& slot, std::uint64_t k) {
  return static_cast<std::uint8_t>(slot.tag + k * 7 + 1);
}

// Returns the number of pages touched.
std::uint64_t touch(const Slot& slot, std::uint64_t page_size) {
  std::uint64_t k = 0;
  for (std::uint64_t offset = 0; offset < slot.size; offset += page_size, ++k) {
    slot.block[offset] = page_byte(slot, k);
  }
  return k;
}

void check(const Slot& slot, std::uint64_t page_size) {
  std::uint64_t k = 0;
  for (std::uint64_t offset = 0; offset < slot.size; offset += page_size, ++k) {
    if (slot.block[offset] != page_byte(slot, k)) {
      std::fprintf(stderr,
                   "bench_large: heap corruption: block %p (size %llu), offset %llu holds %02x, "
                   "expected %02x\n",
                   static_cast<void*>(slot.block), static_cast<unsigned long long>(slot.size),
                   static_cast<unsigned long long>(offset), slot.block[offset],
                   page_byte(slot, k));
      std::abort();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  // 4000 ops (mean block ~5 MiB, ~1300 pages): about 1.5 s under glibc on the
  // 2-core dev machine.
  std::uint64_t ops = 4'000;
  std::uint64_t slot_count = 8;
  std::uint64_t min_kib = 64;
  std::uint64_t max_kib = 32 * 1024;
  std::uint64_t seed = 1;
  bench::parse_flags(argc, argv, kSummary,
                     {{"iters", &ops, 1, "ops: free a slot's block, allocate and touch a new one"},
                      {"size", &slot_count, 1, "live-set slots"},
                      {"min-kib", &min_kib, 1, "smallest block, KiB"},
                      {"max-kib", &max_kib, 1, "largest block, KiB"},
                      {"seed", &seed, 0, "PRNG seed"}});
  if (max_kib < min_kib) {
    std::fprintf(stderr, "bench_large: --max-kib is below --min-kib\n");
    return 2;
  }

  const long page_size_or_error = sysconf(_SC_PAGESIZE);
  if (page_size_or_error <= 0) {
    std::fprintf(stderr, "bench_large: sysconf(_SC_PAGESIZE) failed\n");
    return 1;
  }
  const auto page_size = static_cast<std::uint64_t>(page_size_or_error);
  const double min_bytes = static_cast<double>(min_kib) * 1024;
  const double log_ratio = std::log(static_cast<double>(max_kib) / static_cast<double>(min_kib));

  bench::SplitMix64 rng(seed);
  std::vector<Slot> slots(slot_count);
  std::uint64_t pages = 0;
  std::uint64_t bytes = 0;

  std::uint64_t start_ns = bench::now_ns();
  for (std::uint64_t i = 0; i < ops; ++i) {
    std::uint64_t r = rng.next();
    Slot& slot = slots[((r >> 32) * slot_count) >> 32];
    if (slot.block != nullptr) {
      check(slot, page_size);
      std::free(slot.block);
    }
    // Log-uniform in [min, max]: 53 random bits make u uniform in [0, 1).
    double u = static_cast<double>(rng.next() >> 11) * 0x1.0p-53;
    slot.size = static_cast<std::uint64_t>(min_bytes * std::exp(u * log_ratio));
    slot.block = static_cast<unsigned char*>(std::malloc(slot.size));
    if (slot.block == nullptr) {
      std::fprintf(stderr, "bench_large: malloc(%llu) failed\n",
                   static_cast<unsigned long long>(slot.size));
      std::abort();
    }
    slot.tag = static_cast<std::uint8_t>(r);
    pages += touch(slot, page_size);
    bytes += slot.size;
  }
  double wall_ns = static_cast<double>(bench::now_ns() - start_ns);

  // Untimed: the blocks still live are checked too, then released.
  for (Slot& slot : slots) {
    if (slot.block == nullptr) continue;
    check(slot, page_size);
    std::free(slot.block);
  }

  bench::Result("large")
      .add("iters", ops)
      .add("slots", slot_count)
      .add("min_kib", min_kib)
      .add("max_kib", max_kib)
      .add("seed", seed)
      .add("seconds", wall_ns / 1e9, 3)
      .add("ns_per_op", wall_ns / static_cast<double>(ops), 0)
      .add("pages_per_op", static_cast<double>(pages) / static_cast<double>(ops), 0)
      .add("mean_kib", static_cast<double>(bytes) / 1024 / static_cast<double>(ops), 0)
      .print();
  return 0;
}
