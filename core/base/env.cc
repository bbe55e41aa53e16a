#include "core/base/env.h"

#include <cstdlib>

#include "core/base/fatal.h"

namespace bitslab {

bool env_unsigned(const char* name, uint64_t* value) {
  const char* text = getenv(name);
  if (text == nullptr) return false;
  uint64_t parsed = 0;
  const char* c = text;
  for (; *c >= '0' && *c <= '9'; ++c) {
    const uint64_t digit = static_cast<uint64_t>(*c - '0');
    if (parsed > (UINT64_MAX - digit) / 10) break;  // overflow: reported below
    parsed = parsed * 10 + digit;
  }
  if (c == text || *c != '\0') {
    warn({"ignoring ", name, "=", text, " (not an unsigned integer); keeping the default"});
    return false;
  }
  *value = parsed;
  return true;
}

}  // namespace bitslab
