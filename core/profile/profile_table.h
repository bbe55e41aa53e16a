// core/profile/profile_table.h — what the heap profiler knows: the distinct call stacks it
// sampled, its sites (a stack and a requested size) with their sample counts, and the sampled
// blocks still live, each pointing at its site (L3).
//
// Counts are of samples, unweighted: a site's samples all have one size, so its weight
// (profile_math.h) is exact per site, as pprof's heap_v2 format expects. Not thread-safe: the
// profiler's lock guards it. Fixed capacities (kMaxSites, kMaxFrameWords): past them a new
// site's samples are dropped and counted, never written out of bounds.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/profile/mapped_table.h"
#include "core/profile/stack_trace.h"

namespace bitslab::profile {

constexpr size_t kMaxSites = size_t{1} << 20;
constexpr size_t kMaxFrameWords = size_t{1} << 23;  // 64 MiB reserved, touched as stacks come

struct Site {
  uint32_t first_frame;  // frames at [first_frame, first_frame + depth) of the frame store
  uint32_t depth;
  uint64_t size;       // the requested size
  uint64_t allocated;  // samples taken here since start
  uint64_t live;       // of those, not freed yet
};

class ProfileTable {
 public:
  // Maps the reservations; false when the kernel refuses (profiling then stays off).
  bool init();
  // A sampled block: counts it at its site (made if new) and makes it live. false when a
  // table is full or out of memory: the sample is dropped (dropped() counts it).
  bool add(uintptr_t block, size_t size, const uintptr_t* frames, size_t depth);
  // If `block` is a live sample, forgets it (its site's live count goes down): true. Otherwise
  // false (most blocks were never sampled).
  bool remove(uintptr_t block);

  size_t site_count() const { return sites_.size(); }
  const Site& site(size_t i) const { return sites_[i]; }
  const uintptr_t* frames(const Site& s) const { return &frames_[s.first_frame]; }
  size_t live_blocks() const { return live_.size(); }
  uint64_t dropped() const { return dropped_; }

 private:
  uint32_t site_for(size_t size, const uintptr_t* frames, size_t depth, uint64_t hash);

  MappedArray<Site> sites_;
  MappedArray<uintptr_t> frames_;
  HashIndex site_index_;  // key: hash of the frames and size; value: site index
  HashIndex live_;        // key: block address; value: site index
  uint64_t dropped_ = 0;
};

}  // namespace bitslab::profile
