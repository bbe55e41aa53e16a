// A process's whole life under the preloaded allocator, in the shapes glibc's own malloc tests
// check (fork from a signal handler, fork against stdio, cancellation, exit while threads
// allocate, vfork, posix_spawn, tiny stacks, generations of forks). One program, one scenario
// per mode; each prints "<mode>: ok ..." and exits 0 when the scenario held. A hang is the usual
// failure: ctest's timeout (and scripts/lifecycle-hangs, which runs them many times) catch it.
//
//   lifecycle MODE [ARGS]   (no arguments: the list of modes)
// Plain C++ and libc only, so that every allocation goes through whatever malloc is preloaded.
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "tests/support/scenario_modes.h"

extern char** environ;

namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "lifecycle: %s (errno %d: %s)\n", what, errno, std::strerror(errno));
  std::exit(2);
}

uint64_t now_ns() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1000000000u + static_cast<uint64_t>(t.tv_nsec);
}

// xorshift: cheap, no allocation.
uint64_t next_random(uint64_t& state) {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

// Small, pool-sized and page-sized blocks: every kind of block the core has.
size_t mixed_size(uint64_t r) {
  switch (r % 8) {
    case 0:
      return 1025 + (r >> 8) % 20000;  // pool
    case 1:
      return 4096 + (r >> 8) % 4096;  // a page and more
    default:
      return 8 + (r >> 8) % 1000;  // slabs
  }
}

// Joins a thread or dies: a test must never leave one behind.
void join(pthread_t t) {
  if (pthread_join(t, nullptr) != 0) die("pthread_join");
}

int reap(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) die("waitpid");
  return status;
}

// ---- 1. fork() from a signal handler in a single-threaded process -------------------------
//
// Another process sends SIGUSR1 every ~150 us; the handler forks, the child _exits and the
// handler reaps it. Meanwhile the only thread churns malloc/free over every kind of block, so
// the signal often lands inside the allocator, holding whatever it holds.
volatile sig_atomic_t g_forks = 0;
volatile sig_atomic_t g_fork_failures = 0;

void fork_in_handler(int) {
  const int saved = errno;
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  if (pid < 0) {
    g_fork_failures = g_fork_failures + 1;
  } else {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) g_fork_failures = g_fork_failures + 1;
    g_forks = g_forks + 1;
  }
  errno = saved;
}

int signal_fork(int argc, char** argv) {
  const long wanted = argc > 2 ? std::atol(argv[2]) : 1000;
  struct sigaction sa {};
  sa.sa_handler = fork_in_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  if (sigaction(SIGUSR1, &sa, nullptr) != 0) die("sigaction");
  const pid_t target = getpid();
  const pid_t sender = fork();  // before any thread: the process stays single-threaded
  if (sender < 0) die("fork");
  if (sender == 0) {
    for (;;) {
      if (kill(target, SIGUSR1) != 0) _exit(0);  // the target is gone
      usleep(150);
    }
  }
  static void* slots[256];
  uint64_t state = 0x9e3779b97f4a7c15u;
  const uint64_t deadline = now_ns() + 60ull * 1000000000u;
  for (uint64_t i = 0; g_forks < wanted && now_ns() < deadline; ++i) {
    const uint64_t r = next_random(state);
    void*& slot = slots[r % 256];
    std::free(slot);
    slot = std::malloc(mixed_size(r >> 8));
    if (slot == nullptr) die("malloc");
    static_cast<char*>(slot)[0] = 1;
    // Give the empty pages back now and then, so that the churn keeps asking for new ones: the
    // allocator's locks are taken often, and the signal often lands while one is held.
    if (i % 64 == 0) malloc_trim(0);
  }
  kill(sender, SIGKILL);
  reap(sender);
  for (void*& slot : slots) std::free(slot);
  if (g_forks < wanted || g_fork_failures != 0) {
    std::fprintf(stderr, "signal-fork: %ld forks of %ld in 60 s, %ld failed\n", static_cast<long>(g_forks),
                 wanted, static_cast<long>(g_fork_failures));
    return 1;
  }
  std::printf("signal-fork: ok, %ld forks from a signal handler\n", static_cast<long>(g_forks));
  return 0;
}

// ---- 2. fork() in a threaded process against stdio -----------------------------------------
//
// 8 threads getline() a 60 000-byte line from one shared FILE (each holds the FILE's lock and
// reallocs its buffer under it), 2 threads fflush(NULL) (stdio's list lock, then each FILE's
// lock), 4 threads fork (the child mallocs and exits). A fork protocol that takes the
// allocator's locks while another thread holds stdio's list lock can deadlock the three.
std::atomic<bool> g_stop{false};
FILE* g_shared_file = nullptr;
std::atomic<long> g_stdio_forks{0};

