// Soak: --threads threads allocate blocks of mixed sizes (16 B - 512 KiB, most small; the
// largest go to glibc through the shim), fill each with a pattern derived from its address
// and size, and put them into a shared table. Any thread may free any block, after checking
// its contents, so about (threads-1)/threads of frees are cross-thread. The main thread
// forks every --fork-ms: the child allocates, checks and frees on its own and must exit 0
// within 30 s.
// Runs for --seconds, then checks and frees every remaining block. Aborts on any corruption.
//
//   soak [--threads N] [--seconds S] [--fork-ms M]   (bench/bench.h flags: --help lists them)
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "bench/bench.h"

namespace {

constexpr size_t kSlots = 1 << 14;
std::atomic<void*> g_table[kSlots];  // each block starts with its size, then the pattern
std::atomic<bool> g_stop{false};
std::atomic<uint64_t> g_ops{0}, g_cross{0};

uint8_t pattern(const void* p, size_t size, size_t i) {
  return static_cast<uint8_t>((reinterpret_cast<uintptr_t>(p) >> 4) ^ size ^ (i * 131));
}
void fill(void* p, size_t size) {
  memcpy(p, &size, sizeof size);
  auto* b = static_cast<uint8_t*>(p);
  // Large blocks: the first and last 256 bytes and every 4 KiB, so the soak stays allocator-bound.
  for (size_t i = sizeof size; i < size; i = (i < 256 || i + 256 >= size) ? i + 1 : i + 4096)
    b[i] = pattern(p, size, i);
}
size_t size_of(const void* p) {
  size_t size;
  memcpy(&size, p, sizeof size);
  return size;
}
void check(const void* p, size_t size) {
  if (size_of(p) != size) {
    fprintf(stderr, "soak: block %p (size %zu) corrupt: its size field reads %zu\n", p, size, size_of(p));
    abort();
  }
  auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = sizeof size; i < size; i = (i < 256 || i + 256 >= size) ? i + 1 : i + 4096)
    if (b[i] != pattern(p, size, i)) {
      fprintf(stderr, "soak: block %p (size %zu) corrupt at byte %zu\n", p, size, i);
      abort();
    }
}

size_t pick_size(uint64_t r) {
  switch (r % 16) {
    case 15: return 256 * 1024 + (r >> 8) % (256 * 1024);  // above the core: glibc
    case 14: case 13: return 1025 + (r >> 8) % (255 * 1024);  // pools
    default: return 16 + (r >> 8) % 1009;                  // slabs
  }
}

void worker(unsigned id) {
  bench::SplitMix64 random(id * 7919 + 1);
  while (!g_stop.load(std::memory_order_relaxed)) {
    const size_t slot = random.next() % kSlots;
    const size_t size = pick_size(random.next());
    void* fresh = malloc(size);
    if (fresh == nullptr) {
      fprintf(stderr, "soak: malloc(%zu) failed\n", size);
      abort();
    }
    fill(fresh, size);
    // Publish the new block; take whatever was there (any thread's) and free it.
    void* old = g_table[slot].exchange(nullptr, std::memory_order_acq_rel);
    if (old != nullptr) {
      check(old, size_of(old));
      free(old);
      g_cross.fetch_add(1, std::memory_order_relaxed);
    }
    void* expected = nullptr;
    if (!g_table[slot].compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) {
      check(fresh, size);  // lost the slot to another thread: free our own
      free(fresh);
    }
    g_ops.fetch_add(1, std::memory_order_relaxed);
  }
}

int child_work() {
  std::vector<std::pair<void*, size_t>> blocks;
  bench::SplitMix64 random(static_cast<uint64_t>(getpid()));
  for (int i = 0; i < 2000; ++i) {
    const size_t size = pick_size(random.next());
    void* p = malloc(size);
    if (p == nullptr) return 1;
    fill(p, size);
    blocks.emplace_back(p, size);
  }
  for (auto [p, size] : blocks) {
    check(p, size);
    free(p);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t threads = 8, seconds = 20, fork_ms = 250;
  bench::parse_flags(argc, argv,
                     "Soak: threads allocate, check and free each other's blocks of mixed sizes\n"
                     "while the main thread forks; aborts on any corrupt block.",
                     {{"threads", &threads, 1, "allocating threads"},
                      {"seconds", &seconds, 1, "how long to run"},
                      {"fork-ms", &fork_ms, 1, "ms between forks"}});
  std::vector<std::thread> pool;
  for (uint64_t i = 0; i < threads; ++i) pool.emplace_back(worker, static_cast<unsigned>(i));
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  long forks = 0;
  while (std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(fork_ms));
    const pid_t pid = fork();
    if (pid == 0) {
      alarm(30);  // watchdog: a child that hangs (a lock inherited held) dies of SIGALRM
      _exit(child_work());
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "soak: forked child failed (status %d)\n", status);
      return 1;
    }
    ++forks;
  }
  g_stop.store(true);
  for (auto& t : pool) t.join();
  size_t left = 0;
  for (size_t i = 0; i < kSlots; ++i)
    if (void* p = g_table[i].load()) {
      check(p, size_of(p));
      free(p);
      ++left;
    }
  printf("soak: threads=%llu seconds=%llu ops=%llu frees_of_published_blocks=%llu forks=%ld left=%zu ok\n",
         static_cast<unsigned long long>(threads), static_cast<unsigned long long>(seconds), static_cast<unsigned long long>(g_ops.load()),
         static_cast<unsigned long long>(g_cross.load()), forks, left);
  return 0;
}
