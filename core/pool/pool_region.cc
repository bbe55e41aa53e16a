#include "core/pool/pool_region.h"

#include "core/base/fatal.h"
#include "core/os/os.h"
#include "core/pool/pool_classes.h"

namespace bitslab {

PoolRegion* PoolRegion::create(void* granule, unsigned cls) {
  PoolRegion* r = static_cast<PoolRegion*>(granule);  // zero-filled: lists, counts, bits
  r->size_class = cls;
  r->slot_bytes = static_cast<uint32_t>(pool_class_bytes(cls));
  r->slot_count = static_cast<uint32_t>((kGranuleBytes - kPoolHeaderBytes) / r->slot_bytes);
  r->div_magic = ~uint64_t{0} / r->slot_bytes + 1;
  for (size_t w = 0; w * 64 < r->slot_count; ++w) {
    const size_t left = r->slot_count - w * 64;
    const uint64_t bits = left >= 64 ? ~uint64_t{0} : (uint64_t{1} << left) - 1;
    r->free_bits[w].store(bits, std::memory_order_relaxed);
  }
  r->available = r->slot_count;
  r->magic = header_tag(r, kLiveMagic);
  return r;
}

size_t PoolRegion::take_available(void** out_top, uint8_t** states_top, size_t n, SlotState as) {
  size_t got = 0;
  size_t w = scan_word;
  uint32_t last = 0;
  char* const base = slot_base();
  const size_t bytes = slot_bytes;  // a local: the state byte stores may alias the header
  while (got < n && available != 0) {
    while (free_bits[w].load(std::memory_order_relaxed) == 0) ++w;  // one is set at or after w
    uint64_t bits = free_bits[w].load(std::memory_order_relaxed);
    const size_t before = got;
    do {  // the word's lowest bits, one blsr each
      last = static_cast<uint32_t>(w * 64 + ctz64(bits));
      set_state(&state[last], as);
      ++got;
      states_top[-static_cast<ptrdiff_t>(got)] = &state[last];
      out_top[-static_cast<ptrdiff_t>(got)] = base + last * bytes;
      bits &= bits - 1;
    } while (bits != 0 && got < n);
    free_bits[w].store(bits, std::memory_order_relaxed);
    available -= static_cast<uint32_t>(got - before);
  }
  scan_word = static_cast<uint32_t>(w);
  if (last >= carved.load(std::memory_order_relaxed)) carved.store(last + 1, std::memory_order_release);
  // They may have been decommitted: the estimate assumes so while any clean bytes are left.
  if (clean_bytes != 0) {
    const size_t taken = got * slot_bytes;
    clean_bytes -= clean_bytes < taken ? clean_bytes : taken;
  }
  return got;
}

size_t PoolRegion::make_available(void* const* chunks, size_t n) {
  // The region's counts are written once for the run, not once a chunk: a spill of a thread's
  // cache is mostly chunks of one region.
  uint32_t lowest_word = scan_word;
  size_t k = 0;
  for (; k < n && of(chunks[k]) == this; ++k) {
    const uint32_t i = slot_of(chunks[k]);
    const uint64_t bit = uint64_t{1} << (i % 64);
    std::atomic<uint64_t>& word = free_bits[i / 64];
    const uint64_t bits = word.load(std::memory_order_relaxed);
    if (BITSLAB_UNLIKELY(bits & bit)) fatal("double free of", chunks[k]);
    word.store(bits | bit, std::memory_order_relaxed);
    // After the bit: a double free racing with this one sees this or the cache's state.
    set_state(&state[i], kAvailable);
    if (i / 64 < lowest_word) lowest_word = i / 64;
  }
  available += static_cast<uint32_t>(k);
  scan_word = lowest_word;
  return k;
}

size_t PoolRegion::decommit_available() {
  const uintptr_t page = os::page_size();
  size_t bytes = 0;
  // Slots past `carved` were never handed out: untouched, nothing to give back.
  const uint32_t touched = carved.load(std::memory_order_relaxed);
  auto word = [this](uint32_t i) { return free_bits[i / 64].load(std::memory_order_relaxed); };
  uint32_t i = 0;
  while (i < touched) {
    if (i % 64 == 0 && word(i) == 0) {  // a word of slots in use: skip it whole
      i += 64;
      continue;
    }
    if (!is_free(i)) {
      ++i;
      continue;
    }
    uint32_t end = i;  // the run of available slots [i, end)
    while (end < touched && is_free(end)) ++end;
    const uintptr_t from = (reinterpret_cast<uintptr_t>(slot_at(i)) + page - 1) & ~(page - 1);
    const uintptr_t to = reinterpret_cast<uintptr_t>(slot_at(end)) & ~(page - 1);
    if (to > from) {
      os::decommit(reinterpret_cast<void*>(from), to - from);
      bytes += to - from;
    }
    i = end;
  }
  clean_bytes = bytes;  // every available run is decommitted now, the ones from before too
                        // (and never more than the slots handed out: carved * slot_bytes)
  return bytes;
}

}  // namespace bitslab
