// producer_consumer: xmalloc-style, every block freed by a thread that did not
// allocate it.
//
// Producer threads allocate blocks (16-512 B), tag them and fill batches of
// --batch blocks; consumer threads take full batches, check every block and
// free it. Batches travel through two mutex-protected queues, full and empty,
// and a fixed number of batches exists (4 per thread), so producers wait when
// consumers fall behind instead of piling up memory. Every free is a remote
// free: the allocator must get the memory back to where the producers
// allocate, or they keep taking fresh memory. The pattern of a pipeline, a
// logger thread, a message queue.
//
// The queues cost a lock and, as often as not, a futex wake-up per batch, not
// per block: several microseconds on the 2-core dev machine, where producers
// and consumers keep putting each other to sleep. A batch of 4096 brings that
// to a nanosecond or two a block; at 256 the queues took as long as malloc and
// free together, and at 16 they are all one measures.
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "bench.h"

namespace {

constexpr const char* kSummary =
    "xmalloc-style: producers allocate blocks (16-512 B) and pass them in batches to\n"
    "consumers, which check and free them. Prints blocks per second (all threads).";

constexpr std::uint32_t kMinSize = 16;
constexpr std::uint32_t kMaxSize = 512;
constexpr std::uint64_t kBatchesPerThread = 4;

struct Entry {
  unsigned char* block = nullptr;
  std::uint32_t size = 0;
  std::uint32_t tag = 0;  // written at both ends of the block, checked on free
};

struct Batch {
  std::vector<Entry> entries;  // sized once, before the timed region
};

// A FIFO of batches. Its ring holds every batch there is, so a push never
// waits and never allocates; a pop waits for a batch or for close().
class BatchQueue {
 public:
  explicit BatchQueue(std::size_t capacity) : ring_(capacity) {}

  void push(Batch* batch) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ring_[(head_ + count_) % ring_.size()] = batch;
      ++count_;
    }
    ready_.notify_one();
  }

  // nullptr once the queue is closed and empty.
  Batch* pop() {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [this] { return count_ > 0 || closed_; });
    if (count_ == 0) return nullptr;
    Batch* batch = ring_[head_];
    head_ = (head_ + 1) % ring_.size();
    --count_;
    return batch;
  }

  void close() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
    }
    ready_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<Batch*> ring_;
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  bool closed_ = false;
};

void write_tag(const Entry& entry) { bench::write_tags(entry.block, entry.size, entry.tag); }

void check_tag(const Entry& entry) { bench::check_tags("bench_producer_consumer", entry.block, entry.size, entry.tag); }

struct Pipeline {
  Pipeline(std::size_t batch_count, std::uint64_t producers)
      : full(batch_count), empty(batch_count), producers_left(producers) {}
  BatchQueue full;
  BatchQueue empty;
  std::mutex producers_mutex;
  std::uint64_t producers_left;
};

void produce(std::uint64_t seed, std::uint64_t batches, Pipeline& pipeline) {
  bench::SplitMix64 rng(seed);
  for (std::uint64_t b = 0; b < batches; ++b) {
    Batch* batch = pipeline.empty.pop();
    for (Entry& entry : batch->entries) {
      entry.size = kMinSize + rng.below(kMaxSize - kMinSize + 1);
      entry.tag = static_cast<std::uint32_t>(rng.next());
      entry.block = static_cast<unsigned char*>(std::malloc(entry.size));
      if (entry.block == nullptr) {
        std::fprintf(stderr, "bench_producer_consumer: malloc(%u) failed\n", entry.size);
        std::abort();
      }
      write_tag(entry);
    }
    pipeline.full.push(batch);
  }
  // The last producer out closes the full queue: consumers drain it and stop.
  bool last = false;
  {
    std::lock_guard<std::mutex> lock(pipeline.producers_mutex);
    last = --pipeline.producers_left == 0;
  }
  if (last) pipeline.full.close();
}

void consume(Pipeline& pipeline, std::uint64_t& consumed) {
  std::uint64_t blocks = 0;
  while (Batch* batch = pipeline.full.pop()) {
    for (const Entry& entry : batch->entries) {
      check_tag(entry);
      std::free(entry.block);
    }
    blocks += batch->entries.size();
    pipeline.empty.push(batch);
  }
  consumed = blocks;
}

}  // namespace

int main(int argc, char** argv) {
  // 2 producers x 16M blocks: about 2 s under glibc on the 2-core dev
  // machine, 1 s under mimalloc.
  std::uint64_t producers = 2;
  std::uint64_t consumers = 2;
  std::uint64_t blocks_per_producer = 16'000'000;
  std::uint64_t batch_size = 4096;
  std::uint64_t seed = 1;
  bench::parse_flags(argc, argv, kSummary,
                     {{"producers", &producers, 1, "producer threads"},
                      {"consumers", &consumers, 1, "consumer threads"},
                      {"iters", &blocks_per_producer, 1,
                       "blocks per producer (rounded up to whole batches)"},
                      {"batch", &batch_size, 1, "blocks per batch"},
                      {"seed", &seed, 0, "PRNG seed"}});

  const std::uint64_t batches_per_producer = (blocks_per_producer + batch_size - 1) / batch_size;
  // All batches are made here, outside the timed region and before any
  // thread starts, so the queues' own memory is no part of the measurement.
  std::vector<Batch> batches((producers + consumers) * kBatchesPerThread);
  Pipeline pipeline(batches.size(), producers);
  for (Batch& batch : batches) {
    batch.entries.resize(batch_size);
    pipeline.empty.push(&batch);
  }

  bench::SplitMix64 seeder(seed);
  std::vector<std::uint64_t> consumed(consumers);
  std::vector<std::thread> threads;
  std::uint64_t start_ns = bench::now_ns();
  for (std::uint64_t i = 0; i < consumers; ++i) {
    threads.emplace_back(consume, std::ref(pipeline), std::ref(consumed[i]));
  }
  for (std::uint64_t i = 0; i < producers; ++i) {
    threads.emplace_back(produce, seeder.next(), batches_per_producer, std::ref(pipeline));
  }
  for (std::thread& thread : threads) thread.join();
  double wall_ns = static_cast<double>(bench::now_ns() - start_ns);

  std::uint64_t total = 0;
  for (std::uint64_t blocks : consumed) total += blocks;
  const std::uint64_t expected = producers * batches_per_producer * batch_size;
  if (total != expected) {
    std::fprintf(stderr, "bench_producer_consumer: consumers freed %llu blocks, expected %llu\n",
                 static_cast<unsigned long long>(total),
                 static_cast<unsigned long long>(expected));
    std::abort();
  }

  bench::Result("producer_consumer")
      .add("producers", producers)
      .add("consumers", consumers)
      .add("blocks", total)
      .add("batch", batch_size)
      .add("seed", seed)
      .add("seconds", wall_ns / 1e9, 3)
      .add("blocks_per_s", static_cast<double>(total) / (wall_ns / 1e9), 0)
      .add("ns_per_block", wall_ns / static_cast<double>(total), 2)
      .print();
  return 0;
}
