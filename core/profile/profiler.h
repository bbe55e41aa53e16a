// core/profile/profiler.h — the sampling heap profiler (BITSLAB_PROFILE=1): which code holds
// the memory, at no cost to the fast path when it is off (L3).
//
// How it stays off the fast path: once start() has loaded the unwinder, it sets the shim's route
// threshold to 0 (core/base/options.h), so malloc's one size compare sends every request to the
// routed path (core/api/dispatch.h), which runs the sample clock and then serves the request as
// the fast path would have. When the profiler is off the threshold is the large threshold, and
// no fast path has an instruction more.
//
// Where samples live: a sampled block is served by the system allocator (glibc), so its free
// leaves our fast path on its own (the pointer is not ours) and reaches forget(). The block is
// an ordinary glibc block: sized, aligned and usable as asked. One block in ~rate/size of a
// class, so the heap's shape barely changes.
//
// Fork: the child inherits the profile (its copies of the sampled blocks are live in it) and
// writes its own file at exit, PREFIX.CHILDPID.heap. Threads: one sample clock per heap (so per
// thread: ThreadHeap::sample_clock), one lock for the tables, taken only at samples and at frees
// of system blocks.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/base/compiler.h"
#include "core/base/spin_lock.h"
#include "core/profile/sample_clock.h"
#include "core/profile/stack_trace.h"

namespace bitslab::profile {

namespace detail {
extern bool g_sampling;
extern uint64_t g_rate;
// Set while this thread is in the profiler: its own allocations are not sampled, and a dump
// signal that arrives meanwhile waits instead of taking the lock this thread may hold.
extern BITSLAB_TLS constinit bool tls_inside;
}  // namespace detail
// Whether the profiler samples: set once, by start().
inline bool sampling() { return detail::g_sampling; }

// Turns profiling on when options() ask for it: loads the unwinder, maps the tables, installs
// the SIGUSR2 handler if asked, then routes every allocation through the sample clock. From a
// library constructor (outside malloc). False when off or when it cannot start (warned).
bool start();

// At a clock that expired (SampleClock::count_down; each heap has one, ThreadHeap::sample_clock):
// whether this allocation of `size` bytes is a sample; either way the clock is re-armed for the
// next, with a window of at most `cap` bytes. Never inside the profiler itself (what the
// unwinder allocates is not sampled), and never a request of 0 bytes (its weight would be 1/0
// in pprof's reader): the clock is then left as it is, and asks again at the next request.
bool take_sample(SampleClock& clock, size_t size, uint64_t cap);
// A sample's call stack. Taken by the routed function itself, before it allocates: each of our
// frames the unwinder walks through costs as much as one of the program's (~1.3K instructions).
struct Stack {
  uintptr_t frames[kMaxFrames];
  size_t depth;
};
// The stack above the frame whose CFA is `below_cfa` (the routed function's own
// __builtin_dwarf_cfa()). What the unwinder allocates meanwhile is not sampled.
inline void capture(Stack& stack, const void* below_cfa) {
  detail::tls_inside = true;
  stack.depth = capture_stack(stack.frames, below_cfa);
  detail::tls_inside = false;
}
// Records `block` (`size` bytes, the system's) as a live sample allocated at `stack`.
void record(void* block, size_t size, const Stack& stack);
// A block of the system's is being freed or moved: if it was a sample, it is live no more.
void forget(void* block);

// Writes the profile (pprof's legacy heap format: live and allocated samples per stack and
// size, then /proc/self/maps) to `path`. false (errno set) when the file cannot be written or
// the profiler is off (EINVAL).
bool dump(const char* path);
// At exit: writes PREFIX.PID.heap, and with BITSLAB_LEAK_CHECK=1 lists the largest leak sites
// by stack on report_fd.
void finish(int report_fd);

// The tables' lock, for the fork protocol (core/thread/fork.cc). Code holding it takes no other.
SpinLock& fork_lock();

}  // namespace bitslab::profile
