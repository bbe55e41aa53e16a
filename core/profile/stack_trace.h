// core/profile/stack_trace.h — the call stack of a sampled allocation, unwound from the DWARF
// call-frame tables, so that programs built without frame pointers (Debian's, among them) get
// whole stacks (L3).
//
// Two walks give the same frames. On x86-64 the profiler's own walk steps through frames by
// the rules in core/profile/frame_rule_cache.h: a few loads a frame once a call site is known.
// A stack with a frame that walk does not follow (a signal frame, a CFA computed by a DWARF
// expression) is walked again by libgcc's unwinder, which follows everything; on other
// architectures libgcc's walk is the only one.
//
// libgcc_s is dlopen'ed by load_unwinder(), at start-up and only when profiling is on: the
// library otherwise needs nothing but libc (the tools.needs_only_libc check). Our own frames are
// told apart by their CFA, which works the same whether bitslab is preloaded or linked into the
// program. Unwinding calls no malloc of ours that could sample (the caller marks the thread as
// inside the profiler first).
//
// Per sample of a 17-frame stack, libgcc's walk took 1464 ns. libunwind's cached backtrace took
// 126 ns, but its per-thread cache cost bench/threads 80% more time and 1.3 MB more RSS (thread
// churn); the profiler's cache is one table for every thread.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/base/compiler.h"

namespace bitslab::profile {

constexpr size_t kMaxFrames = 64;

// Loads the unwinder; false (with nothing changed) when libgcc_s cannot be loaded. Call from a
// library constructor, never from inside malloc (dlopen allocates and takes the loader's lock).
bool load_unwinder();

namespace detail {
// libgcc's unwinder interface (unwind.h), declared here so that nothing links against it.
struct UnwindContext;
enum UnwindReason { kNoReason = 0, kEndOfStack = 5 };
using TraceFn = UnwindReason (*)(UnwindContext*, void*);
using BacktraceFn = UnwindReason (*)(TraceFn, void*);
extern BacktraceFn g_backtrace;  // null until load_unwinder()
struct Walk {
  uintptr_t* frames;
  size_t count;
  uintptr_t below_cfa;
};
// The walk's step: keeps the frame's return address if it is above below_cfa.
UnwindReason visit(UnwindContext* context, void* walk);

#if defined(__x86_64__)
// Where a cached walk starts: an instruction of the caller (inlined into it), and rsp and rbp
// as they are at it.
struct WalkStart {
  uintptr_t pc, sp, bp;
};
BITSLAB_ALWAYS_INLINE WalkStart walk_start_here() {
  WalkStart w;
  asm volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2" : "=r"(w.pc), "=r"(w.sp), "=r"(w.bp));
  return w;
}
#endif

// libgcc's walk: what capture_stack returns, for any stack.
size_t walk_with_libgcc(uintptr_t frames[kMaxFrames], uintptr_t below_cfa);
#if defined(__x86_64__)
// The cached walk from `start` (x86-64): fills frames[] and count as libgcc's would. false when
// a frame's rule is one it does not follow (frames[] is then not the stack).
bool walk_with_rules(uintptr_t frames[kMaxFrames], size_t& count, uintptr_t below_cfa, WalkStart start);
#endif
}  // namespace detail

// Fills frames[] with the return addresses of the program's frames above the allocator's,
// innermost first, at most kMaxFrames. Returns how many. below_cfa: the routed function's own
// __builtin_dwarf_cfa(): it and what it calls are left out. Inline: every frame of ours the
// walk passes through costs as much as one of the program's (~1.9K instructions in libgcc).
BITSLAB_ALWAYS_INLINE size_t capture_stack(uintptr_t frames[kMaxFrames], const void* below_cfa) {
  if (detail::g_backtrace == nullptr) return 0;
  const auto below = reinterpret_cast<uintptr_t>(below_cfa);
#if defined(__x86_64__)
  size_t count;
  if (detail::walk_with_rules(frames, count, below, detail::walk_start_here())) return count;
#endif
  return detail::walk_with_libgcc(frames, below);
}

}  // namespace bitslab::profile
