// shim/introspection.cc — glibc's malloc introspection calls, answered for both heaps: ours
// (core/api/stats.h) and the system allocator's, which holds the blocks above our
// classes and anything allocated before we were loaded.
//   malloc_stats()  prints bitslab's statistics (as BITSLAB_SHOW_STATS=1 does at exit), then
//                   glibc's own, to stderr as glibc does
//   mallinfo2()     bitslab's bytes added to glibc's, field by field (mallinfo: the same, as int)
//   malloc_trim()   hands bitslab's free pages back to the OS, then asks glibc to trim
//   malloc_info()   glibc's XML: heap 0 is bitslab's (a <size> per class with free blocks),
//                   heap 1 glibc's (its mallinfo2 totals), then the totals of both, which agree
//                   with mallinfo2() field by field
#include <errno.h>
#include <malloc.h>
#include <stdio.h>

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

// bitslab's free bytes, as mallinfo2 and malloc_info both report them: committed and not in a
// live block.
uint64_t free_bytes(const ProcessStats& s) {
  return s.committed_bytes > s.live_bytes ? s.committed_bytes - s.live_bytes : 0;
}

// One <size> per class that holds free blocks (glibc lists its bins' free chunks the same way):
// requests from..to land in the class; count free blocks of total bytes. Returns the blocks.
uint64_t print_class_sizes(FILE* out, const ClassStats* classes, unsigned count, size_t first_from) {
  uint64_t blocks = 0;
  size_t from = first_from;
  for (unsigned cls = 0; cls < count; ++cls) {
    const ClassStats& c = classes[cls];
    const uint64_t free_blocks = c.held - c.live;
    if (free_blocks != 0)
      fprintf(out, "<size from=\"%zu\" to=\"%zu\" total=\"%llu\" count=\"%llu\"/>\n", from, c.block_bytes,
              static_cast<unsigned long long>(free_blocks * c.block_bytes),
              static_cast<unsigned long long>(free_blocks));
    blocks += free_blocks;
    from = c.block_bytes + 1;
  }
  return blocks;
}

void print_totals(FILE* out, uint64_t fast_count, uint64_t fast_bytes, uint64_t rest_count,
                  uint64_t rest_bytes) {
  fprintf(out, "<total type=\"fast\" count=\"%llu\" size=\"%llu\"/>\n",
          static_cast<unsigned long long>(fast_count), static_cast<unsigned long long>(fast_bytes));
  fprintf(out, "<total type=\"rest\" count=\"%llu\" size=\"%llu\"/>\n",
          static_cast<unsigned long long>(rest_count), static_cast<unsigned long long>(rest_bytes));
}

void print_system(FILE* out, uint64_t current, uint64_t max, uint64_t aspace, uint64_t mprotect) {
  fprintf(out, "<system type=\"current\" size=\"%llu\"/>\n", static_cast<unsigned long long>(current));
  fprintf(out, "<system type=\"max\" size=\"%llu\"/>\n", static_cast<unsigned long long>(max));
  fprintf(out, "<aspace type=\"total\" size=\"%llu\"/>\n", static_cast<unsigned long long>(aspace));
  fprintf(out, "<aspace type=\"mprotect\" size=\"%llu\"/>\n", static_cast<unsigned long long>(mprotect));
}
}  // namespace

extern "C" {

BITSLAB_PUBLIC void malloc_stats(void) {
  // Not a cancellation point, as glibc's is not: a thread with a cancel pending prints both
  // reports whole; the cancel acts at its next cancellation point. Our lines are written with
  // cancellation off (LineWriter::send), glibc's report turns it off for its own, and glibc's
  // malloc is started at load (system_malloc.cc), so nothing between can act on the cancel.
  print_stats(2, false);
  using Fn = void (*)();
  if (Fn fn = late_symbol<Fn>(g_system_stats, RTLD_NEXT, "malloc_stats")) fn();
}

BITSLAB_PUBLIC struct mallinfo2 mallinfo2(void) {
  const ProcessStats s = collect_stats(StatsDetail::kByClass);
  struct mallinfo2 info = system_mallinfo2();
  info.arena += s.committed_bytes;   // bytes obtained from the OS and in use as heap
  info.uordblks += s.live_bytes;     // in live blocks
  info.fordblks += free_bytes(s);
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

BITSLAB_PUBLIC int malloc_info(int options, FILE* stream) {
  if (options != 0 || stream == nullptr) {  // glibc defines no option yet
    errno = EINVAL;
    return -1;
  }
  // Gathered before the first write: stdio may allocate its buffer through us, and the figures
  // are then those of the moment malloc_info was called, as mallinfo2's would be.
  const ProcessStats s = collect_stats(StatsDetail::kByClass);
  const struct mallinfo2 sys = system_mallinfo2();
  const uint64_t ours_free = free_bytes(s);
  const uint64_t sys_rest = sys.fordblks > sys.fsmblks ? sys.fordblks - sys.fsmblks : 0;

  fputs("<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n", stream);
  uint64_t ours_blocks = print_class_sizes(stream, s.small, kSmallClassCount, 1);
  ours_blocks += print_class_sizes(stream, s.pool, kPoolClassCount, kSmallMax + 1);
  fputs("</sizes>\n", stream);
  print_totals(stream, 0, 0, ours_blocks, ours_free);
  print_system(stream, s.committed_bytes, s.committed_bytes, s.reserved_bytes, s.committed_bytes);
  fputs("</heap>\n<heap nr=\"1\">\n<sizes>\n</sizes>\n", stream);
  print_totals(stream, sys.smblks, sys.fsmblks, sys.ordblks, sys_rest);
  print_system(stream, sys.arena, sys.arena, sys.arena, sys.arena);
  fputs("</heap>\n", stream);
  print_totals(stream, sys.smblks, sys.fsmblks, ours_blocks + sys.ordblks, ours_free + sys_rest);
  fprintf(stream, "<total type=\"mmap\" count=\"%llu\" size=\"%llu\"/>\n",
          static_cast<unsigned long long>(sys.hblks), static_cast<unsigned long long>(sys.hblkhd));
  const uint64_t current = s.committed_bytes + sys.arena;
  print_system(stream, current, current, s.reserved_bytes + sys.arena, current);
  fputs("</malloc>\n", stream);
  return ferror(stream) ? -1 : 0;
}

BITSLAB_PUBLIC int malloc_trim(size_t pad) {
  const size_t returned = bitslab::trim();
  const int system_released = bitslab::shim::system_trim(pad);
  return returned != 0 || system_released != 0;
}

}  // extern "C"
