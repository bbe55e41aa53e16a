// The heap profiler's test program (tests/scripts/profile_test.py runs it preloaded, with
// BITSLAB_PROFILE=1), also built linked with libbitslab_override.a (PROFILED_OVERRIDE), where
// the profiler walks the stack by CFA. Built with -fomit-frame-pointer: its stacks must come
// from the unwinder's DWARF tables, as Debian's binaries need. Modes:
//   sites DIR   three sites hold 60%, 30% and 10% of the live bytes, each at five block sizes,
//               beside blocks that another thread frees; dumps DIR/sites.heap with
//               bitslab::profile_dump while they are live, and prints each site's exact live
//               bytes and mallinfo2's in-use bytes at that moment
//   leak        leaky_function() leaks 64 blocks; everything else is freed; ends in /
//   threads     8 threads allocate (small blocks and pool chunks), hand half their blocks to a
//               neighbour to free, and exit
//   fork        forks while 4 threads allocate; the child allocates and exits normally
//   signal      a thread allocates while the main thread sends it SIGUSR2 400 times
//               (BITSLAB_PROFILE_SIGNAL=1): each dump comes from inside malloc, and one that
//               lands while the thread holds the profiler's lock (in a sample, or writing a
//               dump it deferred) must wait, not deadlock
//   misuse HOW  at rate 1, a pool-sized block (a sample, in bitslab's pool) misused: freed
//               twice (double_free), freed twice after two reallocs (realloc_double_free),
//               or freed by an interior pointer (interior); prints the pointer freed first.
//               Must abort with a message that names it, as an unsampled block's would
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#ifdef PROFILED_OVERRIDE
#include <bitslab/bitslab.h>
#endif

