// false_sharing: do threads' small objects end up on one cache line?
//
// Two threads writing to one 64-byte line, even to different bytes of it, pass
// the line back and forth between their cores, and every write waits for it:
// tens of nanoseconds instead of one. Whether two threads' objects share a line
// is the allocator's doing. Two patterns, after Hoard's cache-thrash and
// cache-scratch:
//   thrash   (active false sharing) each thread allocates its own objects at
//            the same time as the others. An allocator that serves all threads
//            from one heap interleaves them on the same lines.
//   scratch  (passive false sharing) the main thread allocates the objects,
//            interleaved (object j of thread 0, of thread 1, ..., so they do
//            share lines), and hands them out; each thread frees the ones it
//            got, then allocates its own. An allocator that gives a thread
//            back the blocks it just freed for another thread's heap (glibc's
//            tcache does) has it write on the lines it shares with the others.
// In both, each thread then, round after round, allocates --size objects of
// 8-64 B, increments a counter at the start of each, --iters times over, then
// checks and frees them.
//
// The increments are atomic (lock xadd, relaxed), like the reference counts
// and statistics counters that small objects carry. Plain load+store
// increments would show nothing: on the dev machine's Xeon, two threads doing
// volatile ++ on the same line ran at 0.3 ns a write, as fast as on lines of
// their own (store-to-load forwarding never asks the cache, and the store
// buffer drains in bursts), while atomic increments took 36 ns on a shared
// line against 5.5 ns on private ones.
//
// Besides the time per write, each pattern reports how many objects had their
// counter on a line another thread's counter was on (contended_pct), taken in
// the first round, when every thread's objects are live at once. That says
// directly what the timing only shows with enough cores.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench.h"

