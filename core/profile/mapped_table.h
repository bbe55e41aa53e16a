// core/profile/mapped_table.h — the profiler's containers, in memory mapped for them alone: no
// malloc (the profiler runs inside malloc), no std containers (L3).
//
// MappedArray: a dense array with a fixed capacity, reserved at once and committed as it fills
// (first touch), so a short profile costs a few pages, not the reservation.
// HashIndex: linear probing over 16-byte slots {key, value}, key 0 = empty, doubled into a new
// mapping when half full; erase shifts the followers back, so no tombstones pile up.
// Not thread-safe: the profiler's lock guards them.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/os/os.h"

namespace bitslab::profile {

template <typename T>
class MappedArray {
 public:
  // Reserves room for `capacity` items; false when the kernel refuses.
  bool reserve(size_t capacity) {
    const size_t page = os::page_size();
    const size_t bytes = (capacity * sizeof(T) + page - 1) / page * page;
    items_ = static_cast<T*>(os::map_zeroed(bytes));
    if (items_ == nullptr) return false;
    capacity_ = capacity;
    return true;
  }
  // The index of the first of n new zeroed items, or -1 when they do not fit.
  int64_t append(size_t n) {
    if (items_ == nullptr || capacity_ - count_ < n) return -1;
    count_ += n;
    return static_cast<int64_t>(count_ - n);
  }
  T& operator[](size_t i) { return items_[i]; }
  const T& operator[](size_t i) const { return items_[i]; }
  size_t size() const { return count_; }

 private:
  T* items_ = nullptr;
  size_t count_ = 0;
  size_t capacity_ = 0;
};

class HashIndex {
 public:
  struct Slot {
    uint64_t key;  // 0: empty
    uint64_t value;
  };

  // The slot holding `key` whose value same(value) accepts, or else the empty slot where such
  // an entry goes (fill it, then call added()). nullptr only before the first make_room().
  template <typename Same>
  Slot* find(uint64_t key, Same same) {
    if (slots_ == nullptr) return nullptr;
    for (size_t i = home(key);; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.key == 0 || (s.key == key && same(s.value))) return &s;
    }
  }
  // Before an insertion: grows the index if one more entry would fill it past half. false when
  // it cannot (out of memory); the index is unchanged then.
  bool make_room();
  void added() { ++count_; }
  // Empties s (a slot find() returned, holding an entry), moving later entries of its probe run
  // back so that every entry stays reachable from its home slot.
  void erase(Slot* s);
  size_t size() const { return count_; }

 private:
  size_t home(uint64_t key) const { return (key * 0x9e3779b97f4a7c15) >> shift_; }
  Slot* slots_ = nullptr;
  size_t mask_ = 0;
  unsigned shift_ = 64;
  size_t count_ = 0;
};

}  // namespace bitslab::profile