namespace {

// Block sizes cycled through by every site: a small class, the pool's, and glibc's (the last is
// above the core's 256 KiB classes). 1 B: at rate 1 a clock that drew distances (mean 1 byte)
// instead of taking every allocation would miss some of these.
constexpr size_t kSizes[] = {1, 1024, 5000, 40960, 300000};

struct Held {
  std::vector<void*> blocks;
  size_t bytes = 0;
};

// Allocates blocks of the cycled sizes until `target` bytes are held; every third block is
// also matched by a temporary one, appended to `handoff` for another thread to free.
__attribute__((noinline)) void fill(Held& held, size_t target, std::vector<void*>& handoff) {
  for (size_t i = 0; held.bytes < target; ++i) {
    const size_t size = kSizes[i % 5];
    void* p = malloc(size);
    if (p == nullptr) abort();
    memset(p, 1, 16);
    held.blocks.push_back(p);
    held.bytes += size;
    if (i % 3 == 0) handoff.push_back(malloc(size));
  }
}

// The three sites: each a function of its own, so the profile must tell them apart by stack.
__attribute__((noinline)) void site_sixty(Held& h, size_t total, std::vector<void*>& handoff) {
  fill(h, total * 6 / 10, handoff);
  asm volatile("");  // no tail call: this frame stays on the stack
}
__attribute__((noinline)) void site_thirty(Held& h, size_t total, std::vector<void*>& handoff) {
  fill(h, total * 3 / 10, handoff);
  asm volatile("");
}
__attribute__((noinline)) void site_ten(Held& h, size_t total, std::vector<void*>& handoff) {
  fill(h, total / 10, handoff);
  asm volatile("");
}

using DumpFn = bool (*)(const char*);
DumpFn dump_function() {
#ifdef PROFILED_OVERRIDE
  return [](const char* path) { return bitslab::profile_dump(path); };
#endif
  auto fn = reinterpret_cast<DumpFn>(dlsym(RTLD_DEFAULT, "_ZN7bitslab12profile_dumpEPKc"));
  if (fn == nullptr) {
    fprintf(stderr, "bitslab::profile_dump not found: is libbitslab.so preloaded?\n");
    exit(2);
  }
  return fn;
}

int sites(const char* dir) {
  const size_t total = size_t{1} << 30;  // 1 GiB live: ~2048 samples at the default rate
  Held held[3];
  std::vector<void*> handoff;
  // Room for every pointer now, so that the sites' live bytes are their blocks' alone.
  for (Held& h : held) h.blocks.reserve(100000);
  handoff.reserve(100000);
  site_sixty(held[0], total, handoff);
  site_thirty(held[1], total, handoff);
  site_ten(held[2], total, handoff);
  std::thread([&] {  // the temporaries die in another thread
    for (void* p : handoff) free(p);
  })
      .join();
  const struct mallinfo2 info = mallinfo2();
  const std::string path = std::string(dir) + "/sites.heap";
  if (!dump_function()(path.c_str())) {
    perror("profile_dump");
    return 1;
  }
  printf("site site_sixty %zu\nsite site_thirty %zu\nsite site_ten %zu\n", held[0].bytes, held[1].bytes,
         held[2].bytes);
  printf("mallinfo2 in use %zu\n", info.uordblks + info.hblkhd);
  for (Held& h : held)
    for (void* p : h.blocks) free(p);
  return 0;
}

__attribute__((noinline)) void leaky_function(std::vector<void*>& out) {
  for (int i = 0; i < 64; ++i) out.push_back(malloc(4096 + i));
  asm volatile("");
}

int leak() {
  static std::vector<void*>* leaked = new std::vector<void*>;  // reachable, but never freed
  leaked->reserve(64);                                         // the vector's buffer is not leaky_function's
  leaky_function(*leaked);
  std::vector<void*> tidy;
  for (int i = 0; i < 1000; ++i) tidy.push_back(malloc(100 + i));
  for (void* p : tidy) free(p);
  // A relative BITSLAB_PROFILE_PREFIX names a file in the directory the program started in.
  if (chdir("/") != 0) return 1;
  return 0;
}

// Each thread allocates 20000 blocks, frees half itself and passes half to its neighbour.
int threads() {
  constexpr int kThreads = 8;
  std::vector<void*> passed[kThreads];
  std::atomic<int> ready{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t) {
    pool.emplace_back([&, t] {
      std::vector<void*> mine;
      for (int i = 0; i < 20000; ++i) {
        // Half small blocks (their samples are glibc's, reached first from these threads),
        // half pool chunks (their samples are bitslab's, freed here by another thread).
        const size_t spread = static_cast<size_t>(i * 37 + t);
        void* p = malloc(i % 2 == 0 ? 16 + spread % 1000 : 1100 + spread % 19000);
        if (i % 2)
          mine.push_back(p);
        else
          passed[t].push_back(p);
      }
      for (void* p : mine) free(p);
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();
      for (void* p : passed[(t + 1) % kThreads]) free(p);
    });
  }
  for (auto& th : pool) th.join();
  return 0;
}

int fork_mode() {
  std::atomic<bool> stop{false};
  std::vector<std::thread> pool;
  for (int t = 0; t < 4; ++t)
    pool.emplace_back([&] {
      while (!stop.load()) {
        void* blocks[64];
        for (auto& b : blocks) b = malloc(4096);
        for (auto& b : blocks) free(b);
      }
    });
  int failures = 0;
  for (int round = 0; round < 20; ++round) {
    const pid_t child = fork();
    if (child == 0) {  // allocates through the inherited profiler, then exits normally
      std::vector<void*> blocks;
      for (int i = 0; i < 20000; ++i) blocks.push_back(malloc(64 + i % 8000));
      for (void* p : blocks) free(p);
      exit(0);
    }
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
      ++failures;
  }
  stop = true;
  for (auto& th : pool) th.join();
  printf("fork failures %d\n", failures);
  return failures == 0 ? 0 : 1;
}

int signal_mode() {
  alarm(60);  // a deadlock ends as a SIGALRM death, not a hung test
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    while (!stop.load()) {
      void* blocks[32];
      for (auto& b : blocks) b = malloc(256);
      for (auto& b : blocks) free(b);
    }
  });
  for (int i = 0; i < 400; ++i) {
    pthread_kill(worker.native_handle(), SIGUSR2);
    // Alternately slower and faster than a dump is written: signals land in samples (the
    // lock held by the thread's own malloc or free) and in dumps it deferred.
    usleep(i % 2 == 0 ? 600 : 20);
  }
  stop = true;
  worker.join();
  return 0;
}

int misuse(const std::string& how) {
  char* p = static_cast<char*>(malloc(5000));
  if (how == "realloc_double_free") {
    p = static_cast<char*>(realloc(p, 5050));  // in place or moved: a sample anew at rate 1
    p = static_cast<char*>(realloc(p, 20000));
  }
  if (how == "interior") p += 16;
  printf("%p\n", static_cast<void*>(p));  // the address the message must name
  fflush(stdout);
  if (how == "interior") {
    free(p);
  } else {
    free(p);
    free(p);
  }
  return 0;  // not reached when the misuse is caught
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "sites" && argc > 2) return sites(argv[2]);
  if (mode == "leak") return leak();
  if (mode == "threads") return threads();
  if (mode == "fork") return fork_mode();
  if (mode == "signal") return signal_mode();
  if (mode == "misuse" && argc > 2) return misuse(argv[2]);
  fprintf(stderr, "usage: profiled_program sites DIR | leak | threads | fork | signal | misuse HOW\n");
  return 2;
}
