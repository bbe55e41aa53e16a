#include "core/thread/bootstrap.h"

#include <atomic>
#include <cerrno>
#include <pthread.h>

#include "core/backend/backend.h"
#include "core/base/compiler.h"
#include "core/base/hardening.h"
#include "core/base/options.h"
#include "core/os/os.h"
#include "core/thread/fork.h"
#include "core/thread/heap_registry.h"

namespace bitslab {

namespace {
enum : int { kUninitialised, kInitialising, kReady };
std::atomic<int> g_state{kUninitialised};
std::atomic<bool> g_key_ready{false};
pthread_key_t g_exit_key;
BITSLAB_TLS constinit bool tls_torn_down = false;

// BITSLAB_HARDENED=1 cannot turn the checks on at run time (they are compiled in): say which
// library has them rather than let the user believe this one does.
void check_hardened_request() {
  if (!kHardened && options().hardened_requested)
    warn({"BITSLAB_HARDENED=1: this library is the default build; preload libbitslab-hardened.so "
          "for the hardened one"});
}

void on_thread_exit(void* heap) {
  tls_heap = &kEmptyHeap;
  tls_torn_down = true;
  HeapRegistry::release(static_cast<ThreadHeap*>(heap));
}

// After the core is usable: these two calls may allocate (glibc grows its atfork list and
// key blocks with malloc), which now simply recurses into a ready allocator.
void register_process_hooks() {
  if (pthread_key_create(&g_exit_key, on_thread_exit) == 0)
    g_key_ready.store(true, std::memory_order_release);
  pthread_atfork(fork_protocol::prefork, fork_protocol::postfork_parent, fork_protocol::postfork_child);
  if (options().background_purge) backend::start_background_purge();
}
}  // namespace

void process_init() {
  if (BITSLAB_LIKELY(g_state.load(std::memory_order_acquire) == kReady)) return;
  int expected = kUninitialised;
  if (g_state.compare_exchange_strong(expected, kInitialising, std::memory_order_acq_rel)) {
    init_hardening_secret();  // before the first header or link is written
    read_options();
    const Options& o = options();
    if (o.inject_oom != ~uint64_t{0}) os::fail_reservations_after(o.inject_oom);
    // Allocates nothing: placement-new into static storage, sysconf.
    backend::init(o.cache_pages, o.purge_delay_ms);
    backend::set_parked_heaps_flush(&HeapRegistry::flush_parked);
    check_hardened_request();
    if (o.verbose) print_options(2);
    g_state.store(kReady, std::memory_order_release);
    register_process_hooks();
    return;
  }
  // Another thread is initialising: it calls nothing that could wait on us.
  while (g_state.load(std::memory_order_acquire) != kReady) BITSLAB_CPU_RELAX();
}

// Initialise at load time too (a constructor of the library or program that links the core),
// while the process normally has a single thread: the fork hooks are then in place before any
// thread can fork. Initialised lazily only, a fork by one thread while another is still in
// process_init (before pthread_atfork) would leave the child with a lock held forever.
__attribute__((constructor)) void init_at_load() { process_init(); }

ThreadHeap* thread_init() {
  if (tls_torn_down) return nullptr;
  process_init();
  ThreadHeap* heap = HeapRegistry::acquire();
  if (heap == nullptr) return nullptr;
  // Publish before pthread_setspecific, which may calloc for a high key: that nested call
  // must find this heap, not start another.
  tls_heap = heap;
  if (g_key_ready.load(std::memory_order_acquire)) pthread_setspecific(g_exit_key, heap);
  return heap;
}

ThreadHeap* borrow_heap() {
  process_init();
  return HeapRegistry::acquire();
}

void return_heap(ThreadHeap* heap) { HeapRegistry::release(heap); }

bool thread_torn_down() { return tls_torn_down; }

}  // namespace bitslab