void* getline_loop(void*) {
  char* line = nullptr;
  size_t capacity = 0;
  while (!g_stop.load(std::memory_order_relaxed)) {
    flockfile(g_shared_file);
    if (getline(&line, &capacity, g_shared_file) < 0) rewind(g_shared_file);
    funlockfile(g_shared_file);
    std::free(line);  // a fresh buffer each time: getline reallocs from nothing
    line = nullptr;
    capacity = 0;
  }
  return nullptr;
}

void* flush_loop(void*) {
  while (!g_stop.load(std::memory_order_relaxed)) fflush(nullptr);
  return nullptr;
}

void* fork_loop(void*) {
  while (!g_stop.load(std::memory_order_relaxed)) {
    const pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      void* p = std::malloc(100);
      void* q = std::malloc(70000);
      std::free(p);
      std::free(q);
      _exit(p != nullptr && q != nullptr ? 0 : 1);
    }
    const int status = reap(pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("a forked child failed");
    g_stdio_forks.fetch_add(1, std::memory_order_relaxed);
  }
  return nullptr;
}

int stdio_fork(int argc, char** argv) {
  const double seconds = argc > 2 ? std::atof(argv[2]) : 4.0;
  char path[] = "/tmp/bitslab-lifecycle-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) die("mkstemp");
  FILE* writer = fdopen(fd, "w");
  for (int i = 0; i < 60000; ++i) fputc('a' + i % 26, writer);
  fputc('\n', writer);
  fclose(writer);
  g_shared_file = std::fopen(path, "r");
  unlink(path);
  if (g_shared_file == nullptr) die("fopen");
  pthread_t threads[14];
  int n = 0;
  for (int i = 0; i < 8; ++i) pthread_create(&threads[n++], nullptr, getline_loop, nullptr);
  for (int i = 0; i < 2; ++i) pthread_create(&threads[n++], nullptr, flush_loop, nullptr);
  for (int i = 0; i < 4; ++i) pthread_create(&threads[n++], nullptr, fork_loop, nullptr);
  usleep(static_cast<useconds_t>(seconds * 1e6));
  g_stop = true;
  for (int i = 0; i < n; ++i) join(threads[i]);
  std::fclose(g_shared_file);
  std::printf("stdio-fork: ok, %ld forks against getline and fflush(NULL) in %.1f s\n", g_stdio_forks.load(),
              seconds);
  return 0;
}

// ---- 3. cancellation: malloc_stats() is not a cancellation point ----------------------------
//
// A thread with a cancel pending calls malloc_stats(): the whole report (bitslab's, then
// glibc's) must come out, as under glibc, which disables cancellation around its output; the
// cancel acts at the next cancellation point (pthread_testcancel).
std::atomic<int> g_cancel_stage{0};

void* stats_with_cancel_pending(void*) {
  int old = 0;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
  g_cancel_stage = 1;
  while (g_cancel_stage != 2) usleep(100);  // main cancels meanwhile: the cancel is now pending
  pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
  malloc_stats();
  g_cancel_stage = 3;  // reached only if malloc_stats was not a cancellation point
  pthread_testcancel();
  return nullptr;
}

int cancel_stats(int, char**) {
  std::free(std::malloc(100));  // something to report
  pthread_t t;
  pthread_create(&t, nullptr, stats_with_cancel_pending, nullptr);
  while (g_cancel_stage != 1) usleep(100);
  pthread_cancel(t);
  g_cancel_stage = 2;
  void* result = nullptr;
  pthread_join(t, &result);
  if (result != PTHREAD_CANCELED || g_cancel_stage != 3) {
    std::fprintf(
        stderr, "cancel-stats: the thread %s\n",
        result == PTHREAD_CANCELED ? "was cancelled inside malloc_stats" : "was not cancelled at all");
    return 1;
  }
  std::printf("cancel-stats: ok, malloc_stats ran whole with a cancel pending\n");
  return 0;
}

// ---- 4. exit() while other threads allocate, free each other's blocks and come and go -------
std::atomic<void*> g_mailbox[64];

void* churn(void* arg) {
  uint64_t state = reinterpret_cast<uintptr_t>(arg) * 0x9e3779b97f4a7c15u + 1;
  for (;;) {  // until the process exits
    const uint64_t r = next_random(state);
    void* p = std::malloc(mixed_size(r));
    if (p == nullptr) die("malloc");
    static_cast<char*>(p)[0] = 1;
    std::free(g_mailbox[(r >> 20) % 64].exchange(p));  // often another thread's block
  }
  return nullptr;
}

void* short_life(void*) {
  void* p = std::malloc(200);
  std::free(g_mailbox[0].exchange(p));
  return nullptr;
}

