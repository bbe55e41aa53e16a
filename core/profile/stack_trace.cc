#include "core/profile/stack_trace.h"

#include <dlfcn.h>

namespace bitslab::profile {

namespace {
// libgcc's unwinder interface (unwind.h), declared here so that nothing links against it.
struct UnwindContext;
enum UnwindReason { kNoReason = 0, kEndOfStack = 5 };
using TraceFn = UnwindReason (*)(UnwindContext*, void*);
using BacktraceFn = UnwindReason (*)(TraceFn, void*);
using GetFn = uintptr_t (*)(UnwindContext*);
BacktraceFn g_backtrace = nullptr;
GetFn g_get_ip = nullptr;
GetFn g_get_cfa = nullptr;

struct Walk {
  uintptr_t* frames;
  size_t count;
  uintptr_t below_cfa;
};

UnwindReason visit(UnwindContext* context, void* arg) {
  auto* walk = static_cast<Walk*>(arg);
  // The context pairs a return address (into frame F) with the CFA of the function F called,
  // i.e. F's stack pointer at the call. The stack grows down: a pair whose CFA is below the
  // routed function's own is a call inside the allocator; the pair at its CFA is the return
  // into its caller, the first frame kept.
  if (g_get_cfa(context) < walk->below_cfa) return kNoReason;
  const uintptr_t ip = g_get_ip(context);
  if (ip == 0) return kEndOfStack;
  walk->frames[walk->count++] = ip;
  return walk->count == kMaxFrames ? kEndOfStack : kNoReason;
}

}  // namespace

bool load_unwinder() {
  void* lib = dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return false;
  auto backtrace = reinterpret_cast<BacktraceFn>(dlsym(lib, "_Unwind_Backtrace"));
  auto get_ip = reinterpret_cast<GetFn>(dlsym(lib, "_Unwind_GetIP"));
  auto get_cfa = reinterpret_cast<GetFn>(dlsym(lib, "_Unwind_GetCFA"));
  if (backtrace == nullptr || get_ip == nullptr || get_cfa == nullptr) return false;
  g_get_ip = get_ip;
  g_get_cfa = get_cfa;
  g_backtrace = backtrace;
  return true;
}

size_t capture_stack(uintptr_t frames[kMaxFrames], const void* below_cfa) {
  if (g_backtrace == nullptr) return 0;
  Walk walk{frames, 0, reinterpret_cast<uintptr_t>(below_cfa)};
  g_backtrace(visit, &walk);
  return walk.count;
}

}  // namespace bitslab::profile
