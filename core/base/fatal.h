// core/base/fatal.h — the one way the allocator reports a corrupt heap: one line on stderr,
// written with write(2) from a stack buffer (no stdio, no malloc), then abort() (L0). warn()
// writes such a line and returns.
#pragma once
#include <cstddef>
#include <initializer_list>

namespace bitslab {

// Prints "bitslab: <what> <address>" and aborts.
[[noreturn]] void fatal(const char* what, const void* address);
// Prints "bitslab: <what>" and aborts.
[[noreturn]] void fatal(const char* what);
// fatal(what, address) for a fast path's error branch, written `return fatal_tail(...)`. It never
// returns either, but is not declared [[noreturn]]: the compiler then jumps to it (a tail call)
// instead of calling it, and the fast path needs no stack frame on any of its branches (a call
// makes GCC align the stack on entry: 2 instructions on every free).
void fatal_tail(const char* what, const void* address);
// Prints "bitslab: " and the parts, concatenated, as one line.
void warn(std::initializer_list<const char*> parts);

// Formats into buf (no allocation); returns the length. Used by fatal and by stats output.
size_t format_hex(char* buf, size_t cap, unsigned long value);
size_t format_dec(char* buf, size_t cap, unsigned long value);

}  // namespace bitslab
