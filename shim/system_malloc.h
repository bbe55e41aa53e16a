// shim/system_malloc.h — the only route to glibc's allocator (never dlsym on the malloc path).
//
// glibc 2.36 still exports these as GLIBC_2.2.5 entry points; because the shim does not define
// them, they reach glibc's own malloc directly, with no chance of recursing into us.
#pragma once
#include <cstddef>

extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* p, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
void __libc_free(void* p);
}

namespace bitslab::shim {
// glibc's malloc_usable_size for a pointer it made (no __libc_ alias exists for it); looked up
// with dlsym once, outside any malloc call.
size_t system_usable_size(void* p);
}  // namespace bitslab::shim
