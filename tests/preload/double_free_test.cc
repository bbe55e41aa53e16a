// Death test: a double free must abort the process (SIGABRT) with a one-line
// message on stderr that says "double free" and names the block's address.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/preload/preload.h"

namespace {

struct ChildResult {
  int status = 0;
  std::string stderr_text;
};

// Runs `action` in a forked child whose stderr goes to a pipe; returns the
// child's wait status and everything it wrote to stderr.
template <typename Action>
ChildResult run_in_child(Action action) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  std::fflush(nullptr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // doctest's crash handlers would report (and allocate) in the child;
    // the default action is what is being tested.
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGALRM}) std::signal(sig, SIG_DFL);
    alarm(10);  // watchdog: a hang must not stall the suite
    close(fds[0]);
    dup2(fds[1], STDERR_FILENO);
    close(fds[1]);
    action();
    _exit(0);  // reaching this means the double free went unnoticed
  }
  close(fds[1]);
  ChildResult result;
  char buffer[4096];
  for (;;) {
    const ssize_t got = read(fds[0], buffer, sizeof buffer);
    if (got > 0) {
      result.stderr_text.append(buffer, static_cast<std::size_t>(got));
    } else if (got == 0 || errno != EINTR) {
      break;
    }
  }
  close(fds[0]);
  REQUIRE(waitpid(pid, &result.status, 0) == pid);
  return result;
}

// Every "0x<hex>" number in the text, so the check does not depend on the
// case of the digits or on zero padding.
std::vector<std::uintptr_t> hex_numbers_in(const std::string& text) {
  std::vector<std::uintptr_t> numbers;
  for (std::size_t i = 0; i + 2 < text.size(); ++i) {
    if (text[i] == '0' && (text[i + 1] == 'x' || text[i + 1] == 'X') &&
        std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      numbers.push_back(static_cast<std::uintptr_t>(std::strtoull(text.c_str() + i + 2, nullptr, 16)));
    }
  }
  return numbers;
}

std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

void check_double_free_report(const ChildResult& result, const void* block) {
  INFO("child stderr: [", result.stderr_text, "]");
  REQUIRE_MESSAGE(WIFSIGNALED(result.status), "the child was not killed by a signal (exit status ",
                  WIFEXITED(result.status) ? WEXITSTATUS(result.status) : -1,
                  "): the double free was not detected");
  CHECK(WTERMSIG(result.status) == SIGABRT);
  CHECK(lowercase(result.stderr_text).find("double free") != std::string::npos);
  const auto numbers = hex_numbers_in(result.stderr_text);
  CHECK(std::find(numbers.begin(), numbers.end(), reinterpret_cast<std::uintptr_t>(block)) !=
        numbers.end());
}

}  // namespace

TEST_CASE("double free of a 32-byte block aborts and names the address") {
  // Allocated before the fork so the parent knows the address; the child
  // works on its copy of the heap.
  void* block = std::malloc(32);
  REQUIRE(block != nullptr);
  REQUIRE(preload::owns(block));
  const ChildResult result = run_in_child([block] {
    std::free(block);
    std::free(block);
  });
  check_double_free_report(result, block);
  std::free(block);  // the parent's copy was never freed
}

TEST_CASE("double free is caught even with other allocations in between") {
  void* block = std::malloc(32);
  REQUIRE(block != nullptr);
  const ChildResult result = run_in_child([block] {
    std::free(block);
    // Unrelated traffic in other size classes between the two frees.
    void* other[16];
    for (int i = 0; i < 16; ++i) other[i] = std::malloc(static_cast<std::size_t>(64 + 48 * i));
    for (void* p : other) std::free(p);
    std::free(block);
  });
  check_double_free_report(result, block);
  std::free(block);
}

TEST_CASE("double free of a pool-sized block aborts and names the address") {
  // Pool chunks (1025 .. bitslab_max_core_size()) have their own double-free
  // check (an allocation bitmap per region).
  for (std::size_t n : {std::size_t{4096}, std::size_t{100000}}) {
    CAPTURE(n);
    void* block = std::malloc(n);
    REQUIRE(block != nullptr);
    REQUIRE(preload::owns(block));
    const ChildResult result = run_in_child([block] {
      std::free(block);
      std::free(block);
    });
    check_double_free_report(result, block);
    std::free(block);
  }
}

TEST_CASE("a correct free sequence in the same setup does not abort") {
  // Control for the tests above: the fork/pipe harness itself must let a
  // well-behaved child exit 0 with nothing on stderr.
  const ChildResult result = run_in_child([] {
    void* p = std::malloc(32);
    std::free(p);
  });
  INFO("child stderr: [", result.stderr_text, "]");
  CHECK(WIFEXITED(result.status));
  CHECK(WEXITSTATUS(result.status) == 0);
  CHECK(result.stderr_text.empty());
}
