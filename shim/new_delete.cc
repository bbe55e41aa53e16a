// shim/new_delete.cc — every replaceable C++ operator new and delete (all 20 that libstdc++
// exports). Throwing forms call the new_handler until it gives up, then throw std::bad_alloc;
// nothrow forms do the same but return nullptr. Sized deletes never trust the size: the block's
// real size comes from our metadata, so a wrong size cannot corrupt the heap. The hardened
// build (the checked mode) compares the two and aborts on a mismatch, which is a bug in the
// program (a delete through a base class without a virtual destructor, a wrong array count).
//
// Compiled without exceptions: the throw and the nothrow forms' catch are libstdc++'s own,
// reached through shim/cxx_runtime.h, so the library does not depend on libstdc++.
#include <cstddef>
#include <cstdlib>
#include <new>

#include "core/api/bitslab.h"  // BITSLAB_PUBLIC: what leaves the library
#include "core/api/dispatch.h"
#include "core/base/compiler.h"
#include "shim/cxx_runtime.h"
#include "shim/system_malloc.h"

using namespace bitslab::shim;

namespace {

// One allocation attempt: plain (alignment 0) or aligned.
inline void* try_alloc(size_t size, size_t alignment) {
  return alignment == 0 ? bitslab::dispatch::malloc<Glibc>(size) : bitslab::dispatch::aligned<Glibc>(alignment, size);
}

// The standard's loop: retry after each call of the new_handler; no handler → bad_alloc.
BITSLAB_NOINLINE void* new_slow(size_t size, size_t alignment) {
  for (;;) {
    std::new_handler handler = cxx::current_new_handler();
    if (handler == nullptr) cxx::throw_bad_alloc();
    handler();  // may free memory, throw, or terminate
    if (void* p = try_alloc(size, alignment)) return p;
  }
}

BITSLAB_ALWAYS_INLINE void* new_or_throw(size_t size, size_t alignment = 0) {
  if (void* p = try_alloc(size, alignment)) return p;  // the common case: no handler involved
  return new_slow(size, alignment);
}

// nothrow: the first attempt is ours; after a failure, libstdc++'s nothrow new runs the
// handler loop through our throwing new and catches the bad_alloc.
inline void* new_or_null(size_t size, size_t alignment, bool array) noexcept {
  if (void* p = try_alloc(size, alignment)) return p;
  return cxx::nothrow_new_via_libstdcxx(size, alignment, array);
}

size_t align_of(std::align_val_t a) { return static_cast<size_t>(a); }

BITSLAB_ALWAYS_INLINE void free_impl(void* p) { bitslab::dispatch::free<Glibc>(p); }
// The sized forms: checked in the hardened build (core/api/dispatch.h), plain frees otherwise.
BITSLAB_ALWAYS_INLINE void sized_free(void* p, size_t size, size_t alignment = 0) {
  bitslab::dispatch::sized_free<Glibc>(p, size, alignment);
}

}  // namespace

BITSLAB_PUBLIC void* operator new(size_t n) { return new_or_throw(n); }
BITSLAB_PUBLIC void* operator new[](size_t n) { return new_or_throw(n); }
BITSLAB_PUBLIC void* operator new(size_t n, const std::nothrow_t&) noexcept { return new_or_null(n, 0, false); }
BITSLAB_PUBLIC void* operator new[](size_t n, const std::nothrow_t&) noexcept { return new_or_null(n, 0, true); }
BITSLAB_PUBLIC void* operator new(size_t n, std::align_val_t a) { return new_or_throw(n, align_of(a)); }
BITSLAB_PUBLIC void* operator new[](size_t n, std::align_val_t a) { return new_or_throw(n, align_of(a)); }
BITSLAB_PUBLIC void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_or_null(n, align_of(a), false);
}
BITSLAB_PUBLIC void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_or_null(n, align_of(a), true);
}

BITSLAB_PUBLIC void operator delete(void* p) noexcept { free_impl(p); }
BITSLAB_PUBLIC void operator delete[](void* p) noexcept { free_impl(p); }
BITSLAB_PUBLIC void operator delete(void* p, size_t n) noexcept { sized_free(p, n); }
BITSLAB_PUBLIC void operator delete[](void* p, size_t n) noexcept { sized_free(p, n); }
BITSLAB_PUBLIC void operator delete(void* p, const std::nothrow_t&) noexcept { free_impl(p); }
BITSLAB_PUBLIC void operator delete[](void* p, const std::nothrow_t&) noexcept { free_impl(p); }
BITSLAB_PUBLIC void operator delete(void* p, std::align_val_t) noexcept { free_impl(p); }
BITSLAB_PUBLIC void operator delete[](void* p, std::align_val_t) noexcept { free_impl(p); }
BITSLAB_PUBLIC void operator delete(void* p, size_t n, std::align_val_t a) noexcept {
  sized_free(p, n, align_of(a));
}
BITSLAB_PUBLIC void operator delete[](void* p, size_t n, std::align_val_t a) noexcept {
  sized_free(p, n, align_of(a));
}
BITSLAB_PUBLIC void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { free_impl(p); }
BITSLAB_PUBLIC void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { free_impl(p); }
