#include "core/profile/stack_trace.h"

#include <dlfcn.h>

#include "core/profile/frame_rule_cache.h"

namespace bitslab::profile {

namespace detail {
BacktraceFn g_backtrace = nullptr;
}

namespace {
using GetFn = uintptr_t (*)(detail::UnwindContext*);
GetFn g_get_ip = nullptr;
GetFn g_get_cfa = nullptr;
// A frame larger than this is taken for a sign that the rule does not fit the stack.
constexpr uintptr_t kMaxFrameBytes = uintptr_t{1} << 24;
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

size_t detail::walk_with_libgcc(uintptr_t frames[kMaxFrames], uintptr_t below_cfa) {
  Walk walk{frames, 0, below_cfa};
  g_backtrace(visit, &walk);
  return walk.count;
}

#if defined(__x86_64__)
bool detail::walk_with_rules(uintptr_t frames[kMaxFrames], size_t& count, uintptr_t below_cfa,
                             WalkStart start) {
  uintptr_t pc = start.pc, sp = start.sp, bp = start.bp;
  count = 0;
  CodeObject object;  // pc's: a stack's frames come from a few objects, each looked up once
  for (;;) {
    if (!object.contains(pc)) find_code_object(pc, object);
    const FrameRule rule = cached_frame_rule(pc, object.tables);
    if (rule.kind == FrameRule::kOutermost) return true;
    if (rule.kind != FrameRule::kStep) return false;
    const uintptr_t cfa = (rule.cfa_from_rbp ? bp : sp) + static_cast<intptr_t>(rule.cfa_offset);
    // Each step goes up the stack, and by less than any frame of compiled code takes: a rule
    // that says otherwise is not trusted (a stack switch, or rbp not what the rule assumes).
    if (cfa <= sp || cfa - sp > kMaxFrameBytes) return false;
    const uintptr_t ra = *reinterpret_cast<const uintptr_t*>(cfa - 8);
    if (rule.rbp_saved)
      bp = *reinterpret_cast<const uintptr_t*>(cfa + static_cast<intptr_t>(rule.rbp_offset));
    sp = cfa;
    if (ra == 0) return true;
    // As visit(): the return address read at the CFA of a frame of ours is kept only from the
    // routed function's CFA up.
    if (cfa >= below_cfa) {
      frames[count++] = ra;
      if (count == kMaxFrames) return true;
    }
    pc = ra - 1;  // the call's last byte: the call may be the last instruction of its function
  }
}
#endif

bool load_unwinder() {
  void* lib = dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return false;
  auto backtrace = reinterpret_cast<detail::BacktraceFn>(dlsym(lib, "_Unwind_Backtrace"));
  auto get_ip = reinterpret_cast<GetFn>(dlsym(lib, "_Unwind_GetIP"));
  auto get_cfa = reinterpret_cast<GetFn>(dlsym(lib, "_Unwind_GetCFA"));
  auto find_fde = reinterpret_cast<FindFdeFn>(dlsym(lib, "_Unwind_Find_FDE"));
  if (backtrace == nullptr || get_ip == nullptr || get_cfa == nullptr || find_fde == nullptr) return false;
  set_frame_rule_source(find_fde);
  g_get_ip = get_ip;
  g_get_cfa = get_cfa;
  detail::g_backtrace = backtrace;
  return true;
}

}  // namespace bitslab::profile
