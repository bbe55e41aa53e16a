#include "core/thread/backend.h"

#include <new>

#include "core/base/fatal.h"
#include "core/large/guarded_blocks.h"
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

// Locks are taken outermost first: pools and page allocators claim granules under their own
// lock, so HeapRange's lock comes last.
void prefork() {
  guarded::prefork();
  pools().prefork();
  g_slab_system.prefork();
  SystemPageAllocator::instance().prefork();
  HeapRange::prefork();
}
void postfork_parent() {
  HeapRange::postfork_parent();
  SystemPageAllocator::instance().postfork_parent();
  g_slab_system.postfork_parent();
  pools().postfork_parent();
  guarded::postfork_parent();
}
void postfork_child() {
  HeapRange::postfork_child();
  SystemPageAllocator::instance().postfork_child();
  g_slab_system.postfork_child();
  pools().postfork_child();
  guarded::postfork_child();
}

}  // namespace bitslab::backend
