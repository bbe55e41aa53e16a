// toolkit/toolkit.h — installed as <bitslab/toolkit.h>: every component of the seed documents
// as a C++ library, for programs that use allocators directly rather than through malloc.
// Link bitslab::toolkit (CMake) or bitslab-toolkit (pkg-config); neither replaces malloc.
//
// The page allocators are the core's own (core/page), the same objects libbitslab.so uses.
// The rest is in toolkit/, built on the core's OS layer, bitmaps and page allocators.
#pragma once

#include "core/page/cached_page_allocator.h"   // CachedPageAllocator (page_allocator seed)
#include "core/page/page_allocator.h"          // PageAllocator
#include "core/page/system_page_allocator.h"   // SystemPageAllocator::instance()
#include "toolkit/fixed_block_allocator.h"      // FixedBlockAllocator (hpalloc seed)
#include "toolkit/fixed_buffer_allocator.h"     // FixedBufferAllocator (Zig seed)
#include "toolkit/leak_checking_allocator.h"    // LeakCheckingAllocator (Zig seed: GPA's leak check)
#include "toolkit/local_mem.h"                  // LocalMem backend (join seed)
#include "toolkit/page_arena.h"                 // PageArena (hpalloc seed)
#include "toolkit/page_arena_allocator.h"       // ArenaAllocator (Zig seed)
#include "toolkit/shm_mem.h"                    // ShmMem backend, shared by name (join seed)
#include "toolkit/size_class_allocator.h"       // SizeClassAllocator (Custom Memory Allocator seed)
#include "toolkit/slab_arena.h"                 // Arena<Backend, Count, Sizes...> (join seed)