namespace {

constexpr const char* kSummary =
    "Threads allocate small objects (8-64 B) and write them hard; shared cache lines\n"
    "show as slower writes. Patterns: thrash (each thread allocates its own objects)\n"
    "and scratch (objects allocated by one thread, freed and reallocated by others).\n"
    "Prints ns per write (per thread) and the share of objects on a contended line.";

constexpr std::uint32_t kMinSize = 8;
constexpr std::uint32_t kMaxSize = 64;
constexpr std::uintptr_t kCacheLine = 64;

enum class Pattern { kThrash, kScratch };

struct Config {
  std::uint64_t threads;
  std::uint64_t objects;      // per thread
  std::uint64_t writes;       // per object per round
  std::uint64_t rounds;
  std::vector<std::uint32_t> sizes;  // object j has sizes[j] bytes, in every thread
};

std::uint64_t* checked_malloc(std::uint32_t size) {
  void* p = std::malloc(size);
  if (p == nullptr) {
    std::fprintf(stderr, "bench_false_sharing: malloc(%u) failed\n", size);
    std::abort();
  }
  return static_cast<std::uint64_t*>(p);
}

struct ThreadResult {
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  std::vector<std::uintptr_t> first_round_lines;  // the line of each counter
};

// handed: for scratch, the objects the main thread allocated for this thread;
// freed first, in the timed region. Empty for thrash.
void run_thread(const Config& config, std::vector<std::uint64_t*> handed,
                std::barrier<>& sync, ThreadResult& result) {
  // Made before the timed region: this thread's own bookkeeping.
  std::vector<std::uint64_t*> objects(config.objects);
  result.first_round_lines.resize(config.objects);
  sync.arrive_and_wait();

  result.start_ns = bench::now_ns();
  for (std::uint64_t* object : handed) {
    if (*object != 0) {
      std::fprintf(stderr, "bench_false_sharing: heap corruption: handed object %p holds %llu, "
                           "expected 0\n",
                   static_cast<void*>(object), static_cast<unsigned long long>(*object));
      std::abort();
    }
    std::free(object);
  }
  for (std::uint64_t round = 0; round < config.rounds; ++round) {
    for (std::uint64_t j = 0; j < config.objects; ++j) {
      objects[j] = checked_malloc(config.sizes[j]);
      *objects[j] = 0;
    }
    if (round == 0) {
      for (std::uint64_t j = 0; j < config.objects; ++j) {
        result.first_round_lines[j] = reinterpret_cast<std::uintptr_t>(objects[j]) / kCacheLine;
      }
      // Every thread's first-round objects are live at once from here on, so
      // a line they share is really written by two threads.
      sync.arrive_and_wait();
    }
    // Each increment needs the line in this core's cache, exclusive.
    for (std::uint64_t w = 0; w < config.writes; ++w) {
      for (std::uint64_t j = 0; j < config.objects; ++j) {
        std::atomic_ref<std::uint64_t>(*objects[j]).fetch_add(1, std::memory_order_relaxed);
      }
    }
    for (std::uint64_t j = 0; j < config.objects; ++j) {
      // An object that overlaps another object's counter counts both.
      if (*objects[j] != config.writes) {
        std::fprintf(stderr, "bench_false_sharing: heap corruption: object %p (size %u) "
                             "counted %llu writes, expected %llu\n",
                     static_cast<void*>(objects[j]), config.sizes[j],
                     static_cast<unsigned long long>(*objects[j]),
                     static_cast<unsigned long long>(config.writes));
        std::abort();
      }
      std::free(objects[j]);
    }
  }
  result.end_ns = bench::now_ns();
}

// Share of all threads' first-round objects whose counter line is also the
// counter line of another thread's object.
double contended_pct(const std::vector<ThreadResult>& results) {
  // line -> the one thread writing it, or -1 once two threads do.
  std::unordered_map<std::uintptr_t, std::int64_t> writer;
  for (std::size_t t = 0; t < results.size(); ++t) {
    for (std::uintptr_t line : results[t].first_round_lines) {
      auto [it, inserted] = writer.try_emplace(line, static_cast<std::int64_t>(t));
      if (!inserted && it->second != static_cast<std::int64_t>(t)) it->second = -1;
    }
  }
  std::uint64_t contended = 0;
  std::uint64_t total = 0;
  for (const ThreadResult& result : results) {
    for (std::uintptr_t line : result.first_round_lines) {
      contended += writer[line] == -1;
      ++total;
    }
  }
  return total == 0 ? 0.0 : 100.0 * static_cast<double>(contended) / static_cast<double>(total);
}

void run_pattern(Pattern pattern, const Config& config) {
  // scratch: the main thread allocates every thread's objects, interleaved.
  std::vector<std::vector<std::uint64_t*>> handed(config.threads);
  if (pattern == Pattern::kScratch) {
    for (auto& list : handed) list.resize(config.objects);
    for (std::uint64_t j = 0; j < config.objects; ++j) {
      for (std::uint64_t t = 0; t < config.threads; ++t) {
        handed[t][j] = checked_malloc(config.sizes[j]);
        *handed[t][j] = 0;
      }
    }
  }

  std::barrier<> sync(static_cast<std::ptrdiff_t>(config.threads));
  std::vector<ThreadResult> results(config.threads);
  std::vector<std::thread> workers;
  for (std::uint64_t t = 0; t < config.threads; ++t) {
    workers.emplace_back(run_thread, std::cref(config), std::move(handed[t]), std::ref(sync),
                         std::ref(results[t]));
  }
  for (std::thread& worker : workers) worker.join();

  std::uint64_t start_ns = results[0].start_ns;
  std::uint64_t end_ns = results[0].end_ns;
  for (const ThreadResult& result : results) {
    start_ns = std::min(start_ns, result.start_ns);
    end_ns = std::max(end_ns, result.end_ns);
  }
  double wall_ns = static_cast<double>(end_ns - start_ns);
  double writes_per_thread = static_cast<double>(config.rounds) *
                             static_cast<double>(config.writes) *
                             static_cast<double>(config.objects);

  bench::Result("false_sharing")
      .add("pattern", pattern == Pattern::kThrash ? "thrash" : "scratch")
      .add("threads", config.threads)
      .add("objects", config.objects)
      .add("writes", config.writes)
      .add("rounds", config.rounds)
      .add("seconds", wall_ns / 1e9, 3)
      .add("ns_per_write", wall_ns / writes_per_thread, 3)
      .add("contended_pct", contended_pct(results), 1)
      .print();
}

}  // namespace

int main(int argc, char** argv) {
  // 2 threads (one per core of the dev machine, so the lines do move between
  // cores), 128M writes each per pattern: about 1.7 s under glibc, of which
  // 1.1 s is scratch, where glibc's tcache leaves 8-9% of the objects on
  // contended lines; about 1.2 s without false sharing.
  std::uint64_t threads = 2;
  std::uint64_t objects = 64;
  std::uint64_t writes = 2'000;
  std::uint64_t rounds = 1'000;
  std::uint64_t variant = 0;
  std::uint64_t seed = 1;
  bench::parse_flags(argc, argv, kSummary,
                     {{"threads", &threads, 1, "writer threads"},
                      {"size", &objects, 1, "objects per thread"},
                      {"iters", &writes, 1, "writes to each object per round"},
                      {"rounds", &rounds, 1, "rounds: allocate, write, check, free"},
                      {"variant", &variant, 0, "1: thrash only, 2: scratch only, 0: both"},
                      {"seed", &seed, 0, "PRNG seed (object sizes)"}});
  if (variant > 2) {
    std::fprintf(stderr, "bench_false_sharing: --variant is 0, 1 or 2\n");
    return 2;
  }

  bench::SplitMix64 rng(seed);
  Config config{threads, objects, writes, rounds, std::vector<std::uint32_t>(objects)};
  for (std::uint32_t& size : config.sizes) size = kMinSize + rng.below(kMaxSize - kMinSize + 1);

  if (variant != 2) run_pattern(Pattern::kThrash, config);
  if (variant != 1) run_pattern(Pattern::kScratch, config);
  return 0;
}
