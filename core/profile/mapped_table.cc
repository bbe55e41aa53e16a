#include "core/profile/mapped_table.h"

namespace bitslab::profile {

namespace {
constexpr unsigned kFirstSlotsLog2 = 10;  // 16 KiB
}

bool HashIndex::make_room() {
  const size_t capacity = slots_ == nullptr ? 0 : mask_ + 1;
  if (2 * (count_ + 1) <= capacity) return true;
  const unsigned bits = capacity == 0 ? kFirstSlotsLog2 : 65 - shift_;
  const size_t page = os::page_size();
  const size_t bytes = ((size_t{1} << bits) * sizeof(Slot) + page - 1) / page * page;
  auto* fresh = static_cast<Slot*>(os::map_zeroed(bytes));
  if (fresh == nullptr) return false;
  Slot* old = slots_;
  slots_ = fresh;
  mask_ = (size_t{1} << bits) - 1;
  shift_ = 64 - bits;
  for (size_t i = 0; i < capacity; ++i) {
    if (old[i].key == 0) continue;
    size_t j = home(old[i].key);
    while (slots_[j].key != 0) j = (j + 1) & mask_;
    slots_[j] = old[i];
  }
  if (old != nullptr) os::release(old, (capacity * sizeof(Slot) + page - 1) / page * page);
  return true;
}

void HashIndex::erase(Slot* s) {
  size_t hole = static_cast<size_t>(s - slots_);
  for (size_t j = (hole + 1) & mask_; slots_[j].key != 0; j = (j + 1) & mask_) {
    // The entry at j may move into the hole unless its home lies cyclically in (hole, j]:
    // then the hole is before its home and a probe from home would never pass it.
    const size_t h = home(slots_[j].key);
    const bool home_after_hole = hole < j ? (h > hole && h <= j) : (h > hole || h <= j);
    if (home_after_hole) continue;
    slots_[hole] = slots_[j];
    hole = j;
  }
  slots_[hole] = Slot{0, 0};
  --count_;
}

}  // namespace bitslab::profile
