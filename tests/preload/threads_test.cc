// Multi-threaded use of the preloaded allocator: cross-thread frees and
// reallocs, many short-lived threads whose blocks outlive them, concurrent
// allocation with overlap checks, and allocation from thread-exit destructors.
#include <doctest/doctest.h>

#include <malloc.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/preload/preload.h"

namespace {

// Small deterministic PRNG (splitmix64), one per thread.
struct Rng {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t bound) { return static_cast<std::size_t>(next() % bound); }
};

// Mostly small and pool sizes, occasionally a large pool block or a glibc one.
std::size_t random_size(Rng& rng) {
  const std::size_t roll = rng.below(1000);
  if (roll < 700) return 1 + rng.below(1024);
  if (roll < 980) return 1025 + rng.below(8192);
  if (roll < 997) return 1025 + rng.below(preload::max_core_size() - 1024);
  return preload::max_core_size() + 1 + rng.below(65536);
}

unsigned char pattern_byte(std::size_t i, std::uint32_t seed) {
  return static_cast<unsigned char>((i * 167u) ^ (i >> 10) ^ seed ^ (seed >> 8));
}

void fill_pattern(void* p, std::size_t n, std::uint32_t seed) {
  auto* bytes = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) bytes[i] = pattern_byte(i, seed);
}

bool pattern_intact(const void* p, std::size_t n, std::uint32_t seed) {
  const auto* bytes = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (bytes[i] != pattern_byte(i, seed)) return false;
  return true;
}

struct Block {
  void* p;
  std::size_t size;
  std::uint32_t seed;
};

Block make_block(Rng& rng, std::uint32_t seed) {
  const std::size_t n = random_size(rng);
  void* p = std::malloc(n);
  if (p == nullptr) return {nullptr, n, seed};
  fill_pattern(p, n, seed);
  return {p, n, seed};
}

// A bounded blocking queue: keeps producers from running far ahead of the
// consumers (and the memory in flight small).
class BlockQueue {
 public:
  void push(Block b) {
    std::unique_lock lock(mutex_);
    not_full_.wait(lock, [&] { return items_.size() < kCapacity; });
    items_.push_back(b);
    not_empty_.notify_one();
  }
  // Returns false once the queue is closed and drained.
  bool pop(Block& out) {
    std::unique_lock lock(mutex_);
    not_empty_.wait(lock, [&] { return !items_.empty() || closed_; });
    if (items_.empty()) return false;
    out = items_.front();
    items_.pop_front();
    not_full_.notify_one();
    return true;
  }
  void close() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    not_empty_.notify_all();
  }

 private:
  static constexpr std::size_t kCapacity = 512;
  std::mutex mutex_;
  std::condition_variable not_empty_, not_full_;
  std::deque<Block> items_;
  bool closed_ = false;
};

}  // namespace

TEST_CASE("blocks allocated in one thread are checked, reallocated and freed in another") {
  constexpr int kPairs = 3;
  constexpr int kBlocksPerProducer = 15000;
  BlockQueue queue;
  std::atomic<long> allocation_failures{0}, corrupt_blocks{0}, realloc_failures{0}, freed{0};

  std::vector<std::thread> producers, consumers;
  for (int t = 0; t < kPairs; ++t) {
    producers.emplace_back([&, t] {
      Rng rng{static_cast<std::uint64_t>(t) + 1};
      for (int i = 0; i < kBlocksPerProducer; ++i) {
        Block b = make_block(rng, static_cast<std::uint32_t>(t * kBlocksPerProducer + i));
        if (b.p == nullptr) {
          ++allocation_failures;
          continue;
        }
        queue.push(b);
      }
    });
    consumers.emplace_back([&, t] {
      Rng rng{static_cast<std::uint64_t>(t) + 1000};
      Block b;
      while (queue.pop(b)) {
        if (!pattern_intact(b.p, b.size, b.seed)) ++corrupt_blocks;
        // Every 8th block is reallocated by the foreign thread first.
        if (rng.below(8) == 0) {
          const std::size_t new_size = random_size(rng);
          void* q = std::realloc(b.p, new_size);
          if (q == nullptr) {
            ++realloc_failures;
          } else {
            if (!pattern_intact(q, std::min(b.size, new_size), b.seed)) ++corrupt_blocks;
            b.p = q;
          }
        }
        std::free(b.p);
        ++freed;
      }
    });
  }
  for (auto& t : producers) t.join();
  queue.close();
  for (auto& t : consumers) t.join();

  CHECK(allocation_failures == 0);
  CHECK(realloc_failures == 0);
  CHECK(corrupt_blocks == 0);
  CHECK(freed == kPairs * kBlocksPerProducer);
}

