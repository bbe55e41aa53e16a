// core/api/exit_report.cc — BITSLAB_SHOW_STATS and BITSLAB_LEAK_CHECK: the reports printed at
// exit (L6). Linked into libbitslab.so whole (CMake links the core's objects, not its archive),
// since nothing calls into this file: a constructor and a destructor are all it has.
#include <fcntl.h>

#include "core/api/census.h"
#include "core/api/stats.h"
#include "core/base/options.h"
#include "core/thread/bootstrap.h"

namespace bitslab {
namespace {

// Where the reports go, -1 for none. A copy of stderr taken at load: many programs (coreutils
// among them) close stderr in an atexit handler, before our destructor runs.
int g_exit_report_fd = -1;

__attribute__((constructor)) void open_exit_report_fd() {
  process_init();  // the options are read there
  if (!options().leak_check && options().show_stats == StatsFormat::kNone) return;
  g_exit_report_fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
  if (g_exit_report_fd < 0) g_exit_report_fd = 2;
}

// As late as a destructor can run (priority 101 runs after the others of this object; a
// preloaded library is finalised after the program), so the program's own static destructors
// have freed what they free.
__attribute__((destructor(101))) void report_at_exit() {
  if (g_exit_report_fd < 0) return;
  if (options().show_stats != StatsFormat::kNone)
    print_stats(g_exit_report_fd, options().show_stats == StatsFormat::kJson);
  if (options().leak_check) print_leak_report(g_exit_report_fd);
}

}  // namespace
}  // namespace bitslab
