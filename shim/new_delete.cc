// shim/new_delete.cc — every replaceable C++ operator new and delete (all 20 that libstdc++
// exports). Throwing forms call the new_handler until it gives up, then throw std::bad_alloc;
// nothrow forms do the same but return nullptr. Sized deletes treat the size as a hint only:
// the block's real size comes from our metadata, so a wrong size cannot corrupt the heap.
#include <cstddef>
#include <new>

#include "shim/shim.h"

using namespace bitslab::shim;

namespace {

// One allocation attempt: plain or aligned.
inline void* try_alloc(size_t size, size_t alignment) {
  return alignment == 0 ? malloc_impl(size) : aligned_impl(alignment, size);
}

void* new_or_throw(size_t size, size_t alignment = 0) {
  for (;;) {
    if (void* p = try_alloc(size, alignment)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();  // may free memory, throw, or terminate
  }
}

void* new_or_null(size_t size, size_t alignment = 0) noexcept {
  try {
    return new_or_throw(size, alignment);
  } catch (...) {
    return nullptr;
  }
}

size_t align_of(std::align_val_t a) { return static_cast<size_t>(a); }

}  // namespace

#define BITSLAB_NEW_EXPORT __attribute__((visibility("default")))

BITSLAB_NEW_EXPORT void* operator new(size_t n) { return new_or_throw(n); }
BITSLAB_NEW_EXPORT void* operator new[](size_t n) { return new_or_throw(n); }
BITSLAB_NEW_EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept { return new_or_null(n); }
BITSLAB_NEW_EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept { return new_or_null(n); }
BITSLAB_NEW_EXPORT void* operator new(size_t n, std::align_val_t a) { return new_or_throw(n, align_of(a)); }
BITSLAB_NEW_EXPORT void* operator new[](size_t n, std::align_val_t a) { return new_or_throw(n, align_of(a)); }
BITSLAB_NEW_EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_or_null(n, align_of(a));
}
BITSLAB_NEW_EXPORT void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_or_null(n, align_of(a));
}

BITSLAB_NEW_EXPORT void operator delete(void* p) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete[](void* p) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete(void* p, size_t) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete[](void* p, size_t) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete(void* p, std::align_val_t) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete(void* p, size_t, std::align_val_t) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete[](void* p, size_t, std::align_val_t) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { free_impl(p); }
