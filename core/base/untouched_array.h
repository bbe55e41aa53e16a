// core/base/untouched_array.h — an array that construction at run time leaves untouched (L0).
//
// A thread heap's block-cache rows take 10 KiB, of which a thread uses the rows of the few
// classes it allocates. Zeroing them in the constructor would fault in every one of their pages
// for each new heap (3 pages per thread), though only slots written first are ever read.
// Constant evaluation (the constinit empty heap) must initialize every element, so there, and
// only there, the elements are zeroed: in .bss, at no cost.
#pragma once
#include <cstddef>
#include <type_traits>

namespace bitslab {

template <typename T, size_t N>
struct UntouchedArray {
  static_assert(std::is_trivially_destructible_v<T>);
  T items[N];

  constexpr UntouchedArray() {
    if (std::is_constant_evaluated())
      for (T& item : items) item = T{};
  }
  constexpr T& operator[](size_t i) { return items[i]; }
  constexpr const T& operator[](size_t i) const { return items[i]; }
};

}  // namespace bitslab
