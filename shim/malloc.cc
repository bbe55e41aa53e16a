// shim/malloc.cc — the C allocation functions, with glibc's semantics. A request the core can
// serve (size <= BITSLAB_LARGE_THRESHOLD, alignment <= kMaxCoreAlign) goes to the core; anything
// bigger goes to glibc (in the hardened build, to the core's guarded large blocks). A pointer is
// the core's if its granule is ours (one load, which never faults), otherwise glibc's. All of it
// is the API's front end (core/api/dispatch.h) with glibc as its System.
#include <cerrno>
#include <cstdint>

#include "core/api/bitslab.h"  // BITSLAB_PUBLIC: what leaves the library
#include "core/api/dispatch.h"
#include "core/base/bits.h"
#include "core/base/compiler.h"
#include "core/base/config.h"
#include "shim/system_malloc.h"

using namespace bitslab;
using bitslab::shim::Glibc;

extern "C" {

BITSLAB_PUBLIC void* malloc(size_t size) { return dispatch::malloc<Glibc>(size); }

BITSLAB_PUBLIC void free(void* p) { dispatch::free<Glibc>(p); }

BITSLAB_PUBLIC void* calloc(size_t count, size_t size) { return dispatch::calloc<Glibc>(count, size); }

BITSLAB_PUBLIC void* realloc(void* p, size_t size) { return dispatch::realloc<Glibc>(p, size); }

BITSLAB_PUBLIC void* reallocarray(void* p, size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return ::realloc(p, total);
}

BITSLAB_PUBLIC int posix_memalign(void** out, size_t alignment, size_t size) {
  if (!is_pow2(alignment) || alignment % sizeof(void*) != 0) return EINVAL;  // *out untouched
  const int saved_errno = errno;
  void* p = dispatch::aligned<Glibc>(alignment, size);
  if (p == nullptr) {
    errno = saved_errno;  // posix_memalign reports through its result only
    return ENOMEM;
  }
  *out = p;
  return 0;
}

BITSLAB_PUBLIC void* aligned_alloc(size_t alignment, size_t size) {
  if (!is_pow2(alignment)) {  // C11 DR 460: an unsupported alignment fails
    errno = EINVAL;
    return nullptr;
  }
  return dispatch::aligned<Glibc>(alignment, size);
}

BITSLAB_PUBLIC void* memalign(size_t alignment, size_t size) {
  // As glibc: tiny alignments are malloc's, others round up to a power of two.
  if (alignment > (SIZE_MAX >> 1) + 1) {
    errno = EINVAL;
    return nullptr;
  }
  if (!is_pow2(alignment)) alignment = size_t{1} << (log2_floor(alignment) + 1);
  return dispatch::aligned<Glibc>(alignment, size);
}

BITSLAB_PUBLIC void* valloc(size_t size) { return dispatch::aligned<Glibc>(dispatch::page_size(), size); }

BITSLAB_PUBLIC void* pvalloc(size_t size) {
  const size_t page = dispatch::page_size();
  if (size > SIZE_MAX - page) {
    errno = ENOMEM;
    return nullptr;
  }
  const size_t rounded = size == 0 ? page : align_up(size, page);
  return dispatch::aligned<Glibc>(page, rounded);
}

BITSLAB_PUBLIC size_t malloc_usable_size(void* p) { return dispatch::usable_size<Glibc>(p); }

// Test and tooling hooks: not part of the malloc API.
BITSLAB_PUBLIC int bitslab_owns(const void* p) { return dispatch::owns(p); }
BITSLAB_PUBLIC size_t bitslab_max_core_size(void) { return kMaxCoreSize; }
BITSLAB_PUBLIC int bitslab_hardened(void) { return kHardened; }

}  // extern "C"