void* spawner(void*) {
  for (;;) {
    pthread_t t;
    if (pthread_create(&t, nullptr, short_life, nullptr) == 0) pthread_join(t, nullptr);
  }
  return nullptr;
}

// Threads that run until the process ends: 3 churners and a thread that keeps starting threads.
void start_busy_threads() {
  for (uintptr_t i = 1; i <= 3; ++i) {
    pthread_t t;
    if (pthread_create(&t, nullptr, churn, reinterpret_cast<void*>(i)) != 0) die("pthread_create");
    pthread_detach(t);
  }
  pthread_t t;
  if (pthread_create(&t, nullptr, spawner, nullptr) != 0) die("pthread_create");
  pthread_detach(t);
  usleep(30000);
}

int exit_busy(int, char**) {
  start_busy_threads();
  std::printf("exit-while-busy: ok, calling exit() with threads running\n");
  std::fflush(stdout);
  std::exit(0);
}

int quick_exit_busy(int, char**) {
  start_busy_threads();
  std::printf("quick-exit: ok, calling quick_exit() with threads running\n");
  std::fflush(stdout);
  std::quick_exit(0);
}

// vfork: the child shares the parent's memory and runs only until _exit; it must not touch the
// allocator's state, and the parent, whose other threads kept going, goes on.
int vfork_exit(int, char**) {
  start_busy_threads();
  for (int i = 0; i < 200; ++i) {
    const pid_t pid = vfork();
    if (pid == 0) _exit(7);
    if (pid < 0) die("vfork");
    const int status = reap(pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 7) die("a vfork child did not _exit(7)");
  }
  std::printf("vfork-exit: ok, 200 vfork children _exited while threads ran\n");
  std::fflush(stdout);
  _exit(0);
}

int spawn_busy(int, char**) {
  start_busy_threads();
  for (int i = 0; i < 100; ++i) {
    pid_t pid;
    char arg0[] = "true";
    char* args[] = {arg0, nullptr};
    if (posix_spawnp(&pid, "true", nullptr, nullptr, args, environ) != 0) die("posix_spawnp");
    const int status = reap(pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("a spawned true failed");
  }
  std::printf("spawn: ok, 100 posix_spawn of true while threads ran\n");
  std::fflush(stdout);
  _exit(0);
}

// ---- 5. a thread with a 16 KiB stack allocates ----------------------------------------------
void* allocate_every_kind(void*) {
  void* blocks[4] = {std::malloc(24), std::malloc(3000), std::malloc(100000), std::malloc(1 << 20)};
  for (void* p : blocks) {
    if (p == nullptr) return nullptr;
    std::memset(p, 1, 16);
  }
  for (void* p : blocks) std::free(p);
  return reinterpret_cast<void*>(1);
}

int tiny_stack(int, char**) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  if (pthread_attr_setstacksize(&attr, 16384) != 0) die("pthread_attr_setstacksize(16 KiB)");
  for (int i = 0; i < 20; ++i) {
    pthread_t t;
    if (pthread_create(&t, &attr, allocate_every_kind, nullptr) != 0) die("pthread_create");
    void* result = nullptr;
    pthread_join(t, &result);
    if (result == nullptr) die("a 16 KiB-stack thread could not allocate");
  }
  std::printf("tiny-stack: ok, 20 threads with 16 KiB stacks allocated and freed every kind\n");
  return 0;
}

// ---- 6. fork in a child of a child, threads running at each generation -----------------------
std::atomic<bool> g_generation_stop{false};

void* generation_churn(void* arg) {
  uint64_t state = reinterpret_cast<uintptr_t>(arg) + 7;
  while (!g_generation_stop.load(std::memory_order_relaxed)) {
    const uint64_t r = next_random(state);
    void* p = std::malloc(mixed_size(r));
    if (p == nullptr) die("malloc");
    std::free(g_mailbox[(r >> 20) % 64].exchange(p));
  }
  return nullptr;
}

int generation(int depth) {
  g_generation_stop = false;
  pthread_t threads[2];
  for (uintptr_t i = 0; i < 2; ++i)
    pthread_create(&threads[i], nullptr, generation_churn, reinterpret_cast<void*>(i));
  usleep(20000);
  int result = 0;
  if (depth < 3) {
    const pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      alarm(20);  // watchdog
      _exit(generation(depth + 1));
    }
    const int status = reap(pid);
    result = WIFEXITED(status) ? WEXITSTATUS(status) : 100 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  }
  g_generation_stop = true;
  for (pthread_t t : threads) join(t);
  for (auto& slot : g_mailbox) std::free(slot.exchange(nullptr));
  return result;
}

