// Memory that flows back: what a program's footprint does when its size mix changes, when it
// frees everything, when address space runs short. One program, one scenario per mode; each
// prints its measurements and "<mode>: ok" when the bound held, and exits 1 when it did not.
//
//   memory MODE [ARGS]   (no arguments: the list of modes)
// Blocks are linked through their first word, so no array of pointers adds to the footprint.
#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "tests/support/scenario_modes.h"

namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "memory: %s (errno %d: %s)\n", what, errno, std::strerror(errno));
  std::exit(2);
}

// A field of /proc/self/status in KiB (VmRSS, VmHWM, VmSize), read without allocating.
long status_kib(const char* field) {
  char buf[4096];
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) die("/proc/self/status");
  long value = -1;
  const size_t len = std::strlen(field);
  while (std::fgets(buf, sizeof buf, f) != nullptr)
    if (std::strncmp(buf, field, len) == 0 && buf[len] == ':') value = std::atol(buf + len + 1);
  std::fclose(f);
  if (value < 0) die(field);
  return value;
}

// Resets VmHWM to the current RSS, so that the next phase's peak is its own.
void reset_peak() {
  FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (f == nullptr || std::fputs("5", f) < 0) die("/proc/self/clear_refs");
  std::fclose(f);
}

uint64_t next_random(uint64_t& state) {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

struct Node {
  Node* next;
};

// Allocates blocks of [low, high] bytes until `bytes` are live (or malloc fails), each linked
// to the last and touched whole; returns the list.
Node* allocate_list(uint64_t bytes, size_t low, size_t high, uint64_t seed, uint64_t* got = nullptr) {
  Node* head = nullptr;
  uint64_t total = 0;
  while (total < bytes) {
    const size_t size = low + next_random(seed) % (high - low + 1);
    auto* n = static_cast<Node*>(std::malloc(size));
    if (n == nullptr) break;
    std::memset(n, 0x5a, size);
    n->next = head;
    head = n;
    total += size;
  }
  if (got != nullptr) *got = total;
  return head;
}

void free_list(Node* head) {
  while (head != nullptr) {
    Node* next = head->next;
    std::free(head);
    head = next;
  }
}

double mib(long kib) { return static_cast<double>(kib) / 1024.0; }

// ---- phases: a size mix that changes must not grow the footprint ----------------------------
//
// Each phase allocates --MiB of its mix and frees it. Each phase's peak RSS (VmHWM, reset between
// phases) must stay within 15% of phase 1's: what phase 1 freed serves the later phases, or goes
// back as they grow.
struct Phase {
  const char* mix;
  size_t low, high;
};

int run_phases(const char* name, const Phase* mixes, int count, int argc, char** argv) {
  const uint64_t bytes = (argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1024) << 20;
  long first_peak = 0;
  bool ok = true;
  for (int i = 0; i < count; ++i) {
    reset_peak();
    Node* list = allocate_list(bytes, mixes[i].low, mixes[i].high, 1234567 + i);
    free_list(list);
    const long peak = status_kib("VmHWM");
    if (i == 0) first_peak = peak;
    const double ratio = static_cast<double>(peak) / static_cast<double>(first_peak);
    std::printf("phase %d (%s): peak %.0f MiB, %.2fx phase 1, RSS after the frees %.0f MiB\n", i + 1,
                mixes[i].mix, mib(peak), ratio, mib(status_kib("VmRSS")));
    if (ratio > 1.15) ok = false;
  }
  if (!ok) {
    std::printf("%s: a later phase's peak is more than 1.15x the first's\n", name);
    return 1;
  }
  std::printf("%s: ok\n", name);
  return 0;
}

// 64 B-2 KiB, 16-512 B, 64 B-2 KiB: slabs and pool chunks, then slabs, then both again.
int phases(int argc, char** argv) {
  static const Phase mixes[] = {{"64 B-2 KiB", 64, 2048}, {"16-512 B", 16, 512}, {"64 B-2 KiB", 64, 2048}};
  return run_phases("phases", mixes, 3, argc, argv);
}

// 16-512 B, then 1-64 KiB: the second phase makes no slab call, and the empty slab pages the
// first left in the page cache must go as it grows all the same.
int slabs_then_pool(int argc, char** argv) {
  static const Phase mixes[] = {{"16-512 B", 16, 512}, {"1-64 KiB", 1024, 64 << 10}};
  return run_phases("slabs-then-pool", mixes, 2, argc, argv);
}

// ---- after small blocks exhaust the address space, every size works again -------------------
//
// Run under `ulimit -v` (1 GiB in the test): 64 B blocks until malloc fails, all freed, then
// 64 MiB (glibc's, or a guarded block) and small blocks again.
int exhaust_then_large(int, char**) {
  uint64_t got = 0;
  Node* list = allocate_list(uint64_t{1} << 40, 64, 64, 1, &got);
  std::printf("exhaust: %.0f MiB of 64 B blocks before malloc failed\n",
              static_cast<double>(got) / (1 << 20));
  free_list(list);
  void* big = std::malloc(64 << 20);
  if (big == nullptr) {
    std::printf("exhaust: malloc(64 MiB) after freeing everything failed\n");
    return 1;
  }
  std::memset(big, 1, 64 << 20);
  std::free(big);
  Node* again = allocate_list(64 << 20, 64, 64, 2, &got);
  free_list(again);
  if (got < (64u << 20)) {
    std::printf("exhaust: only %.0f MiB of small blocks afterwards\n", static_cast<double>(got) / (1 << 20));
    return 1;
  }
  std::printf("exhaust: ok, 64 MiB large and 64 MiB of small blocks after the free\n");
  return 0;
}

// ---- a freed large block's address space serves a larger one --------------------------------
//
// Run under `ulimit -v` (1 GiB in the test): 600 MiB allocated and freed, then 700 MiB, which
// fits only if the first block's address space went back (glibc unmaps it; the hardened
// build's guarded range is kept for reuse, and must be unmapped when the larger one fails).
int large_after_large(int, char**) {
  void* first = std::malloc(size_t{600} << 20);
  if (first == nullptr) {
    std::printf("large: malloc(600 MiB) failed at the start\n");
    return 1;
  }
  std::memset(first, 1, 1 << 20);
  std::free(first);
  void* second = std::malloc(size_t{700} << 20);
  if (second == nullptr) {
    std::printf("large: malloc(700 MiB) after freeing 600 MiB failed\n");
    return 1;
  }
  std::memset(second, 1, 1 << 20);
  std::free(second);
  std::printf("large: ok, 700 MiB after freeing 600 MiB\n");
  return 0;
}

// ---- an address-space limit set after start-up ------------------------------------------------
void* thread_allocates(void*) {
  void* p = std::malloc(1000);
  std::free(p);
  return p;
}

int limit_after_start(int argc, char** argv) {
  const uint64_t limit_mib = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 200;
  std::free(std::malloc(64));
  std::printf("limit: VmSize %.0f MiB before setting RLIMIT_AS to %llu MiB\n", mib(status_kib("VmSize")),
              static_cast<unsigned long long>(limit_mib));
  const rlimit limit{limit_mib << 20, limit_mib << 20};
  if (setrlimit(RLIMIT_AS, &limit) != 0) die("setrlimit");
  pthread_t t;
  const int created = pthread_create(&t, nullptr, thread_allocates, nullptr);
  if (created != 0) {
    std::printf("limit: pthread_create failed: %s\n", std::strerror(created));
    return 1;
  }
  void* from_thread = nullptr;
  pthread_join(t, &from_thread);
  void* big = std::malloc(8 << 20);
  if (from_thread == nullptr || big == nullptr) {
    std::printf("limit: %s failed\n", big == nullptr ? "malloc(8 MiB)" : "malloc in the new thread");
    return 1;
  }
  std::memset(big, 1, 8 << 20);
  std::free(big);
  std::printf("limit: ok, a thread and 8 MiB under a %llu MiB limit set after start-up\n",
              static_cast<unsigned long long>(limit_mib));
  return 0;
}

// ---- the address space a trivial program takes -------------------------------------------------
int vmsize(int argc, char** argv) {
  const long limit_mib = argc > 2 ? std::atol(argv[2]) : 96;
  std::free(std::malloc(64));
  const long size = status_kib("VmSize");
  std::printf("vmsize: %.1f MiB after one malloc (bound %ld MiB)\n", mib(size), limit_mib);
  if (mib(size) > static_cast<double>(limit_mib)) return 1;
  std::printf("vmsize: ok\n");
  return 0;
}

// ---- freed memory goes back to the OS ------------------------------------------------------------
//
// --MiB in every kind of block (small, pool-sized, a few pages, and above the core's classes:
// glibc's, or the hardened build's guarded blocks), all freed; then, by MODE:
//   trim   malloc_trim(0) at once
//   idle   nothing at all for 3x the purge delay (a background purge must do it)
//   poke   3x the purge delay, then 10 000 blocks of 24 B allocated and freed: calls that take
//          new slab pages and give them back (the calls that run a due purge)
// RSS must come back within 16 MiB of where it was before the blocks; after trim, VmSize within
// 64 MiB too (the page heap's free granules are unmapped at once). glibc's blocks count: glibc
// keeps what is freed inside its heap, and the purge must make it trim (idle, poke).
int give_back(int argc, char** argv) {
  const char* how = argc > 2 ? argv[2] : "trim";
  const uint64_t bytes = (argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 512) << 20;
  std::free(std::malloc(64));
  const long start = status_kib("VmRSS");
  const long start_size = status_kib("VmSize");
  Node* small = allocate_list(bytes / 2, 16, 1024, 11);
  Node* pool = allocate_list(bytes / 4, 1025, 64 << 10, 12);
  Node* pages = allocate_list(bytes / 4, 64 << 10, 256 << 10, 13);
  // One 4 MiB block freed first lifts glibc's mmap threshold (it adapts to freed blocks), so
  // the large ones come from its heap, not mmap; the fence, kept live above them, keeps them
  // off the heap's top, which free() would trim by itself.
  std::free(std::memset(std::malloc(4 << 20), 1, 4 << 20));
  Node* large = allocate_list(bytes / 4, 512 << 10, 1 << 20, 15);
  void* fence = std::memset(std::malloc(512 << 10), 1, 512 << 10);
  const long full = status_kib("VmRSS");
  free_list(small);
  free_list(pool);
  free_list(pages);
  free_list(large);
  const long freed = status_kib("VmRSS");
  const char* delay = std::getenv("BITSLAB_PURGE_DELAY_MS");
  const long delay_ms = delay != nullptr ? std::atol(delay) : 500;
  if (std::strcmp(how, "trim") == 0) {
    malloc_trim(0);
  } else {
    timespec pause{(3 * delay_ms) / 1000, ((3 * delay_ms) % 1000) * 1000000};
    nanosleep(&pause, nullptr);
    if (std::strcmp(how, "poke") == 0) free_list(allocate_list(240000, 24, 24, 14));
  }
  const long after = status_kib("VmRSS");
  std::printf(
      "give-back (%s): RSS %.0f MiB at start, %.0f MiB full, %.0f MiB after the frees, %.0f MiB after\n", how,
      mib(start), mib(full), mib(freed), mib(after));
  if (after - start > 16 * 1024) {
    std::printf("give-back (%s): %.0f MiB more than at start (bound 16)\n", how, mib(after - start));
    return 1;
  }
  // malloc_trim gives the address space back too: every free granule unmapped at once. The
  // fence goes first: glibc then trims its heap's top, where the address space is glibc's.
  std::free(fence);
  const long size = status_kib("VmSize");
  std::printf("give-back (%s): VmSize %.0f MiB at start, %.0f MiB after\n", how, mib(start_size), mib(size));
  if (std::strcmp(how, "trim") == 0 && size - start_size > 64 * 1024) {
    std::printf("give-back (trim): %.0f MiB more address space than at start (bound 64)\n",
                mib(size - start_size));
    return 1;
  }
  std::printf("give-back: ok\n");
  return 0;
}

// ---- exited threads' slabs go back ----------------------------------------------------------------
//
// 16 threads each allocate a block of every size from 16 B to 1 KiB (every small class) and
// exit: their heaps park, each block's slab the class's current one. Then, by MODE:
//   trim   the main thread frees all the blocks (those of classes a freeing thread keeps stay in
//          its cache) and calls malloc_trim(0): the trim sends its cache back to the owners,
//          which empties their current slabs, and must then give those back
//   idle   another thread frees all the blocks and exits (its cache goes back to the owners),
//          then nothing at all for 10x the purge delay (a background purge must do it: it
//          flushes the heaps parked for a whole delay, and the pages it gives back wait out a
//          delay of their own in the page cache, whose first 32 pages the purge of one more keeps)
// A current slab keeps no count, so the frees that empty it cannot give it back themselves.
// A third argument only names the run (the test sets BITSLAB_PURGE_DELAY_MS=0 for one: then
// every slab the trim's flush of the parked heaps gives back runs a purge inside it).
// mallinfo2's arena (what is committed, ours and glibc's) must come back within 2 MiB of where
// it was before the threads; it must have been 16 MiB above it after the frees (16 heaps of
// 40-odd classes of 64 KiB slabs), or the scenario did not happen.
constexpr int kExitingThreads = 16;
constexpr size_t kExitedBlocks = 1024 / 16;  // 16, 32, ... 1024 B
void* g_exited_blocks[kExitingThreads][kExitedBlocks];
pthread_barrier_t g_all_allocated;  // no thread exits (and parks its heap for the next) before all allocated

void* allocate_and_exit(void* arg) {
  void** blocks = static_cast<void**>(arg);
  for (size_t i = 0; i < kExitedBlocks; ++i)
    blocks[i] = std::memset(std::malloc((i + 1) * 16), 1, (i + 1) * 16);
  pthread_barrier_wait(&g_all_allocated);
  return nullptr;
}

void* free_all_blocks(void*) {
  for (auto& blocks : g_exited_blocks)
    for (void* p : blocks) std::free(p);
  return nullptr;
}

void run_thread(void* (*body)(void*), void* arg) {
  pthread_t t;
  if (pthread_create(&t, nullptr, body, arg) != 0) die("pthread_create");
  pthread_join(t, nullptr);
}

int exited_threads(int argc, char** argv) {
  const char* how = argc > 2 ? argv[2] : "trim";
  std::free(std::malloc(64));
  const size_t start = mallinfo2().arena;
  const bool trim = std::strcmp(how, "trim") == 0;
  size_t freed = 0;
  // trim: three rounds (threads, frees, trim), the measures taken in the last; the second is
  // where a trim whose flush ran a purge that waited for the flush's own lock hung.
  for (int round = 0; round < (trim ? 3 : 1); ++round) {
    pthread_barrier_init(&g_all_allocated, nullptr, kExitingThreads);
    pthread_t threads[kExitingThreads];
    for (int t = 0; t < kExitingThreads; ++t)
      if (pthread_create(&threads[t], nullptr, allocate_and_exit, g_exited_blocks[t]) != 0)
        die("pthread_create");
    for (pthread_t t : threads) pthread_join(t, nullptr);
    pthread_barrier_destroy(&g_all_allocated);
    if (trim) {
      free_all_blocks(nullptr);
    } else {
      run_thread(free_all_blocks, nullptr);
    }
    freed = mallinfo2().arena;
    if (!trim) break;
    // 20 ms first: past the coarse clock's tick, so that with no purge delay a purge is due
    // when the trim's flush of the parked heaps gives their slabs back.
    timespec tick{0, 20 * 1000000};
    nanosleep(&tick, nullptr);
    malloc_trim(0);
  }
  if (!trim) {
    const char* delay = std::getenv("BITSLAB_PURGE_DELAY_MS");
    const long delay_ms = delay != nullptr ? std::atol(delay) : 500;
    timespec pause{(10 * delay_ms) / 1000, ((10 * delay_ms) % 1000) * 1000000};
    nanosleep(&pause, nullptr);
  }
  const size_t after = mallinfo2().arena;
  const double to_mib = 1.0 / (1 << 20);
  std::printf("exited (%s): arena %.1f MiB at start, %.1f MiB after the frees, %.1f MiB after\n", how,
              static_cast<double>(start) * to_mib, static_cast<double>(freed) * to_mib,
              static_cast<double>(after) * to_mib);
  if (freed < start + (size_t{16} << 20)) {
    std::printf("exited (%s): the frees left less than 16 MiB committed: not the scenario\n", how);
    return 1;
  }
  if (after > start + (size_t{2} << 20)) {
    std::printf("exited (%s): %.1f MiB more than at start (bound 2)\n", how,
                static_cast<double>(after - start) * to_mib);
    return 1;
  }
  std::printf("exited: ok\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  static const bitslab::test::ScenarioMode modes[] = {
      {"phases", phases, "[MiB]  three size mixes of MiB (1024) each; later peaks <= 1.15x the first"},
      {"slabs-then-pool", slabs_then_pool, "[MiB]  small blocks, then pool chunks; the second peak <= 1.15x"},
      {"exhaust", exhaust_then_large, "       small blocks until malloc fails, free, then 64 MiB"},
      {"large", large_after_large, "       600 MiB allocated and freed, then 700 MiB"},
      {"limit", limit_after_start, "[MiB]  RLIMIT_AS set to MiB (200) after start; a thread, 8 MiB"},
      {"vmsize", vmsize, "[MiB]  VmSize after one malloc <= MiB (96)"},
      {"give-back", give_back, "trim|idle|poke [MiB]  RSS back within 16 MiB after freeing MiB (512)"},
      {"exited", exited_threads,
       "trim|idle [LABEL]  exited threads' emptied slabs go back (arena within 2 MiB)"},
  };
  return bitslab::test::run_scenario_mode(argc, argv, modes);
}
