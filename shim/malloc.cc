// shim/malloc.cc — the C allocation functions, with glibc's semantics.
#include <cerrno>
#include <cstring>

#include "core/base/fatal.h"
#include "core/os/os.h"
#include "shim/shim.h"

using namespace bitslab;
using namespace bitslab::shim;

namespace {
bool mul_overflows(size_t a, size_t b, size_t* product) {
  return __builtin_mul_overflow(a, b, product);
}
}  // namespace

extern "C" {

BITSLAB_EXPORT void* malloc(size_t size) { return malloc_impl(size); }

BITSLAB_EXPORT void free(void* p) { free_impl(p); }

BITSLAB_EXPORT void* calloc(size_t count, size_t size) {
  size_t total;
  if (mul_overflows(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  if (total > large_threshold()) {
    note_system_request(total);
    // Guarded blocks come from fresh or decommitted pages: zero already.
    if constexpr (kHardened) return guarded::allocate(total, 0);
    return __libc_calloc(count, size);
  }
  void* p = dispatch::alloc(total);
  if (p != nullptr) memset(p, 0, total);
  return p;
}

BITSLAB_EXPORT void* realloc(void* p, size_t size) {
  if (p == nullptr) return malloc_impl(size);
  const GranuleKind kind = HeapRange::kind_of(p);
  if (kind == GranuleKind::kNone) return __libc_realloc(p, size);  // glibc's block stays glibc's
  if (size == 0) {  // glibc frees and returns NULL
    dispatch::free(p, kind);
    return nullptr;
  }
  if (kind == GranuleKind::kPages) fatal("realloc of a pointer that bitslab never handed out:", p);
  if (size <= large_threshold()) return dispatch::realloc(p, kind, size);
  // Above the threshold the block moves the way malloc would place it: to glibc, or in the
  // hardened build to a fresh guarded block (also from a guarded one, so it ends at its guard).
  void* moved = malloc_impl(size);
  if (moved == nullptr) return nullptr;
  const size_t old_usable = dispatch::usable_size(p, kind);
  memcpy(moved, p, size < old_usable ? size : old_usable);
  dispatch::free(p, kind);
  return moved;
}

BITSLAB_EXPORT void* reallocarray(void* p, size_t count, size_t size) {
  size_t total;
  if (mul_overflows(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return realloc(p, total);
}

BITSLAB_EXPORT int posix_memalign(void** out, size_t alignment, size_t size) {
  if (!is_pow2(alignment) || alignment % sizeof(void*) != 0) return EINVAL;  // *out untouched
  const int saved_errno = errno;
  void* p = aligned_impl(alignment, size);
  if (p == nullptr) {
    errno = saved_errno;  // posix_memalign reports through its result only
    return ENOMEM;
  }
  *out = p;
  return 0;
}

BITSLAB_EXPORT void* aligned_alloc(size_t alignment, size_t size) {
  if (!is_pow2(alignment)) {  // C11 DR 460: an unsupported alignment fails
    errno = EINVAL;
    return nullptr;
  }
  return aligned_impl(alignment, size);
}

BITSLAB_EXPORT void* memalign(size_t alignment, size_t size) {
  // As glibc: tiny alignments are malloc's, others round up to a power of two.
  if (alignment > (SIZE_MAX >> 1) + 1) {
    errno = EINVAL;
    return nullptr;
  }
  if (!is_pow2(alignment)) alignment = size_t{1} << (log2_floor(alignment) + 1);
  return aligned_impl(alignment, size);
}

BITSLAB_EXPORT void* valloc(size_t size) { return aligned_impl(os::page_size(), size); }

BITSLAB_EXPORT void* pvalloc(size_t size) {
  const size_t page = os::page_size();
  if (size > SIZE_MAX - page) {
    errno = ENOMEM;
    return nullptr;
  }
  const size_t rounded = size == 0 ? page : align_up(size, page);
  return aligned_impl(page, rounded);
}

BITSLAB_EXPORT size_t malloc_usable_size(void* p) {
  if (p == nullptr) return 0;
  const GranuleKind kind = HeapRange::kind_of(p);
  if (kind == GranuleKind::kNone) return system_usable_size(p);
  if (kind == GranuleKind::kPages) return 0;  // our metadata, not a block
  return dispatch::usable_size(p, kind);
}

// Test and tooling hooks: not part of the malloc API.
BITSLAB_EXPORT int bitslab_owns(const void* p) { return dispatch::block_kind(p) != GranuleKind::kNone; }
BITSLAB_EXPORT size_t bitslab_max_core_size(void) { return kMaxCoreSize; }
BITSLAB_EXPORT int bitslab_hardened(void) { return kHardened; }

}  // extern "C"
