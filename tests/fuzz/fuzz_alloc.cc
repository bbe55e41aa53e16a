// libFuzzer target: the input is a program of allocation operations run against the core,
// checked against a shadow model of what every live block must hold.
//
// Each operation is 4 bytes: op, slot, and a 16-bit size (scaled so sizes up to beyond
// max_size() are reached). Ops: alloc, aligned alloc, realloc, free, free by the second
// thread (a remote free), alloc by the second thread (freed later by this one), and check-all.
// After every operation and at the end: contents of every live block (each filled with its
// own byte), alignment, usable size >= size, and no two live blocks overlap. Any mismatch
// aborts, which libFuzzer reports with the input that caused it.
#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>

#include "core/api/bitslab.h"

namespace {

constexpr unsigned kSlots = 32;
struct Block {
  unsigned char* p = nullptr;
  size_t size = 0;
  size_t alignment = 16;
  unsigned char fill = 0;
};
Block g_slots[kSlots];

void fail(const char* what, const void* p) {
  fprintf(stderr, "fuzz_alloc: %s (%p)\n", what, p);
  abort();
}

// The second thread: runs one job at a time, synchronously, so the model stays simple while
// the allocator sees frees and allocations from a thread that does not own the block.
class Worker {
 public:
  Worker() : thread_([this] { loop(); }) { thread_.detach(); }
  void run(std::function<void()> job) {
    std::unique_lock lock(mutex_);
    job_ = std::move(job);
    ready_.notify_all();
    done_.wait(lock, [this] { return !job_; });
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      ready_.wait(lock, [this] { return bool(job_); });
      job_();
      job_ = nullptr;
      done_.notify_all();
    }
  }
  std::mutex mutex_;
  std::condition_variable ready_, done_;
  std::function<void()> job_;
  std::thread thread_;
};

void check_block(const Block& b) {
  if (b.p == nullptr) return;
  if (reinterpret_cast<uintptr_t>(b.p) % b.alignment != 0) fail("misaligned block", b.p);
  if (bitslab::usable_size(b.p) < b.size) fail("usable size below the size asked for", b.p);
  for (size_t i = 0; i < b.size; ++i)
    if (b.p[i] != b.fill) fail("block contents changed", b.p + i);
}

void check_all() {
  const Block* live[kSlots];
  unsigned n = 0;
  for (const Block& b : g_slots) {
    check_block(b);
    if (b.p != nullptr) live[n++] = &b;
  }
  std::sort(live, live + n, [](const Block* a, const Block* b) { return a->p < b->p; });
  for (unsigned i = 1; i < n; ++i) {
    const size_t extent = live[i - 1]->size > 0 ? live[i - 1]->size : 1;
    if (live[i - 1]->p + extent > live[i]->p) fail("two live blocks overlap", live[i]->p);
  }
}

void store(Block& b, void* p, size_t size, size_t alignment, unsigned char fill) {
  b.p = static_cast<unsigned char*>(p);
  b.size = size;
  b.alignment = alignment;
  b.fill = fill;
  memset(b.p, fill, size);
}

void release(Block& b) {
  bitslab::free(b.p);
  b = Block{};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t len) {
  // Never destroyed: destroying a condition variable its thread still waits on would hang exit.
  static Worker& worker = *new Worker;
  for (size_t at = 0; at + 4 <= len; at += 4) {
    const uint8_t op = data[at] % 7;
    Block& b = g_slots[data[at + 1] % kSlots];
    // 16 bits scaled by 5: 0..327675 bytes, past max_size() (262144) for the top fifth.
    const size_t size = size_t(data[at + 2] | (data[at + 3] << 8)) * 5 % 330000;
    const unsigned char fill = static_cast<unsigned char>(data[at + 1] * 31 + data[at + 2]);
    switch (op) {
      case 0:
      case 1: {  // alloc, or aligned alloc with an alignment from the size's low bits
        if (b.p != nullptr) release(b);
        const size_t alignment = op == 0 ? 16 : size_t{1} << (data[at + 2] % 17);
        errno = 0;
        void* p = op == 0 ? bitslab::alloc(size) : bitslab::aligned_alloc(alignment, size);
        if (size > bitslab::max_size()) {
          if (p != nullptr || errno != ENOMEM) fail("oversized request did not fail with ENOMEM", p);
          break;
        }
        if (p == nullptr) fail("alloc failed below max_size", nullptr);
        store(b, p, size, alignment < 16 ? 16 : alignment, fill);
        break;
      }
      case 2: {  // realloc: the common prefix survives
        if (size > bitslab::max_size()) {
          errno = 0;
          if (b.p != nullptr && (bitslab::realloc(b.p, size) != nullptr || errno != ENOMEM))
            fail("oversized realloc did not fail with ENOMEM", b.p);
          break;  // the block is untouched
        }
        void* p = bitslab::realloc(b.p, size);
        if (p == nullptr) fail("realloc failed below max_size", b.p);
        const size_t kept = std::min(size, b.size);
        for (size_t i = 0; i < kept; ++i)
          if (static_cast<unsigned char*>(p)[i] != b.fill) fail("realloc lost contents", p);
        store(b, p, size, 16, fill);
        break;
      }
      case 3:  // free by this thread
        if (b.p != nullptr) release(b);
        break;
      case 4:  // free by the other thread
        if (b.p != nullptr) {
          worker.run([&] { bitslab::free(b.p); });
          b = Block{};
        }
        break;
      case 5: {  // alloc by the other thread, freed later here
        if (b.p != nullptr) release(b);
        if (size > bitslab::max_size()) break;
        void* p = nullptr;
        worker.run([&] { p = bitslab::alloc(size); });
        if (p == nullptr) fail("alloc on the second thread failed", nullptr);
        store(b, p, size, 16, fill);
        break;
      }
      case 6:
        check_all();
        break;
    }
    check_block(b);
  }
  check_all();
  for (Block& b : g_slots)
    if (b.p != nullptr) release(b);
  return 0;
}
