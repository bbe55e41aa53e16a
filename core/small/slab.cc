#include "core/small/slab.h"

namespace bitslab {

Slab* Slab::create(void* page, unsigned cls, void* owner, uint64_t owner_mark) {
  Slab* s = of(page);
  s->size_class = static_cast<uint16_t>(cls);
  s->block_size = kSmallClassBytes[cls];
  s->base = static_cast<char*>(page);
  s->capacity = static_cast<uint16_t>(small_capacity(cls));
  s->frontier = kHardened ? s->capacity : 0;  // (the hardened build's pick is random: Slab::frontier)
  // With m = ceil(2^32/d), (x*m)>>32 == x/d for all x < 2^32/d >= 2^22 > kSlabBytes;
  // tests/unit/small_test.cc ("block_index is exact ...") checks every offset of every class.
  s->div_magic = static_cast<uint32_t>(((uint64_t{1} << 32) + s->block_size - 1) / s->block_size);
  s->owner = owner;
  s->owner_mark = owner_mark;
  s->owner_only = small_class_kept_by_freeing_thread(cls) ? 0 : ~uint64_t{0};
  s->used = 0;
  s->hint = 0;
  s->state = kCurrent;
  s->prev = s->next = nullptr;
  s->free.init_free(s->capacity);
  // Every remote word of a slab given back was applied (its blocks were all free): zero again,
  // but a fresh header's are whatever the slot held, and the 16 B class's tail is written once.
  if (remote_words_in_tail(cls)) {
    s->remote_words =
        reinterpret_cast<uint64_t*>(s->base + kSlabBytes - kRemoteTailBytes + kRemoteTailCanaryBytes);
    s->remote_words[-2] = s->remote_words[-1] = s->remote_tail_canary();
  } else {
    s->remote_words = s->remote_in_header;
  }
  for (uint32_t w = 0; w < s->bitmap_words(); ++w) s->remote_words[w] = 0;
  s->remote_summary = 0;
  s->remote_next = nullptr;
  __atomic_store_n(&s->magic, header_tag(s, kLiveMagic), __ATOMIC_RELEASE);
  return s;
}

}  // namespace bitslab
