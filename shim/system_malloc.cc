#include "shim/system_malloc.h"

#include "shim/late_symbol.h"

namespace bitslab::shim {

namespace {
using UsableSizeFn = size_t (*)(void*);
void* g_system_usable_size = nullptr;

// RTLD_NEXT from this object: the definition after ours in search order, i.e. glibc's.
UsableSizeFn system_usable_size_fn() {
  return late_symbol<UsableSizeFn>(g_system_usable_size, RTLD_NEXT, "malloc_usable_size");
}

// Resolve at load time, when dlsym's own calloc for its error state can safely reach us.
__attribute__((constructor)) void resolve_at_load() { system_usable_size_fn(); }
}  // namespace

size_t system_usable_size(void* p) {
  UsableSizeFn fn = system_usable_size_fn();
  return fn != nullptr ? fn(p) : 0;
}

}  // namespace bitslab::shim
