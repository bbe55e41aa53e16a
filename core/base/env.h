// core/base/env.h — reading BITSLAB_* settings from the environment without allocating (L0).
//
// getenv only reads the environment block. A value that does not parse prints one warning line
// (warn() from fatal.h: one write(2), no stdio) and leaves the default.
#pragma once
#include <cstdint>

namespace bitslab {

// Sets *value from the decimal unsigned integer in environment variable `name`, if it is set
// and parses. Returns whether it did.
bool env_unsigned(const char* name, uint64_t* value);

}  // namespace bitslab
