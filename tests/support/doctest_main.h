// tests/support/doctest_main.h — doctest's runner for every test binary here, with one rule
// doctest lacks: a run that was meant to test something and tested nothing fails.
//
// doctest exits 0 when its filter matches no test case ("test cases: 0 | 0 passed"). CTest's
// doctest_discover_tests reads test names into a CMake list, so a ';' in a name splits one case
// into two entries whose filters match nothing: both would pass without running a line. Here:
//   - a run that executed no test case exits kNoTestRan (3), saying which filter matched none;
//   - with --exactly-one-case (our discovery passes it to every entry), a run that executed any
//     number of cases other than one exits kNoTestRan as well.
// Queries (--list-test-cases, --help, --count, ...) are left as doctest answers them.
#pragma once

namespace bitslab::test {

inline constexpr int kNoTestRan = 3;

// Runs doctest on argc/argv (--exactly-one-case is ours and removed before doctest sees it).
int run_doctest(int argc, char** argv);

}  // namespace bitslab::test
