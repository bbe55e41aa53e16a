#include "tests/support/child.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace bitslab::test {

ChildResult run_in_child(const std::function<void()>& body, unsigned watchdog_seconds) {
  ChildResult result;
  int fds[2];
  if (pipe(fds) != 0) return result;
  fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return result;
  if (pid == 0) {
    // doctest's crash handlers would report (and allocate) in the child; the default
    // action of the signal is what is being tested.
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGALRM}) signal(sig, SIG_DFL);
    alarm(watchdog_seconds);  // watchdog: a hang must not stall the suite
    close(fds[0]);
    dup2(fds[1], 2);
    close(fds[1]);
    body();
    _exit(0);
  }
  close(fds[1]);
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n > 0) result.stderr_text.append(buf, static_cast<size_t>(n));
    else if (n == 0 || errno != EINTR) break;
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exited = WIFEXITED(status);
  result.exit_code = result.exited ? WEXITSTATUS(status) : -1;
  result.signaled = WIFSIGNALED(status);
  result.signal = result.signaled ? WTERMSIG(status) : 0;
  return result;
}

std::string hex_address(const void* p) {
  char buf[32];
  snprintf(buf, sizeof buf, "0x%lx", reinterpret_cast<unsigned long>(p));
  return buf;
}

bool aborted_naming(const ChildResult& r, const void* address, const std::string& words) {
  const std::string& text = r.stderr_text;
  const bool one_line = !text.empty() && text.find('\n') == text.size() - 1;
  return r.signaled && r.signal == SIGABRT && one_line &&
         text.find(words) != std::string::npos && text.find(hex_address(address)) != std::string::npos;
}

std::string describe(const ChildResult& r) {
  return "child: signaled=" + std::to_string(r.signaled) + " signal=" + std::to_string(r.signal) +
         " exit=" + std::to_string(r.exit_code) + " stderr: [" + r.stderr_text + "]";
}

}  // namespace bitslab::test
