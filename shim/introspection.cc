// shim/introspection.cc — glibc's malloc introspection calls, answered for both heaps: ours
// (core/api/stats.h) and the system allocator's, which holds the blocks above our
// classes and anything allocated before we were loaded.
//   malloc_stats()  prints bitslab's statistics (as BITSLAB_SHOW_STATS=1 does at exit), then
//                   glibc's own, to stderr as glibc does
//   mallinfo2()     bitslab's bytes added to glibc's, field by field (mallinfo: the same, as int)
//   malloc_trim()   hands bitslab's free pages back to the OS, then asks glibc to trim
#include <malloc.h>
#include <pthread.h>

#include <climits>

#include "core/api/bitslab.h"
#include "core/api/stats.h"
#include "core/base/compiler.h"
#include "core/base/config.h"
#include "shim/late_symbol.h"
#include "shim/system_malloc.h"

using namespace bitslab;
using bitslab::shim::late_symbol;

namespace {
void* g_system_stats = nullptr;
void* g_system_mallinfo2 = nullptr;

struct mallinfo2 system_mallinfo2() {
  using Fn = struct mallinfo2 (*)();
  Fn fn = late_symbol<Fn>(g_system_mallinfo2, RTLD_NEXT, "mallinfo2");
  return fn != nullptr ? fn() : (struct mallinfo2){};
}

int clamp(size_t v) { return v > INT_MAX ? INT_MAX : static_cast<int>(v); }
}  // namespace

extern "C" {

BITSLAB_PUBLIC void malloc_stats(void) {
  // Not a cancellation point, as glibc's is not: a thread with a cancel pending prints both
  // reports whole; the cancel acts at its next cancellation point.
  int cancel_state = 0;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
  print_stats(2, false);
  using Fn = void (*)();
  if (Fn fn = late_symbol<Fn>(g_system_stats, RTLD_NEXT, "malloc_stats")) fn();
  pthread_setcancelstate(cancel_state, nullptr);
}

BITSLAB_PUBLIC struct mallinfo2 mallinfo2(void) {
  const ProcessStats s = collect_stats(StatsDetail::kByClass);
  struct mallinfo2 info = system_mallinfo2();
  info.arena += s.committed_bytes;   // bytes obtained from the OS and in use as heap
  info.uordblks += s.live_bytes;     // in live blocks
  info.fordblks += s.committed_bytes > s.live_bytes ? s.committed_bytes - s.live_bytes : 0;
  info.keepcost += s.page_cache_pages * kSlabBytes;  // what malloc_trim could give back now
  return info;
}

BITSLAB_PUBLIC struct mallinfo mallinfo(void) {
  const struct mallinfo2 wide = mallinfo2();
  struct mallinfo info{};
  info.arena = clamp(wide.arena);
  info.ordblks = clamp(wide.ordblks);
  info.smblks = clamp(wide.smblks);
  info.hblks = clamp(wide.hblks);
  info.hblkhd = clamp(wide.hblkhd);
  info.usmblks = clamp(wide.usmblks);
  info.fsmblks = clamp(wide.fsmblks);
  info.uordblks = clamp(wide.uordblks);
  info.fordblks = clamp(wide.fordblks);
  info.keepcost = clamp(wide.keepcost);
  return info;
}

BITSLAB_PUBLIC int malloc_trim(size_t pad) {
  const size_t returned = bitslab::trim();
  const int system_released = bitslab::shim::system_trim(pad);
  return returned != 0 || system_released != 0;
}

}  // extern "C"
