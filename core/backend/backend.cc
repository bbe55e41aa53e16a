#include "core/backend/backend.h"

#include <pthread.h>
#include <time.h>

#include <atomic>
#include <new>

#include "core/base/fatal.h"
#include "core/large/guarded_blocks.h"
#include "core/os/heap_range.h"
#include "core/os/os.h"

namespace bitslab::backend {

namespace {
constinit PageHeap g_page_heap;
constinit SystemPageAllocator g_slab_system{kSlabBytes, GranuleKind::kSlabs, &g_page_heap};
// Built in place by init() and never destroyed: other threads and atexit handlers may still
// free after static destructors run.
alignas(CachedPageAllocator) unsigned char g_slab_cache_storage[sizeof(CachedPageAllocator)];
alignas(PoolSet) unsigned char g_pools_storage[sizeof(PoolSet)];

uint64_t g_delay_ns = kPurgeDelayMsDefault * 1000000;
uint64_t g_period_ns = kPurgeDelayMsDefault * 1000000 / 2;
std::atomic<uint64_t> g_next_purge_ns{0};
std::atomic<bool> g_purging{false};
std::atomic<uint64_t> g_next_growth_purge_ns{0};
std::atomic<size_t> g_slab_pages_seen{0};          // the slab page allocator's pages in use, last looked
constexpr uint64_t kGrowthPurgeNs = 10 * 1000000;  // 10 ms
std::atomic<bool> g_background{false};             // the thread is wanted
std::atomic<bool> g_background_missing{false};     // ...and this process has none (after a fork)
std::atomic<void (*)()> g_system_trim{nullptr};
std::atomic<void (*)(uint64_t, uint64_t, bool)> g_parked_heaps_flush{nullptr};
std::atomic<uint32_t> g_purge_epoch{0};

void trim_system() {
  if (void (*trim)() = g_system_trim.load(std::memory_order_acquire)) trim();
}

size_t purge(uint64_t now_ns, bool force) {
  g_purge_epoch.fetch_add(1, std::memory_order_relaxed);
  if (auto flush = g_parked_heaps_flush.load(std::memory_order_acquire))
    flush(now_ns, force ? 0 : g_delay_ns, /*wait=*/force);
  size_t bytes = 0;
  if (force) {
    slab_pages().release_all();
    slab_system_pages().release_empty();      // the granule it keeps empty, too
    bytes += guarded::release_free_ranges();  // the hardened build's freed large blocks
  } else {
    slab_pages().purge_idle();
  }
  // May give regions to the page heap: empty ones idle through the delay.
  bytes += pools().purge(now_ns, g_delay_ns, force, g_delay_ns);
  bytes += g_page_heap.purge(now_ns, g_delay_ns, force);
  trim_system();
  return bytes;
}

void* background_purge(void*) {
  for (;;) {
    const uint64_t ns = g_period_ns > 1000000 ? g_period_ns : 1000000;
    timespec pause{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    nanosleep(&pause, nullptr);
    purge_if_due();
  }
  return nullptr;
}
}  // namespace

PageHeap& page_heap() { return g_page_heap; }
CachedPageAllocator& slab_pages() {
  return *std::launder(reinterpret_cast<CachedPageAllocator*>(g_slab_cache_storage));
}
SystemPageAllocator& slab_system_pages() { return g_slab_system; }
PoolSet& pools() { return *std::launder(reinterpret_cast<PoolSet*>(g_pools_storage)); }

void init(size_t cache_pages, uint64_t purge_delay_ms) {
  if (kSlabBytes % os::page_size() != 0)
    fatal("the OS page size does not divide the slab size; page size", reinterpret_cast<void*>(os::page_size()));
  g_delay_ns = purge_delay_ms * 1000000;
  g_period_ns = g_delay_ns / 2;
  CachedPageAllocator* cache = new (g_slab_cache_storage) CachedPageAllocator();
  cache->set_upstream(g_slab_system);
  cache->set_free_page_capacity(cache_pages);
  cache->set_purge_delay_ms(purge_delay_ms);
  cache->set_burst_room(kSlabPagesKept, kSlabBurstMs);
  PoolSet* pools = new (g_pools_storage) PoolSet();
  pools->init(&g_page_heap);
}

void purge_if_due(bool may_start_thread) {
  if (may_start_thread && g_background_missing.load(std::memory_order_relaxed)) start_background_purge();
  const uint64_t now = os::coarse_now_ns();
  // The footprint grew (a kind took a granule, or the slabs took pages from the slab page
  // allocator, where they had been decommitted): what the pools hold free goes back now,
  // whatever the delay, at most once per kGrowthPurgeNs, and so do the slab pages beyond the
  // page cache's burst room (a phase with no slab calls would not purge them). A program whose
  // size mix changes then does not carry the last mix's free memory on top of the new one's
  // (bench/phases).
  bool grew = false;
  if (now >= g_next_growth_purge_ns.load(std::memory_order_relaxed)) {
    // Both asked every time: each call also resets what it reports.
    const bool heap_grew = g_page_heap.grew();
    const size_t slab_pages = g_slab_system.pages_in_use();
    const bool slabs_grew = slab_pages > g_slab_pages_seen.exchange(slab_pages, std::memory_order_relaxed);
    grew = heap_grew || slabs_grew;
  }
  if (!grew && now < g_next_purge_ns.load(std::memory_order_relaxed)) return;
  if (g_purging.exchange(true, std::memory_order_acquire)) return;  // another thread is at it
  if (grew) {
    g_purge_epoch.fetch_add(1, std::memory_order_relaxed);
    g_next_growth_purge_ns.store(now + kGrowthPurgeNs, std::memory_order_relaxed);
    pools().purge(now, 0, false, 0);  // the empty regions too: the new phase may use them
    slab_pages().purge_idle();        // slab pages beyond the burst room's kept, idle through its period
    trim_system();  // glibc's free large blocks, too: phases before this one may have left some
  } else {
    g_next_purge_ns.store(now + g_period_ns, std::memory_order_relaxed);
    purge(now, false);
  }
  g_purging.store(false, std::memory_order_release);
}

size_t reclaim() { return purge(os::coarse_now_ns(), true); }

uint32_t purge_epoch() { return g_purge_epoch.load(std::memory_order_relaxed); }

void set_system_trim(void (*trim)()) { g_system_trim.store(trim, std::memory_order_release); }

void set_parked_heaps_flush(void (*flush)(uint64_t now_ns, uint64_t idle_ns, bool wait)) {
  g_parked_heaps_flush.store(flush, std::memory_order_release);
}

void start_background_purge() {
  g_background.store(true, std::memory_order_relaxed);
  g_background_missing.store(false, std::memory_order_relaxed);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);  // it sleeps and purges: no deep calls
  pthread_t thread;
  if (pthread_create(&thread, &attr, background_purge, nullptr) != 0)
    g_background_missing.store(true, std::memory_order_relaxed);  // try again on a later call
  pthread_attr_destroy(&attr);
}

void after_fork_in_child() {
  g_purging.store(false, std::memory_order_relaxed);  // the purging thread may not exist here
  if (g_background.load(std::memory_order_relaxed))
    g_background_missing.store(true, std::memory_order_relaxed);
}

}  // namespace bitslab::backend
