// core/backend/backend.h — the process-wide allocators that thread heaps draw from (L4).
#pragma once
#include "core/page/cached_page_allocator.h"
#include "core/page/system_page_allocator.h"
#include "core/pool/pool_set.h"

namespace bitslab::backend {

// 64 KiB slab pages: a CachedPageAllocator over a SystemPageAllocator of kSlabBytes pages.
// Valid once process_init() (core/thread/bootstrap.h) has run.
CachedPageAllocator& slab_pages();
SystemPageAllocator& slab_system_pages();
PoolSet& pools();

// Builds the objects above, the slab page cache keeping up to cache_pages empty pages and
// purging those idle for purge_delay_ms; called once, by bootstrap.
void init(size_t cache_pages, uint64_t purge_delay_ms);

}  // namespace bitslab::backend
