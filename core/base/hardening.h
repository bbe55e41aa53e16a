// core/base/hardening.h — the process secret behind the hardened build's checks (L0).
//
// In the hardened build (kHardened, config.h) every piece of allocator metadata that a heap
// overflow could reach is either out of the overflow's way or keyed with a secret the program
// never sees:
//   - slab and pool region headers start with a tag derived from the secret and the header's
//     address, checked before the header is trusted (an overflow from the block before them
//     writes the tag first, and cannot know it);
//   - no free block holds a link: freed small blocks and pool chunks are bits in bitmaps in
//     their headers (a remote free too: core/small/remote_frees.h), so a write into a freed
//     block has nothing to forge;
//   - large blocks keep their header one guard page away from their data (core/large).
// In the default build header_tag compiles to its plain value.
#pragma once
#include <cstdint>

#include "core/base/config.h"

namespace bitslab {

namespace detail {
extern uint64_t g_hardening_secret;  // from AT_RANDOM; set once, before any block exists
}

// Sets the secret (bootstrap, first thing in process_init). Allocates nothing.
void init_hardening_secret();

// The tag a live header at `address` carries (kHardened), or `plain` (default build). Never 0:
// 0 marks a retired header.
inline uint32_t header_tag(const void* address, uint32_t plain) {
  if constexpr (!kHardened) return plain;
  const uint64_t mixed = (detail::g_hardening_secret ^ reinterpret_cast<uintptr_t>(address)) *
                         0x9e3779b97f4a7c15;
  return static_cast<uint32_t>(mixed >> 32) | 1;
}

}  // namespace bitslab
