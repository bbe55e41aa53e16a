// core/profile/stack_trace.h — the call stack of a sampled allocation, unwound with libgcc's
// unwinder from the DWARF call-frame tables, so that programs built without frame pointers
// (Debian's, among them) get whole stacks (L3).
//
// libgcc_s is dlopen'ed by load_unwinder(), at start-up and only when profiling is on: the
// library otherwise needs nothing but libc (the tools.needs_only_libc check). Our own frames are
// told apart by their CFA, which works the same whether bitslab is preloaded or linked into the
// program. Unwinding calls no malloc of ours that could sample (the caller marks the thread as
// inside the profiler first).
//
// libunwind's cached backtrace was tried: 126 ns against libgcc's 1464 for 17 frames, but its
// per-thread cache cost bench/threads 80% more time and 1.3 MB more RSS (thread churn), and
// 0.5 MB on the small benchmarks; libgcc_s is loaded in every C++ program already.
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
}  // namespace detail

// Fills frames[] with the return addresses of the program's frames above the allocator's,
// innermost first, at most kMaxFrames. Returns how many. below_cfa: the routed function's own
// __builtin_dwarf_cfa(): it and what it calls are left out. Inline: every frame of ours the
// walk passes through costs as much as one of the program's (~1.9K instructions in libgcc).
BITSLAB_ALWAYS_INLINE size_t capture_stack(uintptr_t frames[kMaxFrames], const void* below_cfa) {
  if (detail::g_backtrace == nullptr) return 0;
  detail::Walk walk{frames, 0, reinterpret_cast<uintptr_t>(below_cfa)};
  detail::g_backtrace(detail::visit, &walk);
  return walk.count;
}

}  // namespace bitslab::profile
