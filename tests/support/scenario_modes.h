// tests/support/scenario_modes.h — the main() of a scenario program: argv[1] names the mode
// to run, the rest are its arguments; an unknown or missing mode prints the list and exits 2.
#pragma once
#include <cstddef>
#include <cstdio>
#include <cstring>

namespace bitslab::test {

struct ScenarioMode {
  const char* name;
  int (*run)(int argc, char** argv);  // gets the whole argv; its own arguments start at argv[2]
  const char* what;                   // the arguments, then what it does, for the usage list
};

template <size_t N>
int run_scenario_mode(int argc, char** argv, const ScenarioMode (&modes)[N]) {
  if (argc > 1)
    for (const ScenarioMode& m : modes)
      if (std::strcmp(argv[1], m.name) == 0) return m.run(argc, argv);
  int width = 0;
  for (const ScenarioMode& m : modes) {
    const int length = static_cast<int>(std::strlen(m.name));
    if (length > width) width = length;
  }
  std::fprintf(stderr, "usage: %s MODE [ARGS]\n", argv[0]);
  for (const ScenarioMode& m : modes) std::fprintf(stderr, "  %-*s %s\n", width, m.name, m.what);
  return 2;
}

}  // namespace bitslab::test
