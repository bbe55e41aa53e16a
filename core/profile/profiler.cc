#include "core/profile/profiler.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>

#include "core/base/compiler.h"
#include "core/base/fatal.h"
#include "core/base/line_writer.h"
#include "core/base/options.h"
#include "core/profile/file_writer.h"
#include "core/profile/profile_table.h"
#include "core/profile/sample_clock.h"
#include "core/profile/stack_trace.h"

namespace bitslab::profile {

bool detail::g_sampling = false;
uint64_t detail::g_rate = kProfileRateDefault;
BITSLAB_TLS constinit bool detail::tls_inside = false;

namespace {
constinit SpinLock g_lock;
constinit ProfileTable g_table;  // guarded by g_lock
using detail::g_rate;
using detail::tls_inside;
// Live samples, read without the lock by forget(): most system frees are of blocks never
// sampled, and while none is live they skip the lock.
std::atomic<size_t> g_live{0};
std::atomic<unsigned> g_dump_sequence{0};
char g_out[1 << 16];  // the file buffer, used under g_lock

// BITSLAB_PROFILE_PREFIX made absolute at start-up, so that a program that changes directory
// still writes its profile where it was asked for.
char g_prefix[kProfilePrefixMax + PATH_MAX + 1];

void resolve_prefix() {
  const char* prefix = options().profile_prefix;
  size_t len = 0;
  if (prefix[0] != '/' && getcwd(g_prefix, PATH_MAX) != nullptr) {
    len = strlen(g_prefix);
    if (len == 0 || g_prefix[len - 1] != '/') g_prefix[len++] = '/';
  }
  strcpy(g_prefix + len, prefix);  // room: the prefix is shorter than kProfilePrefixMax
}

// A dump signal that arrived while this thread was inside the profiler (detail::tls_inside).
BITSLAB_TLS constinit volatile sig_atomic_t tls_dump_pending = 0;

// PREFIX.PID.heap, or PREFIX.PID.SEQ.heap for a dump on demand (seq != 0).
void profile_path(char* out, size_t cap, unsigned seq) {
  char pid[24], n[24];
  const size_t pid_len = format_dec(pid, sizeof pid, static_cast<unsigned long>(getpid()));
  const size_t n_len = format_dec(n, sizeof n, seq);
  size_t len = 0;
  auto put = [&](const char* s, size_t k) {
    for (size_t i = 0; i < k && len + 1 < cap; ++i) out[len++] = s[i];
  };
  put(g_prefix, strlen(g_prefix));
  put(".", 1);
  put(pid, pid_len);
  if (seq != 0) {
    put(".", 1);
    put(n, n_len);
  }
  put(".heap", 5);
  out[len] = '\0';
}

// Copies /proc/self/maps after the samples: pprof maps the addresses to objects with it.
void append_maps(FileWriter& out) {
  const int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.bytes(buf, static_cast<size_t>(n));
  }
  close(fd);
}

// Under g_lock.
bool write_profile(int fd) {
  FileWriter out(fd, g_out, sizeof g_out);
  uint64_t live = 0, live_bytes = 0, allocated = 0, allocated_bytes = 0;
  for (size_t i = 0; i < g_table.site_count(); ++i) {
    const Site& s = g_table.site(i);
    live += s.live;
    live_bytes += s.live * s.size;
    allocated += s.allocated;
    allocated_bytes += s.allocated * s.size;
  }
  // heap_v2/RATE: the reader weighs each line by 1 / (1 - exp(-size / RATE)), as sample_weight.
  // At rate 1 every allocation is in: "heapprofile" asks for no weighing at all.
  out.text("heap profile: ").dec(live).text(": ").dec(live_bytes).text(" [").dec(allocated).text(": ");
  out.dec(allocated_bytes).text("] @ ");
  if (g_rate == 1)
    out.text("heapprofile\n");
  else
    out.text("heap_v2/").dec(g_rate).text("\n");
  for (size_t i = 0; i < g_table.site_count(); ++i) {
    const Site& s = g_table.site(i);
    out.dec(s.live).text(": ").dec(s.live * s.size).text(" [").dec(s.allocated).text(": ");
    out.dec(s.allocated * s.size).text("] @");
    const uintptr_t* frames = g_table.frames(s);
    for (uint32_t f = 0; f < s.depth; ++f) out.text(" ").hex(frames[f]);
    if (s.depth == 0) out.text(" 0x0");  // no stack (no unwinder): the reader needs one address
    out.text("\n");
  }
  out.text("\nMAPPED_LIBRARIES:\n");
  append_maps(out);
  return out.flush();
}

// Writes the profile to `path`, or when it is nullptr to PREFIX.PID.heap (seq 0) or
// PREFIX.PID.SEQ.heap, named in a static buffer under the lock: no path on the stack, which
// may be a signal handler's small one. A file of those names that cannot be written is
// warned about (a caller's own path only gets false and errno).
bool write_file(const char* path, unsigned seq) {
  static char named[sizeof g_prefix + 64];
  SpinGuard guard(g_lock);
  if (path == nullptr) {
    profile_path(named, sizeof named, seq);
    path = named;
  }
  const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const bool ok = fd >= 0 && write_profile(fd);
  const int saved_errno = errno;
  if (fd >= 0) close(fd);
  if (!ok && path == named) warn({"cannot write the heap profile ", path});
  errno = saved_errno;
  return ok;
}

void dump_numbered() {
  const int saved_errno = errno;
  write_file(nullptr, g_dump_sequence.fetch_add(1, std::memory_order_relaxed) + 1);
  errno = saved_errno;
}

// SIGUSR2, with BITSLAB_PROFILE_SIGNAL=1. A thread inside the profiler may hold the lock: it
// writes the profile itself when it leaves (leave()). Otherwise the handler writes it, marked
// inside, so that another handler's malloc or free meanwhile keeps off the lock it holds.
void on_dump_signal(int) {
  if (tls_inside) {
    tls_dump_pending = 1;
    return;
  }
  tls_inside = true;
  dump_numbered();
  tls_inside = false;
}

void enter() { tls_inside = true; }
// Writes the dumps signalled while inside, still inside (the lock is taken again for each, and
// a signal meanwhile must not take it too), then leaves. A signal that lands between the last
// check and the flag's clearing waits for this thread's next visit.
void leave() {
  while (BITSLAB_UNLIKELY(tls_dump_pending)) {
    tls_dump_pending = 0;
    dump_numbered();
  }
  tls_inside = false;
}

// What a site's live samples stand for: blocks, and bytes (blocks of the site's size).
double live_blocks(const Site& s) { return static_cast<double>(s.live) * sample_weight(s.size, g_rate); }
double live_bytes(const Site& s) { return live_blocks(s) * static_cast<double>(s.size); }

// The leak report's lines for one site: its weighted bytes and blocks, then its frames named
// by dladdr (exported symbols; bitslab-run --profile names the rest from the profile file).
void print_leak_site(int fd, const Site& s) {
  LineWriter line;
  line.text("bitslab:   ")
      .dec(static_cast<unsigned long>(live_bytes(s) + 0.5))
      .text(" bytes in ")
      .dec(static_cast<unsigned long>(live_blocks(s) + 0.5))
      .text(" blocks of ")
      .dec(s.size)
      .text(" B, allocated at:")
      .flush(fd);
  const uintptr_t* frames = g_table.frames(s);
  for (uint32_t f = 0; f < s.depth && f < 16; ++f) {
    line.text("bitslab:     #").dec(f).text(" ").hex(frames[f]);
    Dl_info info;
    // A return address: the call is the byte before it (it may end the caller's function).
    if (dladdr(reinterpret_cast<void*>(frames[f] - 1), &info) != 0) {
      if (info.dli_sname != nullptr)
        line.text(" ")
            .text(info.dli_sname)
            .text("+")
            .hex(frames[f] - reinterpret_cast<uintptr_t>(info.dli_saddr));
      if (info.dli_fname != nullptr) line.text(" (").text(info.dli_fname).text(")");
    }
    line.flush(fd);
  }
}

void print_leak_sites(int fd) {
  SpinGuard guard(g_lock);
  double bytes = 0, blocks = 0;
  size_t sites = 0;
  for (size_t i = 0; i < g_table.site_count(); ++i) {
    const Site& s = g_table.site(i);
    if (s.live == 0) continue;
    bytes += live_bytes(s);
    blocks += live_blocks(s);
    ++sites;
  }
  LineWriter line;
  if (sites == 0) {
    line.text("bitslab: leak sites: no sampled block is still allocated at exit").flush(fd);
    return;
  }
  line.text("bitslab: leak sites (");
  if (g_rate == 1)
    line.text("every allocation): ");
  else
    line.text("sampled, 1 in ").dec(g_rate).text(" bytes on average): ");
  line.dec(static_cast<unsigned long>(bytes + 0.5))
      .text(" bytes in ")
      .dec(static_cast<unsigned long>(blocks + 0.5))
      .text(" blocks from ")
      .dec(sites)
      .text(sites == 1 ? " site" : " sites")
      .text(", the largest first:")
      .flush(fd);
  // The ten largest by bytes, chosen in ten passes: no sort buffer to allocate.
  double last = 1e300;
  size_t last_index = ~size_t{0};
  for (int rank = 0; rank < 10; ++rank) {
    size_t best = ~size_t{0};
    double best_bytes = -1;
    for (size_t i = 0; i < g_table.site_count(); ++i) {
      const Site& s = g_table.site(i);
      if (s.live == 0) continue;
      const double b = live_bytes(s);
      // Strictly after the previous pick in (bytes descending, index ascending) order.
      const bool after_last = b < last || (b == last && i > last_index);
      if (after_last && b > best_bytes) {
        best_bytes = b;
        best = i;
      }
    }
    if (best == ~size_t{0}) break;
    print_leak_site(fd, g_table.site(best));
    last = best_bytes;
    last_index = best;
  }
}
}  // namespace

