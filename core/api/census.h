// core/api/census.h — how many blocks of each class the program holds right now (L6).
//
// Counted from the source of truth, not from counters on the hot path: a slab's bitmap says
// which blocks are out, minus the freed blocks that a heap still holds before they reach the
// bitmap (its block cache, its batches of frees for other heaps, its remote list). Pool chunks
// are counted from their regions' bitmaps, minus the chunks in the heaps' caches. Exact when no
// other thread allocates or frees during the walk (at exit, for the leak report); a snapshot
// that may be off by the blocks in flight otherwise.
#pragma once
#include <cstddef>

#include "core/pool/pool_classes.h"
#include "core/small/size_classes.h"

namespace bitslab {

struct Census {
  size_t small_blocks[kSmallClassCount];  // live blocks of each small class
  size_t pool_chunks[kPoolClassCount];    // live chunks of each pool class
  size_t in_flight[kSmallClassCount];     // freed by one thread, not yet applied by the owner
  size_t small_capacity[kSmallClassCount];  // blocks in the live slabs of each class, free or not
  size_t large_blocks;                    // guarded large blocks (hardened build)
  size_t large_bytes;

  size_t blocks() const;
  size_t bytes() const;  // by class size: what the blocks occupy, not what was asked for
};

Census take_census();

// BITSLAB_LEAK_CHECK=1: prints the blocks still live, by class, to fd (one write per line).
// Called at exit by bootstrap; says "no blocks" when everything was freed.
void print_leak_report(int fd);

}  // namespace bitslab