TEST_CASE("blocks freed back and forth between two threads keep their contents") {
  // Ping-pong: each side frees what the other allocated, so both threads'
  // caches continually receive foreign blocks of the same size classes.
  BlockQueue to_b, to_a;
  std::atomic<long> corrupt{0}, failures{0};
  constexpr int kRounds = 20000;
  auto side = [&](BlockQueue& inbox, BlockQueue& outbox, std::uint64_t seed) {
    Rng rng{seed};
    for (int i = 0; i < kRounds; ++i) {
      Block mine = make_block(rng, static_cast<std::uint32_t>(seed * 7919 + i));
      if (mine.p == nullptr) {
        ++failures;
        mine = Block{std::malloc(1), 1, 0};
        fill_pattern(mine.p, 1, 0);
      }
      outbox.push(mine);
      Block theirs;
      if (!inbox.pop(theirs)) break;
      if (!pattern_intact(theirs.p, theirs.size, theirs.seed)) ++corrupt;
      std::free(theirs.p);
    }
  };
  std::thread a(side, std::ref(to_a), std::ref(to_b), 1);
  std::thread b(side, std::ref(to_b), std::ref(to_a), 2);
  a.join();
  b.join();
  CHECK(failures == 0);
  CHECK(corrupt == 0);
}

TEST_CASE("200 short-lived threads: blocks that outlive their thread stay intact and freeable") {
  constexpr int kThreads = 200;
  constexpr int kConcurrent = 8;
  constexpr int kBlocksPerThread = 150;
  std::mutex survivors_mutex;
  std::vector<Block> survivors;  // blocks whose allocating thread has exited
  std::atomic<long> failures{0}, corrupt{0};

  auto worker = [&](int id) {
    Rng rng{static_cast<std::uint64_t>(id) * 31 + 5};
    std::vector<Block> mine;
    for (int i = 0; i < kBlocksPerThread; ++i) {
      Block b = make_block(rng, static_cast<std::uint32_t>(id * 1000 + i));
      if (b.p == nullptr) {
        ++failures;
        continue;
      }
      mine.push_back(b);
    }
    // Some C++ allocations too (operator new/delete from many threads).
    std::vector<std::string> strings;
    for (int i = 0; i < 50; ++i) strings.push_back(std::string(20 + i * 7, 'a' + i % 26));

    // Free about two thirds in random order; every 10th thread frees nothing.
    // The rest is handed to the main thread and freed after this thread died.
    std::vector<Block> keep;
    for (Block& b : mine) {
      if (!pattern_intact(b.p, b.size, b.seed)) ++corrupt;
      if (id % 10 != 0 && rng.below(3) != 0)
        std::free(b.p);
      else
        keep.push_back(b);
    }
    std::lock_guard lock(survivors_mutex);
    survivors.insert(survivors.end(), keep.begin(), keep.end());
  };

  for (int first = 0; first < kThreads; first += kConcurrent) {
    std::vector<std::thread> wave;
    for (int id = first; id < first + kConcurrent && id < kThreads; ++id) wave.emplace_back(worker, id);
    for (auto& t : wave) t.join();
  }
  CHECK(failures == 0);
  CHECK(corrupt == 0);
  REQUIRE(survivors.size() > static_cast<std::size_t>(kThreads * kBlocksPerThread / 5));

  // Every survivor was written by a thread that exited; later threads reused
  // whatever that thread's caches released. None of it may have been handed
  // out again while still live.
  long corrupt_survivors = 0;
  for (const Block& b : survivors) {
    if (!pattern_intact(b.p, b.size, b.seed)) ++corrupt_survivors;
    std::free(b.p);
  }
  CHECK(corrupt_survivors == 0);
}

