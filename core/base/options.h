// core/base/options.h — the BITSLAB_* environment settings, read once at start-up (L0).
//
// Read by process_init before the backend is built, with getenv only (no allocation). A value
// that does not parse or is out of range prints one warning line and keeps the default. The
// README's option table lists the same names, defaults and ranges as read_options() below.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/base/compiler.h"
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
  bool profile = false;                   // BITSLAB_PROFILE=1: the sampling heap profiler
  uint64_t profile_rate = kProfileRateDefault;  // BITSLAB_PROFILE_RATE: bytes between samples
  bool profile_signal = false;                  // BITSLAB_PROFILE_SIGNAL=1: SIGUSR2 writes a profile
  // BITSLAB_PROFILE_PREFIX: profiles go to PREFIX.PID.heap (a copy; "bitslab" if unset)
  char profile_prefix[kProfilePrefixMax] = "bitslab";
};

// The settings in force (defaults until process_init has read them).
const Options& options();
// Reads the environment into options(); once, from process_init.
void read_options();
// Prints the settings in force as one line (BITSLAB_VERBOSE).
void print_options(int fd);

namespace detail {
// Where the shim's malloc reads its route on every call: options().large_threshold, or 0 while
// the heap profiler samples (core/profile/profiler.h), which sends every request to the
// routed path without a test on the fast path.
extern BITSLAB_HIDDEN size_t g_route_threshold;
extern BITSLAB_HIDDEN size_t g_large_threshold;  // options().large_threshold, inline for the routed paths
}
// Requests above this size go to the system allocator (the shim's routing).
inline size_t large_threshold() { return detail::g_large_threshold; }
// Requests above this size leave the shim's fast path: large_threshold(), or 0 while profiling.
inline size_t route_threshold() { return detail::g_route_threshold; }
// Sends every request off the fast path (the profiler, once it is ready to sample).
inline void route_everything() { detail::g_route_threshold = 0; }

}  // namespace bitslab
