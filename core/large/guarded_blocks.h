// core/large/guarded_blocks.h — blocks above the core's classes, between guard pages (L3c).
// Used by the hardened build only: the default build hands such requests to glibc (shim/).
//
//   granule-aligned range of whole granules (HeapRange kinds kLarge, then kLargeTail):
//   [ header page | guard page | data pages ............ [block] | guard page | unused ... ]
//                                                        ^ right-aligned: the block ends at
//                                                          most 15 bytes (its alignment) short
//                                                          of the guard page
//
// An overflow past the block's end faults on the guard page at once (or within the alignment
// padding); an underflow below the data faults on the front guard before it can reach the
// header, which holds the block's size and state away from the data. A freed block's pages go
// back to the OS and become inaccessible, so a use after free faults too, until the range is
// reused for a block of the same number of granules. A few freed ranges are kept for that
// reuse; the others, and all of them on release_free_ranges(), are unmapped.
#pragma once
#include <cstddef>

#include "core/base/spin_lock.h"

namespace bitslab::guarded {

// A block of `size` bytes aligned to `alignment` (0 or a power of two); nullptr + ENOMEM when
// the OS refuses (address space, or mprotect's map entries).
void* allocate(size_t size, size_t alignment);
// p: an address in a kLarge or kLargeTail granule. Aborts, naming p, on a double free or a
// pointer that is not the start of a live block.
void deallocate(void* p);
// Unmaps every freed range kept for reuse; returns the address space given back. For
// malloc_trim and before a failed allocation is retried (core/backend).
size_t release_free_ranges();

// Bytes usable at p, from the block's start to its guard page.
size_t usable_size(const void* p);

// Live blocks and their usable bytes (for the leak report and statistics).
size_t live_blocks();
size_t live_bytes();

// The lock over the free ranges and counts; taken around fork() by core/thread/fork.cc.
SpinLock& fork_lock();

}  // namespace bitslab::guarded