TEST_CASE("remote frees race with thread exit and with new threads adopting the exited threads' heaps") {
  // A long-lived consumer frees blocks handed over by a stream of short-lived
  // producers: some frees land while the producer still runs, others after it
  // has exited and while a newer thread may already have taken over its heap.
  constexpr int kProducers = 300;
  constexpr int kConcurrent = 4;
  constexpr int kBlocksPerProducer = 100;
  BlockQueue queue;
  std::atomic<long> failures{0}, corrupt{0}, freed_by_consumer{0}, handed_over{0};

  std::thread consumer([&] {
    Block b;
    while (queue.pop(b)) {
      if (!pattern_intact(b.p, b.size, b.seed)) ++corrupt;
      std::free(b.p);
      ++freed_by_consumer;
    }
  });

  auto producer = [&](int id) {
    Rng rng{static_cast<std::uint64_t>(id) * 7 + 3};
    std::vector<Block> mine;
    for (int i = 0; i < kBlocksPerProducer; ++i) {
      Block b = make_block(rng, static_cast<std::uint32_t>(id * kBlocksPerProducer + i));
      if (b.p == nullptr) {
        ++failures;
        continue;
      }
      mine.push_back(b);
    }
    // Hand over 60%, free the rest here, interleaved.
    for (const Block& b : mine) {
      if (rng.below(5) < 3) {
        queue.push(b);
        ++handed_over;
      } else {
        if (!pattern_intact(b.p, b.size, b.seed)) ++corrupt;
        std::free(b.p);
      }
    }
  };
  for (int first = 0; first < kProducers; first += kConcurrent) {
    std::vector<std::thread> wave;
    for (int id = first; id < first + kConcurrent && id < kProducers; ++id) wave.emplace_back(producer, id);
    for (auto& t : wave) t.join();
  }
  queue.close();
  consumer.join();

  CHECK(failures == 0);
  CHECK(corrupt == 0);
  CHECK(freed_by_consumer == handed_over.load());
  CHECK(handed_over > kProducers * kBlocksPerProducer / 2);
}

TEST_CASE("threads allocating concurrently never receive overlapping blocks") {
  constexpr int kThreads = 4;
  constexpr int kRounds = 15;
  constexpr int kLivePerRound = 400;
  std::atomic<long> failures{0}, corrupt{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Rng rng{static_cast<std::uint64_t>(t) + 77};
      for (int round = 0; round < kRounds; ++round) {
        std::vector<Block> live;
        for (int i = 0; i < kLivePerRound; ++i) {
          // The seed is unique per thread and block, so a block shared with
          // another thread (or with another live block) shows up as corrupt.
          Block b = make_block(rng, static_cast<std::uint32_t>((t << 24) | (round << 12) | i));
          if (b.p == nullptr) {
            ++failures;
            continue;
          }
          live.push_back(b);
        }
        std::this_thread::yield();
        // Free in a shuffled order.
        for (std::size_t i = live.size(); i > 1; --i) std::swap(live[i - 1], live[rng.below(i)]);
        for (const Block& b : live) {
          if (!pattern_intact(b.p, b.size, b.seed)) ++corrupt;
          std::free(b.p);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  CHECK(corrupt == 0);
}

namespace {
std::atomic<long> g_exit_failures{0};

// Allocates and frees during thread teardown, when the allocator's own
// per-thread state may already have been torn down.
void churn_during_exit(void* inherited) {
  if (inherited != nullptr) {
    if (!pattern_intact(inherited, 200, 99)) ++g_exit_failures;
    std::free(inherited);
  }
  for (std::size_t n : {std::size_t{8}, std::size_t{100}, std::size_t{1000}, std::size_t{5000},
                        preload::max_core_size() + 1}) {
    void* p = std::malloc(n);
    if (p == nullptr) {
      ++g_exit_failures;
      continue;
    }
    std::memset(p, 0x42, n);
    std::free(p);
  }
}

struct ExitChurner {
  void* block = nullptr;
  ~ExitChurner() { churn_during_exit(block); }
};
thread_local ExitChurner t_exit_churner;

pthread_key_t g_exit_key;
}  // namespace

TEST_CASE("malloc and free work inside thread_local destructors and pthread key destructors") {
  REQUIRE(pthread_key_create(&g_exit_key, churn_during_exit) == 0);
  g_exit_failures = 0;
  for (int wave = 0; wave < 10; ++wave) {
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([] {
        void* a = std::malloc(200);
        void* b = std::malloc(200);
        fill_pattern(a, 200, 99);
        fill_pattern(b, 200, 99);
        t_exit_churner.block = a;
        pthread_setspecific(g_exit_key, b);
        // Some ordinary work so the thread has warm caches when it exits.
        std::vector<void*> scratch;
        for (int j = 0; j < 100; ++j) scratch.push_back(std::malloc(16 * (j + 1)));
        for (void* p : scratch) std::free(p);
      });
    }
    for (auto& t : threads) t.join();
  }
  CHECK(g_exit_failures == 0);
  pthread_key_delete(g_exit_key);
}
