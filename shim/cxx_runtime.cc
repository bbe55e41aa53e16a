#include "shim/cxx_runtime.h"

#include <dlfcn.h>

#include "core/base/fatal.h"

namespace bitslab::shim::cxx {

namespace {
// Mangled names (Itanium C++ ABI, size_t = unsigned long).
constexpr const char* kGetNewHandler = "_ZSt15get_new_handlerv";
constexpr const char* kThrowBadAlloc = "_ZSt17__throw_bad_allocv";
constexpr const char* kNothrowNew[2][2] = {
    {"_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t"},                             // plain
    {"_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t"}};  // aligned

// A symbol looked up once and kept; looked up again while still missing (a C program may
// dlopen a C++ library, and libstdc++ with it, at any time).
template <typename Fn>
Fn lookup(void*& cache, void* scope, const char* name) {
  void* fn = __atomic_load_n(&cache, __ATOMIC_ACQUIRE);
  if (fn == nullptr) {
    fn = dlsym(scope, name);
    __atomic_store_n(&cache, fn, __ATOMIC_RELEASE);
  }
  return reinterpret_cast<Fn>(fn);
}

void* g_get_new_handler = nullptr;
void* g_throw_bad_alloc = nullptr;
void* g_nothrow_new[2][2] = {};

// Resolve while the program starts, outside any allocation, so that an out-of-memory path
// does not have to run dlsym (which can itself allocate).
__attribute__((constructor)) void resolve_at_load() {
  current_new_handler();
  lookup<void (*)()>(g_throw_bad_alloc, RTLD_DEFAULT, kThrowBadAlloc);
  for (int aligned = 0; aligned < 2; ++aligned)
    for (int array = 0; array < 2; ++array)
      lookup<void* (*)()>(g_nothrow_new[aligned][array], RTLD_NEXT, kNothrowNew[aligned][array]);
}
}  // namespace

std::new_handler current_new_handler() {
  auto get = lookup<std::new_handler (*)()>(g_get_new_handler, RTLD_DEFAULT, kGetNewHandler);
  return get != nullptr ? get() : nullptr;
}

void throw_bad_alloc() {
  auto raise = lookup<void (*)()>(g_throw_bad_alloc, RTLD_DEFAULT, kThrowBadAlloc);
  if (raise != nullptr) raise();
  fatal("operator new: out of memory, and no C++ runtime loaded to throw std::bad_alloc");
}

void* nothrow_new_via_libstdcxx(size_t size, size_t alignment, bool array) {
  const std::nothrow_t nothrow{};  // not std::nothrow: that object lives in libstdc++
  void* fn = nullptr;
  if (alignment == 0) {
    fn = reinterpret_cast<void*>(
        lookup<void* (*)(size_t, const std::nothrow_t&)>(g_nothrow_new[0][array], RTLD_NEXT, kNothrowNew[0][array]));
    if (fn == nullptr) return nullptr;
    return reinterpret_cast<void* (*)(size_t, const std::nothrow_t&)>(fn)(size, nothrow);
  }
  fn = reinterpret_cast<void*>(lookup<void* (*)(size_t, std::align_val_t, const std::nothrow_t&)>(
      g_nothrow_new[1][array], RTLD_NEXT, kNothrowNew[1][array]));
  if (fn == nullptr) return nullptr;
  return reinterpret_cast<void* (*)(size_t, std::align_val_t, const std::nothrow_t&)>(fn)(
      size, static_cast<std::align_val_t>(alignment), nothrow);
}

}  // namespace bitslab::shim::cxx
