// server: larson-style, blocks allocated on one thread and freed on another.
//
// Each thread holds an array of slots, every slot a live block of a random size
// (16 B - 1 KiB). One op frees a random slot's block and puts a new block in
// its place. After every round of --iters ops the arrays move on by one thread
// (a barrier, then thread t takes the array thread t+1 had), so a block is
// usually freed by a thread other than the one that allocated it: a server's
// request is parsed on one thread, handled and freed on another. The share of
// frees that hit a block another thread allocated is counted and reported
// (remote_free_pct): about 74% with the defaults.
//
// Each array carries its own PRNG, so the work an array sees does not depend
// on which thread holds it when: runs under different allocators do identical
// work whatever the scheduling.
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
    "Larson-style server: threads replace random blocks (16 B - 1 KiB) in arrays\n"
    "that pass to the next thread after every round, so most frees are remote.\n"
    "One op is one free plus one malloc; ns_per_op is wall time / all threads' ops.";

constexpr std::uint32_t kMinSize = 16;
constexpr std::uint32_t kMaxSize = 1024;

struct Slot {
  unsigned char* block = nullptr;
  std::uint32_t size = 0;
  std::uint32_t tag = 0;    // written at both ends of the block, checked on free
  std::uint32_t owner = 0;  // the thread that allocated the block
};

// One thread's working set; it moves from thread to thread between rounds.
struct alignas(64) Array {
  explicit Array(std::uint64_t seed, std::uint64_t slot_count) : rng(seed), slots(slot_count) {}
  bench::SplitMix64 rng;
  std::vector<Slot> slots;
};

// Uniform sizes, as in larson: every small size class is hit alike.
std::uint32_t draw_size(bench::SplitMix64& rng) {
  return kMinSize + rng.below(kMaxSize - kMinSize + 1);
}

void write_tag(const Slot& slot) { bench::write_tags(slot.block, slot.size, slot.tag); }

void check_tag(const Slot& slot) { bench::check_tags("bench_server", slot.block, slot.size, slot.tag); }

void fill(Slot& slot, bench::SplitMix64& rng, std::uint32_t owner) {
  std::uint64_t r = rng.next();
  slot.size = draw_size(rng);
  slot.block = static_cast<unsigned char*>(std::malloc(slot.size));
  if (slot.block == nullptr) {
    std::fprintf(stderr, "bench_server: malloc(%u) failed\n", slot.size);
    std::abort();
  }
  slot.tag = static_cast<std::uint32_t>(r);
  slot.owner = owner;
  write_tag(slot);
}

// Returns how many of the frees were remote.
std::uint64_t run_ops(Array& array, std::uint64_t ops, std::uint32_t self) {
  const std::uint64_t slot_count = array.slots.size();
  std::uint64_t remote_frees = 0;
  for (std::uint64_t i = 0; i < ops; ++i) {
    Slot& slot = array.slots[((array.rng.next() >> 32) * slot_count) >> 32];
    check_tag(slot);
    remote_frees += slot.owner != self;
    std::free(slot.block);
    fill(slot, array.rng, self);
  }
  return remote_frees;
}

struct ThreadResult {
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  std::uint64_t remote_frees = 0;
};

void run_thread(std::uint64_t index, std::vector<Array>& arrays, std::uint64_t rounds,
                std::uint64_t ops_per_round, std::barrier<>& round_end, ThreadResult& result) {
  const std::uint64_t thread_count = arrays.size();
  const auto self = static_cast<std::uint32_t>(index);
  // Untimed: thread t fills array t, and works first on array t+1, so the
  // first round too frees blocks that another thread allocated.
  for (Slot& slot : arrays[index].slots) fill(slot, arrays[index].rng, self);
  round_end.arrive_and_wait();

  std::uint64_t remote_frees = 0;
  result.start_ns = bench::now_ns();
  for (std::uint64_t round = 0; round < rounds; ++round) {
    // Round r: thread t works on array (t + r + 1) mod N; the barrier orders
    // the previous holder's writes to the array before this thread's reads.
    remote_frees += run_ops(arrays[(index + round + 1) % thread_count], ops_per_round, self);
    round_end.arrive_and_wait();
  }
  result.end_ns = bench::now_ns();
  result.remote_frees = remote_frees;
}

}  // namespace

int main(int argc, char** argv) {
  // 4 threads x 5M ops: about 2 s under glibc on the 2-core dev machine.
  // Twice as many threads as cores, as on a loaded server: a thread can be
  // preempted inside malloc.
  std::uint64_t threads = 4;
  std::uint64_t slot_count = 10'000;
  std::uint64_t ops_per_round = 2'500;
  std::uint64_t rounds = 2'000;
  std::uint64_t seed = 1;
  bench::parse_flags(argc, argv, kSummary,
                     {{"threads", &threads, 1, "threads, and arrays of slots"},
                      {"size", &slot_count, 1, "slots per array (live blocks per thread)"},
                      {"iters", &ops_per_round, 1, "ops per thread per round"},
                      {"rounds", &rounds, 1, "rounds; the arrays move on after each"},
                      {"seed", &seed, 0, "PRNG seed"}});
  if (slot_count > UINT32_MAX || threads > UINT32_MAX) {
    std::fprintf(stderr, "bench_server: --size and --threads must be below 2^32\n");
    return 2;
  }

  bench::SplitMix64 seeder(seed);
  std::vector<Array> arrays;
  arrays.reserve(threads);
  for (std::uint64_t i = 0; i < threads; ++i) arrays.emplace_back(seeder.next(), slot_count);

  std::barrier<> round_end(static_cast<std::ptrdiff_t>(threads));
  std::vector<ThreadResult> results(threads);
  std::vector<std::thread> workers;
  for (std::uint64_t i = 1; i < threads; ++i) {
    workers.emplace_back(run_thread, i, std::ref(arrays), rounds, ops_per_round,
                         std::ref(round_end), std::ref(results[i]));
  }
  run_thread(0, arrays, rounds, ops_per_round, round_end, results[0]);
  for (std::thread& worker : workers) worker.join();

  // Untimed: the blocks still live are checked too, then released.
  for (Array& array : arrays) {
    for (Slot& slot : array.slots) {
      check_tag(slot);
      std::free(slot.block);
    }
  }

  std::uint64_t start_ns = results[0].start_ns;
  std::uint64_t end_ns = results[0].end_ns;
  std::uint64_t remote_frees = 0;
  for (const ThreadResult& result : results) {
    start_ns = std::min(start_ns, result.start_ns);
    end_ns = std::max(end_ns, result.end_ns);
    remote_frees += result.remote_frees;
  }
  double wall_ns = static_cast<double>(end_ns - start_ns);
  double total_ops = static_cast<double>(threads) * static_cast<double>(rounds) *
                     static_cast<double>(ops_per_round);

  bench::Result("server")
      .add("threads", threads)
      .add("slots", slot_count)
      .add("iters", ops_per_round)
      .add("rounds", rounds)
      .add("seed", seed)
      .add("seconds", wall_ns / 1e9, 3)
      .add("ops_per_s", total_ops / (wall_ns / 1e9), 0)
      .add("ns_per_op", wall_ns / total_ops, 2)
      .add("remote_free_pct", 100.0 * static_cast<double>(remote_frees) / total_ops, 1)
      .print();
  return 0;
}
