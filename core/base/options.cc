#include "core/base/options.h"

#include <sys/auxv.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "core/base/env.h"
#include "core/base/line_writer.h"

namespace bitslab {

namespace {
constinit Options g_options{};

void out_of_range(const char* name, const char* range) {
  warn({"ignoring ", name, "=", getenv(name), " (", range, "); keeping the default"});
}

// An unsigned setting in [low, high]; outside it, one warning and the default stays.
template <typename T>
void read_bounded(const char* name, T* value, uint64_t low, uint64_t high, const char* range) {
  uint64_t parsed = 0;
  if (!env_unsigned(name, &parsed)) return;  // unset, or not a number (warned)
  if (parsed < low || parsed > high) return out_of_range(name, range);
  *value = static_cast<T>(parsed);
}

void read_flag(const char* name, bool* value) {
  uint64_t parsed = *value ? 1 : 0;
  read_bounded(name, &parsed, 0, 1, "0 or 1");
  *value = parsed != 0;
}
}  // namespace

size_t detail::g_route_threshold = kMaxCoreSize;
size_t detail::g_large_threshold = kMaxCoreSize;

const Options& options() { return g_options; }

void read_options() {
  // Secure execution (set-user-ID, set-group-ID or capability-raising programs): every option
  // is ignored, silently, as glibc ignores its MALLOC_* tunables there. Each one either writes
  // to the program's stderr (stats, leak report, verbose, warnings) or changes its behaviour
  // (fault injection, thresholds, caches), and the environment belongs to the unprivileged
  // caller.
  if (getauxval(AT_SECURE) != 0) return;
  Options& o = g_options;
  if (const char* stats = getenv("BITSLAB_SHOW_STATS")) {
    if (strcmp(stats, "json") == 0) o.show_stats = StatsFormat::kJson;
    else if (strcmp(stats, "1") == 0) o.show_stats = StatsFormat::kText;
    else if (strcmp(stats, "0") != 0 && stats[0] != '\0') out_of_range("BITSLAB_SHOW_STATS", "0, 1 or json");
  }
  read_flag("BITSLAB_VERBOSE", &o.verbose);
  read_flag("BITSLAB_LEAK_CHECK", &o.leak_check);
  read_flag("BITSLAB_BACKGROUND_PURGE", &o.background_purge);
  read_bounded("BITSLAB_PURGE_DELAY_MS", &o.purge_delay_ms, 0, uint64_t{1} << 32, "0 to 4294967296 ms");
  static_assert(kPageCacheMaxCapacity == 1024 && kMaxCoreSize == 262144, "the ranges the warnings name");
  read_bounded("BITSLAB_CACHE_PAGES", &o.cache_pages, 0, kPageCacheMaxCapacity, "0 to 1024 pages");
  read_bounded("BITSLAB_LARGE_THRESHOLD", &o.large_threshold, 0, kMaxCoreSize, "0 to 262144 bytes");
  read_bounded("BITSLAB_INJECT_OOM", &o.inject_oom, 0, ~uint64_t{0} - 1, "a count of reservations");
  uint64_t hardened = 0;
  o.hardened_requested = env_unsigned("BITSLAB_HARDENED", &hardened) && hardened != 0;
  read_flag("BITSLAB_PROFILE", &o.profile);
  read_bounded("BITSLAB_PROFILE_RATE", &o.profile_rate, 1, uint64_t{1} << 40, "1 to 2^40 bytes");
  read_flag("BITSLAB_PROFILE_SIGNAL", &o.profile_signal);
  if (const char* prefix = getenv("BITSLAB_PROFILE_PREFIX"); prefix != nullptr && prefix[0] != '\0') {
    if (strlen(prefix) < sizeof o.profile_prefix)
      strcpy(o.profile_prefix, prefix);
    else
      out_of_range("BITSLAB_PROFILE_PREFIX", "a path prefix shorter than 200 bytes");
  }
  detail::g_route_threshold = detail::g_large_threshold = o.large_threshold;
}

void print_options(int fd) {
  const Options& o = g_options;
  LineWriter line;
  line.text("bitslab: ")
      .text(kHardened ? "hardened" : "default")
      .text(" build, pid ")
      .dec(static_cast<unsigned long>(getpid()))
      .text(": large threshold ")
      .dec(o.large_threshold)
      .text(" B, slab cache ")
      .dec(o.cache_pages)
      .text(" pages, purge delay ")
      .dec(o.purge_delay_ms)
      .text(" ms, stats ")
      .text(o.show_stats == StatsFormat::kJson   ? "json"
            : o.show_stats == StatsFormat::kText ? "on"
                                                 : "off")
      .text(", leak check ")
      .text(o.leak_check ? "on" : "off")
      .text(", background purge ")
      .text(o.background_purge ? "on" : "off")
      .text(", profile ")
      .text(o.profile ? "on" : "off")
      .flush(fd);
}

}  // namespace bitslab
