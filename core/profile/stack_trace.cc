#include "core/profile/stack_trace.h"

#include <dlfcn.h>

namespace bitslab::profile {

namespace detail {
BacktraceFn g_backtrace = nullptr;
}

namespace {
using GetFn = uintptr_t (*)(detail::UnwindContext*);
GetFn g_get_ip = nullptr;
GetFn g_get_cfa = nullptr;
}  // namespace

detail::UnwindReason detail::visit(UnwindContext* context, void* arg) {
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

bool load_unwinder() {
  void* lib = dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return false;
  auto backtrace = reinterpret_cast<detail::BacktraceFn>(dlsym(lib, "_Unwind_Backtrace"));
  auto get_ip = reinterpret_cast<GetFn>(dlsym(lib, "_Unwind_GetIP"));
  auto get_cfa = reinterpret_cast<GetFn>(dlsym(lib, "_Unwind_GetCFA"));
  if (backtrace == nullptr || get_ip == nullptr || get_cfa == nullptr) return false;
  g_get_ip = get_ip;
  g_get_cfa = get_cfa;
  detail::g_backtrace = backtrace;
  return true;
}

}  // namespace bitslab::profile
