// fork() in a multi-threaded process: other threads are in the middle of
// malloc/free (holding allocator locks) at the moment of the fork. The child
// must still be able to allocate, free, start threads and exit; the parent
// must keep working too.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "tests/preload/preload.h"

namespace {

// Exit codes of the child, so that the parent can say what went wrong.
enum ChildStatus : int {
  kChildOk = 0,
  kChildAllocFailed = 10,
  kChildCorruptInherited = 11,
  kChildThreadFailed = 12,
  kChildNotOwned = 13,
};

constexpr unsigned kChildTimeoutSeconds = 10;

// doctest installs handlers for crash signals; in a child they would try to
// report through doctest's (parent-owned) state. Restore the defaults so a
// crash or the watchdog alarm simply kills the child.
void restore_default_signals() {
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGALRM})
    std::signal(sig, SIG_DFL);
}

bool fill_and_check(std::size_t n, unsigned char value) {
  auto* p = static_cast<unsigned char*>(std::malloc(n));
  if (p == nullptr) return false;
  std::memset(p, value, n);
  bool ok = p[0] == value && p[n - 1] == value;
  std::free(p);
  return ok;
}

// Everything the child does. Uses no doctest and exits with _exit.
[[noreturn]] void child_main(const unsigned char* inherited, std::size_t inherited_size) {
  restore_default_signals();
  // A deadlocked child (an allocator lock held by a thread that does not
  // exist in the child) is killed by SIGALRM instead of hanging the test.
  alarm(kChildTimeoutSeconds);

  // The block allocated before the fork is a private copy here: intact, and
  // the child may free it.
  for (std::size_t i = 0; i < inherited_size; ++i)
    if (inherited[i] != static_cast<unsigned char>(i * 7)) _exit(kChildCorruptInherited);
  std::free(const_cast<unsigned char*>(inherited));

  // Every size range, several times so thread caches are exercised.
  const std::size_t max = preload::max_core_size();
  for (int round = 0; round < 50; ++round) {
    for (std::size_t n : {std::size_t{1}, std::size_t{16}, std::size_t{200}, std::size_t{1024},
                          std::size_t{1025}, std::size_t{9000}, max, max + 1}) {
      if (!fill_and_check(n, static_cast<unsigned char>(round))) _exit(kChildAllocFailed);
    }
  }
  void* small = std::malloc(48);
  if (small == nullptr) _exit(kChildAllocFailed);
  if (!preload::owns(small)) _exit(kChildNotOwned);
  std::free(small);

  // A new thread in the child allocates, and frees a block of the main
  // thread (cross-thread free after fork).
  auto* shared = static_cast<int*>(std::malloc(sizeof(int) * 100));
  if (shared == nullptr) _exit(kChildAllocFailed);
  std::atomic<bool> thread_ok{false};
  std::thread worker([&] {
    std::vector<std::string> words;
    for (int i = 0; i < 1000; ++i) words.push_back("child word " + std::to_string(i));
    std::free(shared);
    thread_ok = words[999] == "child word 999";
  });
  worker.join();
  if (!thread_ok) _exit(kChildThreadFailed);
  _exit(kChildOk);
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    std::string s = "killed by signal " + std::to_string(WTERMSIG(status));
    if (WTERMSIG(status) == SIGALRM) s += " (watchdog: the child hung, probably on an allocator lock)";
    return s;
  }
  return "status " + std::to_string(status);
}

}  // namespace

TEST_CASE("fork while other threads are allocating: the child can allocate, free, spawn threads") {
  constexpr int kBusyThreads = 3;
  constexpr int kForks = 30;
  std::atomic<bool> stop{false};
  std::atomic<long> busy_failures{0};

  std::vector<std::thread> busy;
  for (int t = 0; t < kBusyThreads; ++t) {
    busy.emplace_back([&, t] {
      std::uint64_t x = 12345 + t;
      std::vector<void*> live(64, nullptr);
      const std::size_t max = preload::max_core_size();
      while (!stop.load(std::memory_order_relaxed)) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        const std::size_t slot = (x >> 33) % live.size();
        std::free(live[slot]);
        // Mostly small and pool sizes, occasionally large.
        const std::size_t roll = (x >> 20) % 100;
        const std::size_t n = roll < 60 ? 1 + (x >> 40) % 1024
                              : roll < 98 ? 1025 + (x >> 40) % 30000
                                          : max + 1 + (x >> 40) % 4096;
        live[slot] = std::malloc(n);
        if (live[slot] == nullptr) ++busy_failures;
        else static_cast<char*>(live[slot])[n - 1] = 1;
      }
      for (void* p : live) std::free(p);
    });
  }

  for (int i = 0; i < kForks; ++i) {
    CAPTURE(i);
    // Let the busy threads get going between forks.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    const std::size_t inherited_size = 300;
    auto* inherited = static_cast<unsigned char*>(std::malloc(inherited_size));
    REQUIRE(inherited != nullptr);
    for (std::size_t j = 0; j < inherited_size; ++j) inherited[j] = static_cast<unsigned char>(j * 7);

    std::fflush(nullptr);  // nothing buffered may be written twice
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) child_main(inherited, inherited_size);

    // The parent keeps allocating while the child runs.
    CHECK(fill_and_check(5000, 0x33));
    std::free(inherited);

    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    INFO("child ", describe(status));
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == kChildOk);
  }

  stop = true;
  for (auto& t : busy) t.join();
  CHECK(busy_failures == 0);
}

TEST_CASE("a forked child can fork again and both generations allocate") {
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    restore_default_signals();
    alarm(kChildTimeoutSeconds);
    if (!fill_and_check(700, 1)) _exit(kChildAllocFailed);
    const pid_t grandchild = fork();
    if (grandchild < 0) _exit(20);
    if (grandchild == 0) {
      _exit(fill_and_check(70000, 2) && fill_and_check(70, 3) ? kChildOk : kChildAllocFailed);
    }
    int status = 0;
    if (waitpid(grandchild, &status, 0) != grandchild) _exit(21);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) _exit(22);
    _exit(fill_and_check(3000, 4) ? kChildOk : kChildAllocFailed);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  INFO("child ", describe(status));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == kChildOk);
}
