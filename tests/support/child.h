// tests/support/child.h — run a function in a forked child and report how it ended, with
// everything it wrote to stderr (for death tests: a double free must abort and name the block).
#pragma once
#include <csignal>
#include <functional>
#include <string>

namespace bitslab::test {

struct ChildResult {
  bool exited = false;     // ended through exit()
  int exit_code = -1;
  bool signaled = false;   // killed by a signal
  int signal = 0;
  std::string stderr_text;
};

// The child dies of SIGALRM after watchdog_seconds: a hang fails the test instead of stalling it.
ChildResult run_in_child(const std::function<void()>& body, unsigned watchdog_seconds = 10);

// "0x1234abcd" as fatal() prints it.
std::string hex_address(const void* p);

// Whether the child ended as bitslab reports a corrupt free: killed by SIGABRT after writing
// one line to stderr that contains `words` and the address (fatal()'s "bitslab: <what> 0x...").
// For CHECK(aborted_naming(...)); describe(r) says what happened instead.
bool aborted_naming(const ChildResult& r, const void* address, const std::string& words);
std::string describe(const ChildResult& r);

}  // namespace bitslab::test