int fork_generations(int, char**) {
  const int result = generation(1);
  if (result != 0) {
    std::fprintf(stderr, "fork-generations: a descendant ended with %d\n", result);
    return 1;
  }
  std::printf("fork-generations: ok, 3 generations forked with threads running in each\n");
  return 0;
}

// ---- 7. dlopen of the library instead of a preload -------------------------------------------
//
// LIB is loaded after start-up: the program's malloc stays glibc's (it was bound first), and the
// library works as the C++ API library. Its free still hands glibc's blocks to glibc. After
// dlclose, a thread that used it exits and the process forks: the library's thread-exit and fork
// handlers must still be there (it is never unloaded).
int dlopen_library(int argc, char** argv) {
  if (argc < 3) die("usage: lifecycle dlopen LIB");
  void* lib = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    std::fprintf(stderr, "dlopen: %s\n", dlerror());
    return 1;
  }
  using Alloc = void* (*)(size_t);
  using Free = void (*)(void*);
  using Owns = bool (*)(const void*);
  auto alloc = reinterpret_cast<Alloc>(dlsym(lib, "_ZN7bitslab5allocEm"));
  auto release = reinterpret_cast<Free>(dlsym(lib, "_ZN7bitslab4freeEPv"));
  auto owns = reinterpret_cast<Owns>(dlsym(lib, "_ZN7bitslab4ownsEPKv"));
  auto lib_free = reinterpret_cast<Free>(dlsym(lib, "free"));
  if (alloc == nullptr || release == nullptr || owns == nullptr || lib_free == nullptr) die("dlsym");
  void* mine = alloc(100);
  void* theirs = std::malloc(100);  // the program's malloc: still glibc's
  if (mine == nullptr || !owns(mine) || theirs == nullptr || owns(theirs)) die("ownership after dlopen");
  release(mine);
  lib_free(theirs);  // the library's free takes glibc's block back to glibc
  pthread_t t;
  pthread_create(
      &t, nullptr,
      [](void* a) -> void* {
        void* p = reinterpret_cast<Alloc>(a)(64);  // this thread gets a heap, and an exit hook
        return p;
      },
      reinterpret_cast<void*>(alloc));
  void* from_thread = nullptr;
  pthread_join(t, &from_thread);
  release(from_thread);
  // A thread that allocated through the library exits after dlclose: its exit hook (the
  // library's pthread key destructor) must still be mapped.
  static std::atomic<int> stage{0};
  pthread_create(
      &t, nullptr,
      [](void* a) -> void* {
        void* p = reinterpret_cast<Alloc>(a)(64);
        stage = 1;
        while (stage != 2) usleep(100);
        return p;
      },
      reinterpret_cast<void*>(alloc));
  while (stage != 1) usleep(100);
  dlclose(lib);
  stage = 2;
  pthread_join(t, &from_thread);
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  const int status = reap(pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("fork after dlclose");
  std::printf("dlopen: ok, used as the C++ API library, glibc's blocks stayed glibc's\n");
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  static const bitslab::test::ScenarioMode modes[] = {
      {"signal-fork", signal_fork, "[N]  N forks (1000) from a SIGUSR1 handler while malloc churns"},
      {"stdio-fork", stdio_fork, "[S]  forks against getline and fflush(NULL) threads for S s (4)"},
      {"cancel-stats", cancel_stats, "     malloc_stats() in a thread with a cancel pending"},
      {"exit-while-busy", exit_busy, "     exit() while threads allocate, free each other's blocks, start"},
      {"quick-exit", quick_exit_busy, "     quick_exit() likewise"},
      {"vfork-exit", vfork_exit, "     200 vfork children that _exit, threads running"},
      {"spawn", spawn_busy, "     100 posix_spawn of true, threads running"},
      {"tiny-stack", tiny_stack, "     threads with 16 KiB stacks allocate every kind of block"},
      {"fork-generations", fork_generations, "     fork in a child of a child, threads in each"},
      {"dlopen", dlopen_library, "LIB  dlopen the library instead of preloading it"},
  };
  // Under ctest every mode but dlopen runs preloaded: LIFECYCLE_REQUIRE_BITSLAB=1 makes sure
  // the program's malloc really is bitslab's before the scenario starts.
  if (const char* require = std::getenv("LIFECYCLE_REQUIRE_BITSLAB");
      require != nullptr && require[0] == '1') {
    using Owns = int (*)(const void*);
    auto owns = reinterpret_cast<Owns>(dlsym(RTLD_DEFAULT, "bitslab_owns"));
    void* probe = std::malloc(16);
    if (owns == nullptr || !owns(probe)) {
      std::fprintf(stderr, "lifecycle: malloc is not bitslab's (is LD_PRELOAD set?)\n");
      return 2;
    }
    std::free(probe);
  }
  return bitslab::test::run_scenario_mode(argc, argv, modes);
}
