#include "core/profile/profile_table.h"

#include <cstring>

namespace bitslab::profile {

namespace {
constexpr uint32_t kNoSite = ~uint32_t{0};

uint64_t hash_site(size_t size, const uintptr_t* frames, size_t depth) {
  uint64_t h = 0xcbf29ce484222325 ^ size;
  for (size_t i = 0; i < depth; ++i) h = (h ^ frames[i]) * 0x100000001b3 + (h >> 29);
  return h | 1;  // key 0 means an empty slot
}
}  // namespace

bool ProfileTable::init() { return sites_.reserve(kMaxSites) && frames_.reserve(kMaxFrameWords); }

uint32_t ProfileTable::site_for(size_t size, const uintptr_t* frames, size_t depth, uint64_t hash) {
  if (!site_index_.make_room()) return kNoSite;
  HashIndex::Slot* slot = site_index_.find(hash, [&](uint64_t i) {
    const Site& s = sites_[i];
    return s.size == size && s.depth == depth &&
           memcmp(&frames_[s.first_frame], frames, depth * sizeof *frames) == 0;
  });
  if (slot->key != 0) return static_cast<uint32_t>(slot->value);
  const int64_t site = sites_.append(1);
  const int64_t first = frames_.append(depth);
  if (site < 0 || first < 0) return kNoSite;  // a frame or two may stay appended: harmless
  memcpy(&frames_[static_cast<size_t>(first)], frames, depth * sizeof *frames);
  sites_[static_cast<size_t>(site)] =
      Site{static_cast<uint32_t>(first), static_cast<uint32_t>(depth), size, 0, 0};
  *slot = HashIndex::Slot{hash, static_cast<uint64_t>(site)};
  site_index_.added();
  return static_cast<uint32_t>(site);
}

bool ProfileTable::add(uintptr_t block, size_t size, const uintptr_t* frames, size_t depth) {
  const uint32_t site = site_for(size, frames, depth, hash_site(size, frames, depth));
  if (site == kNoSite || !live_.make_room()) {
    ++dropped_;
    return false;
  }
  HashIndex::Slot* slot = live_.find(block, [](uint64_t) { return true; });
  if (slot->key != 0)
    --sites_[slot->value].live;  // a stale entry: freed where we did not see it
  else
    live_.added();
  *slot = HashIndex::Slot{block, site};
  ++sites_[site].allocated;
  ++sites_[site].live;
  return true;
}

bool ProfileTable::remove(uintptr_t block) {
  HashIndex::Slot* slot = live_.find(block, [](uint64_t) { return true; });
  if (slot == nullptr || slot->key == 0) return false;
  --sites_[slot->value].live;
  live_.erase(slot);
  return true;
}

}  // namespace bitslab::profile
