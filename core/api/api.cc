#include <fcntl.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/api/bitslab.h"
#include "core/api/census.h"
#include "core/api/dispatch.h"
#include "core/api/stats.h"
#include "core/backend/backend.h"
#include "core/base/line_writer.h"
#include "core/base/options.h"
#include "core/pool/pool_classes.h"
#include "core/thread/bootstrap.h"
#include "core/thread/heap_registry.h"

namespace bitslab {

namespace dispatch {

void* aligned_alloc(size_t alignment, size_t size) {
  if (size <= kSmallMax && alignment <= kSmallMax) {
    for (unsigned cls = small_class_of(size); cls < kSmallClassCount; ++cls) {
      if (small_class_alignment(cls) >= alignment) return tls_heap->alloc_small(cls);
    }
  }
  // Pool classes start above kSmallMax; a smaller request just takes the first that fits.
  const size_t pool_size = size > kSmallMax ? size : kSmallMax + 1;
  for (unsigned cls = pool_class_of(pool_size); cls < kPoolClassCount; ++cls) {
    if (pool_class_alignment(cls) >= alignment)
      return ThreadHeap::alloc_pool(pool_class_bytes(cls), tls_heap);
  }
  errno = ENOMEM;
  return nullptr;
}

void* resize(void* p, GranuleKind kind, size_t size) {
  const size_t old_usable = usable_size(p, kind);
  // Stay in place if the block fits and at most half of it would go unused.
  if (size <= old_usable && size >= old_usable / 2) return p;
  void* fresh = alloc(size);
  if (fresh == nullptr) return nullptr;
  memcpy(fresh, p, size < old_usable ? size : old_usable);
  free(p, kind);
  return fresh;
}

bool size_selects_block(void* p, GranuleKind kind, size_t size, size_t alignment, size_t large_threshold) {
  if (size > usable_size(p, kind)) return false;
  if (alignment != 0) return true;  // an aligned new may take a larger class: size fits is all
  if (kind == GranuleKind::kSlabs) return size <= kSmallMax && small_class_of(size) == Slab::of(p)->size_class;
  if (kind == GranuleKind::kPool)
    return size > kSmallMax && size <= kPoolMax && pool_class_of(size) == PoolRegion::of(p)->size_class;
  return size > large_threshold;  // a guarded large block: only a large request makes one
}

void set_system_trim(void (*trim)()) { backend::set_system_trim(trim); }

void wrong_size_delete(void* p, size_t size) {
  LineWriter line;
  line.text("bitslab: sized delete with a wrong size (").dec(size)
      .text(" bytes) of ").hex(reinterpret_cast<unsigned long>(p));
  line.flush();
  abort();
}

}  // namespace dispatch

namespace {
// The C++ API serves the core's blocks only: nothing above kMaxCoreSize (ENOMEM), and a pointer
// that is not one of its blocks aborts (the malloc family, in the shim, hands those to glibc).
struct NoSystem {
  static constexpr bool kServesLarge = false;
  static constexpr bool kReallocZeroFrees = false;  // realloc(p, 0) gives a minimal block
  static constexpr size_t threshold() { return kMaxCoreSize; }
  static constexpr size_t core_limit() { return kMaxCoreSize; }
  static void* alloc(size_t, size_t) { return nullptr; }  // never called: kServesLarge
  static void* calloc(size_t, size_t) { return nullptr; }
  [[noreturn]] static void* realloc(void* p, size_t) {
    fatal("realloc of a pointer that bitslab never handed out:", p);
  }
  [[noreturn]] static void free(void* p) { fatal("free of a pointer that bitslab never handed out:", p); }
  [[noreturn]] static size_t usable_size(void* p, bool) {
    fatal("usable_size of a pointer that bitslab never handed out:", p);
  }
};
}  // namespace

void* alloc(size_t size) noexcept { return dispatch::malloc<NoSystem>(size); }

void free(void* p) noexcept { dispatch::free<NoSystem>(p); }

size_t usable_size(const void* p) noexcept { return dispatch::usable_size<NoSystem>(const_cast<void*>(p)); }

void* aligned_alloc(size_t alignment, size_t size) noexcept {
  if (!is_pow2(alignment) || alignment > kMaxCoreAlign) {
    errno = EINVAL;
    return nullptr;
  }
  return dispatch::aligned<NoSystem>(alignment, size);
}

void* realloc(void* p, size_t size) noexcept { return dispatch::realloc<NoSystem>(p, size); }

bool owns(const void* p) noexcept { return dispatch::owns(p); }

size_t max_size() noexcept { return kMaxCoreSize; }
size_t max_alignment() noexcept { return kMaxCoreAlign; }

bool profile_dump(const char* path) noexcept { return profile::dump(path); }

size_t trim() noexcept {
  process_init();
  SystemPageAllocator& system = backend::slab_system_pages();
  const size_t before = system.bytes_returned();
  if (tls_heap != &kEmptyHeap) tls_heap->flush();
  // Exited threads' heaps (their emptied current slabs), the page cache, pool chunks, free granules.
  const size_t purged = backend::reclaim();
  return system.bytes_returned() - before + purged;
}

Stats stats() noexcept {
  const ProcessStats p = collect_stats(StatsDetail::kTotals);
  Stats s{};
  s.reserved_bytes = p.reserved_bytes;
  s.slab_pages_in_use = p.slab_pages_in_use;
  s.slab_pages_cached = p.page_cache_pages;
  s.slab_cache_hits = p.page_cache_hits;
  s.slab_cache_requests = p.page_cache_calls;
  s.pool_regions = p.pool_regions;
  s.pool_chunks_carved = p.pool_chunks_carved;
  s.heaps = p.heaps;
  s.heaps_in_use = p.heaps_in_use;
  return s;
}

// ---- BITSLAB_SHOW_STATS and BITSLAB_LEAK_CHECK: the reports at exit ---------------------------
// Here, not in a file of their own: nothing calls them (a constructor and a destructor), and a
// static link (libbitslab_override.a) takes only the archive members something refers to. This
// file is always taken: the shim's front end calls into it.

namespace {

// Where the reports go, -1 for none. A copy of stderr taken at load: many programs (coreutils
// among them) close stderr in an atexit handler, before our destructor runs.
int g_exit_report_fd = -1;

__attribute__((constructor)) void open_exit_report_fd() {
  process_init();    // the options are read there
  profile::start();  // BITSLAB_PROFILE: here, outside malloc (it loads the unwinder)
  if (!options().leak_check && options().show_stats == StatsFormat::kNone) return;
  g_exit_report_fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
  if (g_exit_report_fd < 0) g_exit_report_fd = 2;
}

// As late as a destructor can run (priority 101 runs after the others of this object; a
// preloaded library is finalised after the program), so the program's own static destructors
// have freed what they free.
__attribute__((destructor(101))) void report_at_exit() {
  profile::finish(g_exit_report_fd);  // the heap profile's file, and its leak sites
  if (g_exit_report_fd < 0) return;
  if (options().show_stats != StatsFormat::kNone)
    print_stats(g_exit_report_fd, options().show_stats == StatsFormat::kJson);
  if (options().leak_check) print_leak_report(g_exit_report_fd);
  // exit() does not wait for other threads: any still running (with a heap) while the counts
  // were taken make them a snapshot, off by the blocks they moved meanwhile. Say so.
  const size_t running = HeapRegistry::heaps_in_use() - (tls_heap != &kEmptyHeap ? 1 : 0);
  if (running != 0) {
    LineWriter line;
    line.text("bitslab: approximate: ")
        .dec(running)
        .text(running == 1 ? " other thread was" : " other threads were")
        .text(" still running at exit")
        .flush(g_exit_report_fd);
  }
}

}  // namespace
}  // namespace bitslab
