// core/base/tagged_stack.h — a lock-free LIFO of memory blocks, safe against ABA (L0).
//
// The link lives in the first word of each free block. The head packs the top block's address
// (47 bits, see kAddressBits) with a 16-bit generation counter that every push and pop bumps, so
// a pop that read a stale `next` fails its compare-and-swap instead of corrupting the list.
// Blocks must stay mapped forever (the core never unmaps): a pop may read the link word of a
// block another thread has just taken, and relies only on the CAS to discard what it read.
#pragma once
#include <atomic>
#include <cstdint>

#include "core/base/config.h"
#include "core/base/hardening.h"

namespace bitslab {

class TaggedStack {
 public:
  constexpr TaggedStack() = default;

  void push(void* block) {
    uint64_t old_head = head_.load(std::memory_order_relaxed);
    for (;;) {
      store_link(block, pointer_of(old_head));
      const uint64_t new_head = pack(block, tag_of(old_head) + 1);
      if (head_.compare_exchange_weak(old_head, new_head, std::memory_order_release,
                                      std::memory_order_relaxed))
        return;
    }
  }

  // valid_link(top, next) is asked about the link of the block popped once the pop has
  // succeeded (before, it may be a stale read that the CAS then rejects): the hardened build
  // passes a check that `next` is one of the owner's blocks, which aborts otherwise.
  template <typename ValidLink>
  void* pop(ValidLink&& valid_link) {
    uint64_t old_head = head_.load(std::memory_order_acquire);
    for (;;) {
      void* top = pointer_of(old_head);
      if (top == nullptr) return nullptr;
      void* next = load_link(top);
      const uint64_t new_head = pack(next, tag_of(old_head) + 1);
      if (head_.compare_exchange_weak(old_head, new_head, std::memory_order_acquire,
                                      std::memory_order_acquire)) {
        valid_link(top, next);
        return top;
      }
    }
  }
  void* pop() {
    return pop([](void*, void*) {});
  }

  // The link in a free block's first word; encoded with the block's address and the process
  // secret in the hardened build (core/base/hardening.h).
  static void store_link(void* block, void* next) {
    __atomic_store_n(static_cast<uintptr_t*>(block), reinterpret_cast<uintptr_t>(next) ^ link_code(block),
                     __ATOMIC_RELAXED);
  }
  static void* load_link(void* block) {
    return reinterpret_cast<void*>(__atomic_load_n(static_cast<uintptr_t*>(block), __ATOMIC_RELAXED) ^
                                   link_code(block));
  }

 private:
  static constexpr unsigned kTagShift = 64 - 16;
  static_assert(kAddressBits <= kTagShift, "addresses and tags share one word");
  static uint64_t pack(void* p, uint64_t tag) {
    return reinterpret_cast<uint64_t>(p) | (tag << kTagShift);
  }
  static void* pointer_of(uint64_t head) {
    return reinterpret_cast<void*>(head & ((uint64_t{1} << kTagShift) - 1));
  }
  static uint64_t tag_of(uint64_t head) { return head >> kTagShift; }

  std::atomic<uint64_t> head_{0};
};

}  // namespace bitslab
