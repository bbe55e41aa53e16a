#include "core/backend/backend.h"

#include <new>

#include "core/base/fatal.h"
#include "core/os/heap_range.h"
#include "core/os/os.h"

namespace bitslab::backend {

namespace {
constinit SystemPageAllocator g_slab_system{kSlabBytes, GranuleKind::kSlabs};
// Built in place by init() and never destroyed: other threads and atexit handlers may still
// free after static destructors run.
alignas(CachedPageAllocator) unsigned char g_slab_cache_storage[sizeof(CachedPageAllocator)];
alignas(PoolSet) unsigned char g_pools_storage[sizeof(PoolSet)];
}  // namespace

CachedPageAllocator& slab_pages() {
  return *std::launder(reinterpret_cast<CachedPageAllocator*>(g_slab_cache_storage));
}
SystemPageAllocator& slab_system_pages() { return g_slab_system; }
PoolSet& pools() { return *std::launder(reinterpret_cast<PoolSet*>(g_pools_storage)); }

void init(size_t cache_pages, uint64_t purge_delay_ms) {
  if (kSlabBytes % os::page_size() != 0)
    fatal("the OS page size does not divide the slab size; page size", reinterpret_cast<void*>(os::page_size()));
  CachedPageAllocator* cache = new (g_slab_cache_storage) CachedPageAllocator();
  cache->set_upstream(g_slab_system);
  cache->set_free_page_capacity(cache_pages);
  cache->set_purge_delay_ms(purge_delay_ms);
  PoolSet* pools = new (g_pools_storage) PoolSet();
  pools->init();
}

}  // namespace bitslab::backend
