// core/base/side_room.h — where a granule keeps its pages' metadata (L0): arithmetic only.
//
// A granule cut into pages of page_bytes (core/page/system_page_allocator.h) gives its first
// page to headers: that page is cut into one slot per page, slot i for page i, and slot 0
// holds the granule's own header. A page's slot, its side room, is its user's, for metadata
// kept apart from the page: the slab layer keeps each slab's header there (core/small/slab.h),
// so the headers of a granule's slabs lie side by side instead of kSlabBytes apart, where
// every one would fall into the same few sets of the CPU's caches. The slot's bytes are
// whatever its last user left (zero in a fresh granule).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/base/compiler.h"
#include "core/base/config.h"

namespace bitslab {

// The granule's own header must fit slot 0: side room exists for pages of 64 KiB and up.
inline constexpr size_t kSideRoomMin = 1024;
// Bytes [kSlotZeroBegin, kSlotZeroEnd) of slot 0 stay zero (the granule header keeps them so),
// as they are in the slot of a page never used (a granule comes zeroed): a page user that keeps
// a "nothing handed out here" field there (the slab header's frontier) finds it so for a pointer
// into the header page too.
inline constexpr size_t kSlotZeroBegin = 8;
inline constexpr size_t kSlotZeroEnd = 16;

constexpr size_t side_room_bytes(size_t page_bytes) { return page_bytes / (kGranuleBytes / page_bytes); }

// The slot of the page that p lies in (any address in the page): two shifts, two ands, an or.
template <size_t kPageBytes>
BITSLAB_ALWAYS_INLINE void* side_room(const void* p) {
  static_assert(side_room_bytes(kPageBytes) >= kSideRoomMin, "the slot must hold the granule header");
  constexpr unsigned kPageShift = __builtin_ctzll(kPageBytes);
  constexpr unsigned kSlotShift = __builtin_ctzll(side_room_bytes(kPageBytes));
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  // The page's index in its granule times the slot size, (a >> kPageShift) << kSlotShift, in
  // one shift and one mask.
  const uintptr_t slot = (a >> (kPageShift - kSlotShift)) & ((kGranuleBytes / kPageBytes - 1) << kSlotShift);
  return reinterpret_cast<void*>((a & ~(kGranuleBytes - 1)) | slot);
}

}  // namespace bitslab
