// Shared main() of the LD_PRELOAD integration tests.
//
// These programs are deliberately NOT linked against bitslab: they call the
// ordinary malloc family and operator new/delete, and libbitslab.so must be
// interposed with LD_PRELOAD. Before running any test, main() looks up the
// two test hooks the shim exports and refuses to run (exit status 2) if they
// are missing, so a test cannot silently pass against glibc's malloc when the
// preload did not happen.

#include <dlfcn.h>

#include <cstddef>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/support/doctest_main.h"

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

namespace preload {
namespace {
// The file that defines `symbol` for this program, resolved to a real path ("" if none).
std::string defining_file(const char* symbol) {
  Dl_info info{};
  void* address = dlsym(RTLD_DEFAULT, symbol);
  if (address == nullptr || dladdr(address, &info) == 0 || info.dli_fname == nullptr) return "";
  char real[PATH_MAX];
  return realpath(info.dli_fname, real) != nullptr ? real : info.dli_fname;
}
}  // namespace

bool malloc_comes_from_ld_preload() {
  const std::string hooks = defining_file("bitslab_owns");
  for (const char* symbol : {"malloc", "free"}) {
    const std::string from = defining_file(symbol);
    if (from != hooks) {
      std::fprintf(stderr, "FAIL: preload check failed: %s comes from '%s', bitslab_owns from '%s'\n",
                   symbol, from.c_str(), hooks.c_str());
      return false;
    }
  }
  // That library is one LD_PRELOAD names (hardened.* name only libbitslab-hardened.so).
  const char* preload = std::getenv("LD_PRELOAD");
  std::string list = preload != nullptr ? preload : "";
  for (char& c : list)
    if (c == ':') c = ' ';
  char entry[PATH_MAX], real[PATH_MAX];
  for (const char* at = list.c_str(); std::sscanf(at, " %4095s", entry) == 1;) {
    if (realpath(entry, real) != nullptr && hooks == real) return true;
    at = std::strstr(at, entry) + std::strlen(entry);
  }
  std::fprintf(stderr, "FAIL: preload check failed: bitslab comes from '%s', which LD_PRELOAD (%s) does not name\n",
               hooks.c_str(), preload != nullptr ? preload : "unset");
  return false;
}
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

  // The program's malloc is the library whose hooks answer, and LD_PRELOAD names that library
  // (not, say, the default build when the hardened one was asked for).
  if (!preload::malloc_comes_from_ld_preload()) return 2;

  return bitslab::test::run_doctest(argc, argv);  // fails a run that ran no test case
}
