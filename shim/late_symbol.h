// shim/late_symbol.h — a function of another library, looked up by name with dlsym once and
// kept. Used only off the malloc path (dlsym can allocate): from constructors at load time and
// on rare paths (foreign usable size, out of memory in operator new).
#pragma once
#include <dlfcn.h>

namespace bitslab::shim {

// `cache` holds the address once found; while it is still missing, every call looks again
// (a C program may dlopen a C++ library, and libstdc++ with it, at any time).
// scope: RTLD_DEFAULT (the program's global lookup) or RTLD_NEXT (the definition after ours).
template <typename Fn>
Fn late_symbol(void*& cache, void* scope, const char* name) {
  void* fn = __atomic_load_n(&cache, __ATOMIC_ACQUIRE);
  if (fn == nullptr) {
    fn = dlsym(scope, name);
    __atomic_store_n(&cache, fn, __ATOMIC_RELEASE);
  }
  return reinterpret_cast<Fn>(fn);
}

}  // namespace bitslab::shim
