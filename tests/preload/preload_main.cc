// Shared main() of the LD_PRELOAD integration tests.
//
// These programs are deliberately NOT linked against bitslab: they call the
// ordinary malloc family and operator new/delete, and libbitslab.so must be
// interposed with LD_PRELOAD. Before running any test, main() looks up the
// two test hooks the shim exports and refuses to run (exit status 2) if they
// are missing, so a test cannot silently pass against glibc's malloc when the
// preload did not happen.

#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <dlfcn.h>

#include <cstddef>
#include <cstdio>

namespace preload {
namespace {
using OwnsFn = int (*)(const void*);
using MaxCoreSizeFn = std::size_t (*)();
OwnsFn owns_fn = nullptr;
MaxCoreSizeFn max_core_size_fn = nullptr;
}  // namespace

// Declared (not in a header) by every test file that uses them.
bool owns(const void* p) { return owns_fn(p) != 0; }
std::size_t max_core_size() { return max_core_size_fn(); }
}  // namespace preload

int main(int argc, char** argv) {
  // A function pointer obtained through void* is how dlsym is meant to be used.
  preload::owns_fn = reinterpret_cast<preload::OwnsFn>(dlsym(RTLD_DEFAULT, "bitslab_owns"));
  preload::max_core_size_fn =
      reinterpret_cast<preload::MaxCoreSizeFn>(dlsym(RTLD_DEFAULT, "bitslab_max_core_size"));
  if (preload::owns_fn == nullptr || preload::max_core_size_fn == nullptr) {
    std::fprintf(stderr,
                 "FAIL: preload check failed: bitslab_owns/bitslab_max_core_size not found; "
                 "run this test with LD_PRELOAD=/absolute/path/to/libbitslab.so\n");
    return 2;
  }
  const std::size_t max_core = preload::max_core_size();
  // Sanity: the tests below use max_core_size() to pick "pool" and "large"
  // sizes, which only makes sense for a plausible value.
  if (max_core <= 1024 || max_core > (std::size_t{1} << 30)) {
    std::fprintf(stderr, "FAIL: implausible bitslab_max_core_size() = %zu\n", max_core);
    return 2;
  }

  doctest::Context context(argc, argv);
  return context.run();
}