bool start() {
  const Options& o = options();
  if (!o.profile || detail::g_sampling) return false;
  if (!load_unwinder()) {
    warn({"BITSLAB_PROFILE=1: cannot load libgcc_s.so.1's unwinder; profiling is off"});
    return false;
  }
  if (!g_table.init()) {
    warn({"BITSLAB_PROFILE=1: cannot map the profile's tables; profiling is off"});
    return false;
  }
  g_rate = o.profile_rate;
  resolve_prefix();
  if (o.profile_signal) {
    struct sigaction action {};
    action.sa_handler = on_dump_signal;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    sigaction(SIGUSR2, &action, nullptr);
  }
  detail::g_sampling = true;
  route_everything();  // from here on, every allocation meets the sample clock
  return true;
}

bool take_sample(SampleClock& clock, size_t size, uint64_t cap) {
  return size != 0 && !tls_inside && clock.crossed(size, g_rate, cap);
}

void record(void* block, size_t size, const Stack& stack) {
  enter();
  {
    SpinGuard guard(g_lock);
    if (g_table.add(reinterpret_cast<uintptr_t>(block), size, stack.frames, stack.depth))
      g_live.store(g_table.live_blocks(), std::memory_order_relaxed);
  }
  leave();
}

void forget(void* block) {
  // Inside the profiler already (a free from a signal handler that interrupted it, or from the
  // unwinder), this thread may hold the lock: the block, if a sample, stays counted as live.
  if (g_live.load(std::memory_order_relaxed) == 0 || tls_inside) return;
  enter();
  {
    SpinGuard guard(g_lock);
    if (g_table.remove(reinterpret_cast<uintptr_t>(block)))
      g_live.store(g_table.live_blocks(), std::memory_order_relaxed);
  }
  leave();
}

bool dump(const char* path) {
  if (!detail::g_sampling) {
    errno = EINVAL;
    return false;
  }
  enter();
  const bool ok = write_file(path, 0);
  const int saved_errno = errno;
  leave();
  errno = saved_errno;
  return ok;
}

void finish(int report_fd) {
  if (!detail::g_sampling) return;
  enter();
  write_file(nullptr, 0);
  if (options().leak_check && report_fd >= 0) print_leak_sites(report_fd);
  leave();
}

SpinLock& fork_lock() { return g_lock; }

}  // namespace bitslab::profile
