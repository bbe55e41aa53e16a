// Every discovered test entry runs through the guard in tests/support/doctest_main.h.
#include "tests/support/doctest_main.h"

int main(int argc, char** argv) { return bitslab::test::run_doctest(argc, argv); }
