#include "shim/cxx_runtime.h"

#include "core/base/fatal.h"
#include "shim/late_symbol.h"

namespace bitslab::shim::cxx {

namespace {
// Mangled names (Itanium C++ ABI, size_t = unsigned long).
constexpr const char* kGetNewHandler = "_ZSt15get_new_handlerv";
constexpr const char* kThrowBadAlloc = "_ZSt17__throw_bad_allocv";
constexpr const char* kNothrowNew[2][2] = {
    {"_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t"},                             // plain
    {"_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t"}};  // aligned

void* g_get_new_handler = nullptr;
void* g_throw_bad_alloc = nullptr;
void* g_nothrow_new[2][2] = {};

// Resolve while the program starts, outside any allocation, so that an out-of-memory path
// does not have to run dlsym (which can itself allocate).
__attribute__((constructor)) void resolve_at_load() {
  current_new_handler();
  late_symbol<void (*)()>(g_throw_bad_alloc, RTLD_DEFAULT, kThrowBadAlloc);
  for (int aligned = 0; aligned < 2; ++aligned)
    for (int array = 0; array < 2; ++array)
      late_symbol<void* (*)()>(g_nothrow_new[aligned][array], RTLD_NEXT, kNothrowNew[aligned][array]);
}
}  // namespace

std::new_handler current_new_handler() {
  auto get = late_symbol<std::new_handler (*)()>(g_get_new_handler, RTLD_DEFAULT, kGetNewHandler);
  return get != nullptr ? get() : nullptr;
}

void throw_bad_alloc() {
  auto raise = late_symbol<void (*)()>(g_throw_bad_alloc, RTLD_DEFAULT, kThrowBadAlloc);
  if (raise != nullptr) raise();
  fatal("operator new: out of memory, and no C++ runtime loaded to throw std::bad_alloc");
}

void* nothrow_new_via_libstdcxx(size_t size, size_t alignment, bool array) {
  const std::nothrow_t nothrow{};  // not std::nothrow: that object lives in libstdc++
  if (alignment == 0) {
    using PlainFn = void* (*)(size_t, const std::nothrow_t&);
    auto fn = late_symbol<PlainFn>(g_nothrow_new[0][array], RTLD_NEXT, kNothrowNew[0][array]);
    return fn != nullptr ? fn(size, nothrow) : nullptr;
  }
  using AlignedFn = void* (*)(size_t, std::align_val_t, const std::nothrow_t&);
  auto fn = late_symbol<AlignedFn>(g_nothrow_new[1][array], RTLD_NEXT, kNothrowNew[1][array]);
  return fn != nullptr ? fn(size, static_cast<std::align_val_t>(alignment), nothrow) : nullptr;
}

}  // namespace bitslab::shim::cxx
