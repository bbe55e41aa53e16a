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

#include "core/base/line_writer.h"
#include "shim/cxx_runtime.h"
#include "shim/shim.h"

using namespace bitslab::shim;

namespace {

// One allocation attempt: plain (alignment 0) or aligned.
inline void* try_alloc(size_t size, size_t alignment) {
  return alignment == 0 ? malloc_impl(size) : aligned_impl(alignment, size);
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

[[noreturn]] BITSLAB_NOINLINE void wrong_size(void* p, size_t size) {
  bitslab::LineWriter line;
  line.text("bitslab: sized delete with a wrong size (").dec(size)
      .text(" bytes) of ").hex(reinterpret_cast<unsigned long>(p));
  line.flush();
  abort();
}

// Whether `size` is what operator new(size) (alignment 0) or operator new(size, alignment)
// was asked for when it returned p: the block's class must be the one that size selects, or
// for an aligned new, one at least that large.
bool size_matches(void* p, bitslab::GranuleKind kind, size_t size, size_t alignment) {
  using namespace bitslab;
  const size_t usable = dispatch::usable_size(p, kind);
  if (size > usable) return false;
  if (alignment != 0) return true;  // an aligned new may take a larger class: size fits is all
  if (kind == GranuleKind::kSlabs) return size <= kSmallMax && small_class_of(size) == Slab::of(p)->size_class;
  if (kind == GranuleKind::kPool)
    return size > kSmallMax && size <= kPoolMax && pool_class_of(size) == PoolRegion::of(p)->size_class;
  return size > large_threshold();  // a guarded large block: only a large request makes one
}

// The checked sized delete (hardened build); the default build frees and ignores the size.
BITSLAB_ALWAYS_INLINE void sized_free(void* p, size_t size, size_t alignment = 0) {
  if constexpr (bitslab::kHardened) {
    const bitslab::GranuleKind kind = bitslab::HeapRange::kind_of(p);
    // glibc's blocks (made before we were loaded) and our metadata are left to free_impl.
    if (kind != bitslab::GranuleKind::kNone && kind != bitslab::GranuleKind::kPages &&
        !size_matches(p, kind, size, alignment))
      wrong_size(p, size);
  }
  free_impl(p);
}

}  // namespace

#define BITSLAB_NEW_EXPORT __attribute__((visibility("default")))

BITSLAB_NEW_EXPORT void* operator new(size_t n) { return new_or_throw(n); }
BITSLAB_NEW_EXPORT void* operator new[](size_t n) { return new_or_throw(n); }
BITSLAB_NEW_EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept { return new_or_null(n, 0, false); }
BITSLAB_NEW_EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept { return new_or_null(n, 0, true); }
BITSLAB_NEW_EXPORT void* operator new(size_t n, std::align_val_t a) { return new_or_throw(n, align_of(a)); }
BITSLAB_NEW_EXPORT void* operator new[](size_t n, std::align_val_t a) { return new_or_throw(n, align_of(a)); }
BITSLAB_NEW_EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_or_null(n, align_of(a), false);
}
BITSLAB_NEW_EXPORT void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_or_null(n, align_of(a), true);
}

BITSLAB_NEW_EXPORT void operator delete(void* p) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete[](void* p) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete(void* p, size_t n) noexcept { sized_free(p, n); }
BITSLAB_NEW_EXPORT void operator delete[](void* p, size_t n) noexcept { sized_free(p, n); }
BITSLAB_NEW_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete(void* p, std::align_val_t) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete(void* p, size_t n, std::align_val_t a) noexcept {
  sized_free(p, n, align_of(a));
}
BITSLAB_NEW_EXPORT void operator delete[](void* p, size_t n, std::align_val_t a) noexcept {
  sized_free(p, n, align_of(a));
}
BITSLAB_NEW_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { free_impl(p); }
BITSLAB_NEW_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { free_impl(p); }
