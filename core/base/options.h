// core/base/options.h — the BITSLAB_* environment settings, read once at start-up (L0).
//
// Read by process_init before the backend is built, with getenv only (no allocation). A value
// that does not parse or is out of range prints one warning line and keeps the default. The
// README's option table lists the same names, defaults and ranges as read_options() below.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/base/config.h"

namespace bitslab {

enum class StatsFormat : uint8_t { kNone, kText, kJson };

struct Options {
  StatsFormat show_stats = StatsFormat::kNone;  // BITSLAB_SHOW_STATS=1 | json: at exit
  bool verbose = false;                         // BITSLAB_VERBOSE=1: settings at start-up
  bool leak_check = false;                      // BITSLAB_LEAK_CHECK=1: live blocks at exit
  uint64_t purge_delay_ms = kPurgeDelayMsDefault;  // BITSLAB_PURGE_DELAY_MS
  uint64_t cache_pages = kSlabPageCacheDefault;    // BITSLAB_CACHE_PAGES: empty slabs kept
  size_t large_threshold = kMaxCoreSize;  // BITSLAB_LARGE_THRESHOLD: larger goes to the system
  uint64_t inject_oom = ~uint64_t{0};     // BITSLAB_INJECT_OOM: reservations before failing
  bool hardened_requested = false;        // BITSLAB_HARDENED set non-zero (see bootstrap)
  bool background_purge = false;          // BITSLAB_BACKGROUND_PURGE=1: a purge thread
};

// The settings in force (defaults until process_init has read them).
const Options& options();
// Reads the environment into options(); once, from process_init.
void read_options();
// Prints the settings in force as one line (BITSLAB_VERBOSE).
void print_options(int fd);

namespace detail {
// options().large_threshold, where the shim's malloc reads it on every call.
extern size_t g_large_threshold;
}
// Requests above this size go to the system allocator (the shim's routing).
inline size_t large_threshold() { return detail::g_large_threshold; }

}  // namespace bitslab
