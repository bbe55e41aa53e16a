// shim/cxx_runtime.h — the three pieces of the C++ runtime that operator new needs, found in
// the program's libstdc++ at run time instead of linked: libbitslab.so does not depend on
// libstdc++, so a C program that preloads it does not map (and pay RSS for) the C++ runtime.
// Every program that calls operator new has libstdc++ loaded, so they are there when needed.
#pragma once
#include <cstddef>
#include <new>

namespace bitslab::shim::cxx {

// std::get_new_handler() of the program; nullptr if libstdc++ is not loaded.
std::new_handler current_new_handler();

// Throws std::bad_alloc through libstdc++ (std::__throw_bad_alloc). Without libstdc++ there
// is no C++ caller to catch it: report and abort.
[[noreturn]] void throw_bad_alloc();

// libstdc++'s nothrow operator new (alignment 0) or new[] (array) for the given alignment:
// it calls our throwing operator new and turns std::bad_alloc into nullptr, which needs a
// catch that this exception-free library cannot have. nullptr if libstdc++ is not loaded.
void* nothrow_new_via_libstdcxx(size_t size, size_t alignment, bool array);

}  // namespace bitslab::shim::cxx
