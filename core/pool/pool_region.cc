#include "core/pool/pool_region.h"

#include "core/pool/pool_classes.h"

namespace bitslab {

PoolRegion* PoolRegion::create(void* granule, unsigned cls) {
  PoolRegion* r = static_cast<PoolRegion*>(granule);
  r->size_class = cls;
  r->slot_bytes = static_cast<uint32_t>(pool_class_bytes(cls));
  r->slot_count = static_cast<uint32_t>((kGranuleBytes - kPoolHeaderBytes) / r->slot_bytes);
  r->carved.store(0, std::memory_order_relaxed);
  r->next_region = nullptr;
  // The granule is fresh from mmap: free_bits are already all zero (every slot "not free").
  r->magic = header_tag(r, kLiveMagic);
  return r;
}

}  // namespace bitslab
