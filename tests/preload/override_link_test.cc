// Linked with the static bitslab_override library (no LD_PRELOAD): the
// program's own malloc family and operator new/delete must be bitslab's, and
// so must libc's internal calls to malloc.
#include <doctest/doctest.h>

#include <malloc.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "tests/support/doctest_main.h"

extern "C" {
int bitslab_owns(const void* p);
std::size_t bitslab_max_core_size(void);
}

TEST_CASE("the test really runs without libbitslab.so preloaded") {
  // Otherwise the checks below would prove nothing about the static library.
  std::ifstream maps("/proc/self/maps");
  REQUIRE(maps.good());
  std::string line;
  bool shared_bitslab_mapped = false;
  while (std::getline(maps, line))
    if (line.find("libbitslab.so") != std::string::npos) shared_bitslab_mapped = true;
  CHECK_FALSE(shared_bitslab_mapped);
}

TEST_CASE("malloc(16) and new int come from bitslab") {
  void* p = std::malloc(16);
  int* i = new int(5);
  REQUIRE(p != nullptr);
  CHECK(bitslab_owns(p) == 1);
  CHECK(bitslab_owns(i) == 1);
  std::free(p);
  delete i;
}

TEST_CASE("the rest of the API is overridden too") {
  const std::size_t max = bitslab_max_core_size();
  void* c = std::calloc(4, 100);
  auto* array = new double[300];
  void* pool = std::malloc(5000);
  void* large = std::malloc(max + 1);
  void* aligned = nullptr;
  REQUIRE(posix_memalign(&aligned, 64, 200) == 0);
  REQUIRE(c != nullptr);
  REQUIRE(pool != nullptr);
  REQUIRE(large != nullptr);
  CHECK(bitslab_owns(c) == 1);
  CHECK(bitslab_owns(array) == 1);
  CHECK(bitslab_owns(pool) == 1);
  CHECK(bitslab_owns(large) == 0);  // beyond bitslab's range: glibc's
  CHECK(malloc_usable_size(pool) >= 5000);
  CHECK(reinterpret_cast<std::uintptr_t>(aligned) % 64 == 0);

  void* grown = std::realloc(c, 2000);
  REQUIRE(grown != nullptr);
  CHECK(bitslab_owns(grown) == 1);

  std::free(aligned);
  std::free(large);
  std::free(pool);
  delete[] array;
  std::free(grown);
}

TEST_CASE("libc-internal allocations reach the overriding malloc") {
  char* copy = strdup("copied by libc");
  REQUIRE(copy != nullptr);
  CHECK(bitslab_owns(copy) == 1);
  std::free(copy);

  std::vector<std::string> strings;
  for (int i = 0; i < 1000; ++i) strings.push_back("string number " + std::to_string(i));
  CHECK(bitslab_owns(strings.data()) == 1);
  CHECK(bitslab_owns(strings[500].data()) == 1);
  CHECK(strings[999] == "string number 999");
}

int main(int argc, char** argv) { return bitslab::test::run_doctest(argc, argv); }
