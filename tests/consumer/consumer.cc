// A program that uses an installed bitslab the way a user's project would: it includes
// <bitslab/bitslab.h> from the install prefix and links either libbitslab.so or the static
// override library (tests/consumer/CMakeLists.txt, or pkg-config in run.sh). It checks that
// the C++ API works and that linking alone made bitslab the program's malloc and operator new.
#include <bitslab/bitslab.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

static int failures = 0;
static void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "consumer: FAILED: %s\n", what);
    ++failures;
  }
}

int main(int argc, char** argv) {
  const char* how = argc > 1 ? argv[1] : "?";
  // Nothing was preloaded: whatever serves malloc got here by linking.
  check(std::getenv("LD_PRELOAD") == nullptr, "runs without LD_PRELOAD");

  void* p = bitslab::alloc(100);
  check(p != nullptr && bitslab::usable_size(p) >= 100, "alloc(100) gives >= 100 usable bytes");
  check(bitslab::owns(p), "owns() knows its own block");
  std::memset(p, 0xab, 100);
  p = bitslab::realloc(p, 5000);
  check(p != nullptr && static_cast<unsigned char*>(p)[99] == 0xab, "realloc keeps the contents");
  bitslab::free(p);

  void* aligned = bitslab::aligned_alloc(4096, 100);
  check(aligned != nullptr && reinterpret_cast<uintptr_t>(aligned) % 4096 == 0, "aligned_alloc(4096)");
  bitslab::free(aligned);

  errno = 0;
  check(bitslab::alloc(bitslab::max_size() + 1) == nullptr && errno == ENOMEM,
        "alloc above max_size() gives nullptr + ENOMEM");
  errno = 0;
  check(bitslab::aligned_alloc(3, 16) == nullptr && errno == EINVAL, "alignment 3 gives EINVAL");

  // Linking made bitslab the malloc and operator new of the whole program.
  void* m = std::malloc(64);
  int* n = new int(7);
  check(bitslab::owns(m), "malloc(64) comes from bitslab");
  check(bitslab::owns(n), "new int comes from bitslab");
  std::free(m);
  delete n;

  const bitslab::Stats stats = bitslab::stats();
  check(stats.heaps_in_use >= 1 && stats.reserved_bytes > 0, "stats() shows a heap and reserved memory");
  check(bitslab::max_size() == 262144, "max_size() is 256 KiB");

  if (failures != 0) return 1;
  std::printf("consumer (%s): bitslab API and malloc override OK, %zu bytes reserved\n", how,
              stats.reserved_bytes);
  return 0;
}
