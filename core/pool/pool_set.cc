#include "core/pool/pool_set.h"

namespace bitslab {

void PoolSet::init() {
  for (unsigned c = 0; c < kPoolClassCount; ++c) pools_[c].configure(c);
}

void* PoolSet::allocate(size_t size) {
  for (unsigned c = pool_class_of(size); c < kPoolClassCount; ++c) {
    if (void* chunk = pools_[c].allocate()) return chunk;
  }
  return nullptr;
}

}  // namespace bitslab
