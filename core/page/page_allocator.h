// core/page/page_allocator.h — whole pages in and out; knows nothing about blocks (L2).
//
// The interface of the page_allocator seed: pages are fixed-size, page-aligned blocks, handed
// out and taken back in batches.
#pragma once
#include <cstddef>

namespace bitslab {

class PageAllocator {
 public:
  // Fills pages[0..n) and returns n, or returns how many it could get (errno = ENOMEM) when the
  // OS refuses memory; the pages it did get are valid and must be given back by the caller.
  virtual size_t allocate(void** pages, size_t n) = 0;
  virtual void deallocate(void* const* pages, size_t n) = 0;
  virtual size_t page_size() const = 0;

  void* allocate_one() {
    void* page = nullptr;
    return allocate(&page, 1) == 1 ? page : nullptr;
  }
  void deallocate_one(void* page) { deallocate(&page, 1); }

 protected:
  constexpr PageAllocator() = default;
  ~PageAllocator() = default;  // never deleted through this interface
};

}  // namespace bitslab
