#include "shim/system_malloc.h"

#include <dlfcn.h>

namespace bitslab::shim {

namespace {
using UsableSizeFn = size_t (*)(void*);
UsableSizeFn g_system_usable_size = nullptr;

UsableSizeFn lookup() {
  // RTLD_NEXT from this object: the definition after ours in search order, i.e. glibc's.
  auto fn = reinterpret_cast<UsableSizeFn>(dlsym(RTLD_NEXT, "malloc_usable_size"));
  __atomic_store_n(&g_system_usable_size, fn, __ATOMIC_RELEASE);
  return fn;
}

// Resolve at load time, when dlsym's own calloc for its error state can safely reach us.
__attribute__((constructor)) void resolve_at_load() { lookup(); }
}  // namespace

size_t system_usable_size(void* p) {
  UsableSizeFn fn = __atomic_load_n(&g_system_usable_size, __ATOMIC_ACQUIRE);
  if (fn == nullptr) fn = lookup();
  return fn != nullptr ? fn(p) : 0;
}

}  // namespace bitslab::shim
