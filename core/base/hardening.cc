#include "core/base/hardening.h"

#include <cstring>
#include <sys/auxv.h>

namespace bitslab {

uint64_t detail::g_hardening_secret = 0;

void init_hardening_secret() {
  if constexpr (!kHardened) return;
  // AT_RANDOM: 16 random bytes the kernel gives every process. glibc takes its stack and
  // pointer guards from them as they are, so the secret is a hash of both halves instead.
  uint64_t half[2] = {0x243f6a8885a308d3, 0x13198a2e03707344};
  if (const void* random = reinterpret_cast<const void*>(getauxval(AT_RANDOM)))
    memcpy(half, random, sizeof half);
  uint64_t z = half[0] ^ (half[1] * 0x9e3779b97f4a7c15);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
  z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
  detail::g_hardening_secret = z ^ (z >> 31);
}

}  // namespace bitslab
