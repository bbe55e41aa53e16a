// The fork protocol in a single-threaded process (core/thread/fork.cc): a fork from a signal
// handler can interrupt this very thread inside malloc, holding one of the core's locks. prefork
// must then take nothing (nobody else can hold a lock), and leave the held lock to the code that
// holds it. Deterministic stand-in for that moment: the only thread holds each lock in turn and
// forks. Had prefork tried to take the lock, it would spin forever on itself; the watchdog
// (alarm) then kills the process and the test fails.
//
// A program of its own, not a doctest case: the unit test binary has started threads, and glibc
// never marks a process single-threaded again once it has (not even a fork child).
#include <sys/single_threaded.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include "core/api/bitslab.h"
#include "core/thread/fork.h"

int main() {
  alarm(10);                          // watchdog: a prefork that waits on a held lock never returns
  bitslab::free(bitslab::alloc(64));  // the core is initialised, its fork handlers registered
  if (!__libc_single_threaded) {
    std::fprintf(stderr, "fork_single_threaded: the process is not single-threaded\n");
    return 2;
  }
  bitslab::fork_protocol::NamedLock locks[bitslab::fork_protocol::kMaxLocks];
  const size_t n = bitslab::fork_protocol::locks(locks);
  for (size_t i = 0; i < n; ++i) {
    locks[i].lock->lock();  // as malloc holds it when the signal comes
    const pid_t pid = fork();
    if (pid == 0) _exit(0);  // a handler's child: async-signal-safe calls only
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "fork_single_threaded: fork with '%s' %u held failed\n", locks[i].name,
                   locks[i].index);
      return 1;
    }
    locks[i].lock->unlock();  // the interrupted code goes on and releases it
    // ...and the allocator is whole: every kind of block still comes and goes.
    for (size_t size : {24, 3000, 100000}) {
      void* p = bitslab::alloc(size);
      if (p == nullptr) return 1;
      bitslab::free(p);
    }
  }
  std::printf("fork_single_threaded: ok, forked with each of %zu locks held by the only thread\n", n);
  return 0;
}
