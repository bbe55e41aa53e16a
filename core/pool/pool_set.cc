#include "core/pool/pool_set.h"

namespace bitslab {

void PoolSet::init(GranuleSource* source) {
  source_ = source;
  empties_.budget.store(kEmptyRegionBudget, std::memory_order_relaxed);
  empties_.pools = pools_;
  empties_.count = kPoolClassCount;
  for (unsigned c = 0; c < kPoolClassCount; ++c)
    pools_[c].configure(c, ChunkPool::kUnlimited, source, &empties_);
}

size_t PoolSet::purge(uint64_t now_ns, uint64_t delay_ns, bool force, uint64_t empty_delay_ns) {
  size_t bytes = 0;
  for (ChunkPool& p : pools_) bytes += p.purge(now_ns, delay_ns, force, empty_delay_ns);
  return bytes;
}

void* PoolSet::allocate(size_t size) {
  for (unsigned c = pool_class_of(size); c < kPoolClassCount; ++c) {
    if (void* chunk = pools_[c].allocate()) return chunk;
  }
  return nullptr;
}

}  // namespace bitslab
