#include "shim/system_malloc.h"

#include "core/api/dispatch.h"
#include "shim/late_symbol.h"

namespace bitslab::shim {

std::atomic<bool> g_system_heap_freed{false};

namespace {
using UsableSizeFn = size_t (*)(void*);
using TrimFn = int (*)(size_t);
void* g_system_usable_size = nullptr;
void* g_system_trim = nullptr;

// RTLD_NEXT from this object: the definition after ours in search order, i.e. glibc's.
UsableSizeFn system_usable_size_fn() {
  return late_symbol<UsableSizeFn>(g_system_usable_size, RTLD_NEXT, "malloc_usable_size");
}
TrimFn system_trim_fn() { return late_symbol<TrimFn>(g_system_trim, RTLD_NEXT, "malloc_trim"); }

// The purge's hook: glibc keeps freed large blocks in its heap (its mmap threshold grows as
// they are freed), and under bitslab nothing else reuses them. Runs inside an allocation's
// slow path, so it reads the pointer found at load time and never calls dlsym. Cost: one
// malloc_trim(0) per purge that follows a free to glibc (purges are at least 10 ms apart).
void trim_if_freed() {
  if (!g_system_heap_freed.load(std::memory_order_relaxed)) return;
  g_system_heap_freed.store(false, std::memory_order_relaxed);
  if (void* fn = __atomic_load_n(&g_system_trim, __ATOMIC_ACQUIRE)) reinterpret_cast<TrimFn>(fn)(0);
}

// Resolve at load time, when dlsym's own calloc for its error state can safely reach us.
// And start glibc's malloc here, on the main thread: under bitslab a process may make its first
// glibc allocation (a large block, a heap profile's sample) on another thread, and glibc's
// one-time set-up then gives that thread the main arena without counting it as attached. Two
// such threads exiting took the count below zero: "malloc assertion failure in
// __malloc_arena_thread_freeres: a->attached_threads > 0" (profile.threads, 5 runs in 30).
__attribute__((constructor)) void resolve_at_load() {
  system_usable_size_fn();
  system_trim_fn();
  dispatch::set_system_trim(&trim_if_freed);
  __libc_free(__libc_malloc(1));
}
}  // namespace

size_t system_usable_size(void* p) {
  UsableSizeFn fn = system_usable_size_fn();
  return fn != nullptr ? fn(p) : 0;
}

int system_trim(size_t pad) {
  TrimFn fn = system_trim_fn();
  return fn != nullptr ? fn(pad) : 0;
}

}  // namespace bitslab::shim
