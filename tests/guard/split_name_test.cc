// The guard of tests/support/doctest_main.h, shown at work on every ctest run. This case's name
// holds a ';', which doctest_discover_tests splits into two ctest entries, each filtering on half
// the name and so matching no test case. Both entries pass only if the guard fails the run with
// its message (tests/CMakeLists.txt); without the guard, doctest would exit 0 having run nothing.
#include <doctest/doctest.h>

TEST_CASE("doctest guard: a name with a semicolon; is split by test discovery") { CHECK(1 + 1 == 2); }
