// tests/preload/preload.h — what the LD_PRELOAD test programs share.
#pragma once
#include <cstddef>
#include <cstdint>

namespace preload {

// The shim's test hooks, looked up with dlsym by preload_main.cc (which refuses to run
// the tests when they are missing, i.e. when the preload did not happen).
bool owns(const void* p);
std::size_t max_core_size();

// Hides a value from the optimizer, so that it cannot fold a call such as malloc(SIZE_MAX),
// warn about it at compile time, or elide a new/delete pair whose result looks unused.
template <typename T>
T opaque(T value) {
  asm volatile("" : "+r"(value));
  return value;
}

inline bool is_aligned(const void* p, std::size_t alignment) {
  return reinterpret_cast<std::uintptr_t>(p) % alignment == 0;
}

}  // namespace preload
