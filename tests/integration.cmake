# Integration tests: programs run with libbitslab.so preloaded, a program
# linked with the static override library, and real programs (python3, g++,
# git, sqlite3, bash) run under LD_PRELOAD.
#
# include()d from tests/CMakeLists.txt after enable_testing(). Test names are
# prefixed "preload." / "programs." and labelled accordingly:
#   ctest --test-dir build -L 'preload|programs' --output-on-failure

find_package(Threads REQUIRED)
find_package(doctest REQUIRED)

set(BITSLAB_INTEGRATION_DIR ${CMAKE_CURRENT_LIST_DIR})

# Flags for all test programs here. -fno-builtin and -fno-allocation-dce keep
# the compiler from folding or deleting the malloc/new calls under test.
set(BITSLAB_INTEGRATION_FLAGS -Wall -Wextra -fno-builtin -fno-allocation-dce)

# ---------------------------------------------------------------------------
# LD_PRELOAD test programs. They must NOT link against bitslab: the library
# is interposed at run time, and preload_main.cc refuses to run (exit 2) if
# its bitslab_owns/bitslab_max_core_size hooks are missing.
set(BITSLAB_PRELOAD_TESTS
  c_api               # the malloc family on small, pool and large sizes
  cxx_new_delete      # all 20 operator new/delete variants, bad_alloc, new_handler
  routing             # bitslab_owns(): small/pool from bitslab, large from glibc
  threads             # cross-thread frees, 200 short threads, exit destructors
  fork                # fork while other threads allocate
  realloc_boundaries  # realloc through every class boundary, up and down
  foreign_free        # free/realloc/malloc_usable_size of __libc_malloc blocks
  double_free         # death test: SIGABRT and a message naming the address
  heap_growth         # > 256 MiB live: the heap outgrows its first reservation
  out_of_memory       # RLIMIT_AS and BITSLAB_INJECT_OOM: NULL + ENOMEM, bad_alloc, recovery
  leak_check          # BITSLAB_LEAK_CHECK=1: leaky_program's report, parsed row by row
  introspection       # malloc_info(): glibc's XML, totals that agree with mallinfo2()
  hardened            # libbitslab-hardened.so: each defence against the attack it stops
)
foreach(name IN LISTS BITSLAB_PRELOAD_TESTS)
  set(target preload_${name}_test)
  add_executable(${target}
    ${BITSLAB_INTEGRATION_DIR}/preload/preload_main.cc
    ${BITSLAB_INTEGRATION_DIR}/preload/${name}_test.cc
    ${BITSLAB_INTEGRATION_DIR}/support/child.cc   # fork-based death tests
    ${BITSLAB_INTEGRATION_DIR}/support/doctest_main.cc)
  target_compile_options(${target} PRIVATE ${BITSLAB_INTEGRATION_FLAGS})
  target_link_libraries(${target} PRIVATE doctest::doctest Threads::Threads ${CMAKE_DL_LIBS})
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR})
  # Build the library along with its tests, without linking to it.
  add_dependencies(${target} bitslab)

  add_test(NAME preload.${name} COMMAND ${target})
  set_tests_properties(preload.${name} PROPERTIES
    ENVIRONMENT "LD_PRELOAD=$<TARGET_FILE:bitslab>"
    LABELS preload
    TIMEOUT 60)
endforeach()

# The hardened library: its own test, and the tests that hold for any build.
if(BITSLAB_BUILD_HARDENED)
  set_tests_properties(preload.hardened PROPERTIES ENVIRONMENT "LD_PRELOAD=$<TARGET_FILE:bitslab-hardened>")
  add_dependencies(preload_hardened_test bitslab-hardened)
  foreach(name c_api threads fork foreign_free double_free heap_growth out_of_memory introspection)
    add_test(NAME hardened.${name} COMMAND preload_${name}_test)
    set_tests_properties(hardened.${name} PROPERTIES
      ENVIRONMENT "LD_PRELOAD=$<TARGET_FILE:bitslab-hardened>" LABELS hardened TIMEOUT 60)
  endforeach()
  # The leak report's rows, and the program's exit status (tests/scripts/expect.sh).
  add_test(NAME hardened.leak_check
    COMMAND ${BITSLAB_INTEGRATION_DIR}/scripts/expect.sh --match "small +768 +40 +30720$"
            --match "pool +5120 +3 +15360$" --match "large +\\(any size\\) +1 +1048576$"
            -- $<TARGET_FILE:leaky_program> leak)
  set_tests_properties(hardened.leak_check PROPERTIES
    ENVIRONMENT "LD_PRELOAD=$<TARGET_FILE:bitslab-hardened>;BITSLAB_LEAK_CHECK=1" LABELS hardened)
else()
  set_tests_properties(preload.hardened PROPERTIES DISABLED TRUE)
endif()

# The program whose leaks leak_check_test knows.
add_executable(leaky_program ${BITSLAB_INTEGRATION_DIR}/preload/leaky_program.c)
target_compile_options(leaky_program PRIVATE -Wall -Wextra -fno-builtin)
target_link_libraries(leaky_program PRIVATE Threads::Threads)
target_compile_definitions(preload_leak_check_test PRIVATE LEAKY_PROGRAM="$<TARGET_FILE:leaky_program>")
add_dependencies(preload_leak_check_test leaky_program)

find_package(Python3 REQUIRED COMPONENTS Interpreter)
# The heap profiler (BITSLAB_PROFILE=1), end to end: tests/scripts/profile_test.py runs
# profiled_program (no frame pointers: the stacks come from the DWARF unwinder) and real
# programs, and reads their profiles with scripts/bitslab-profile and google-pprof.
add_executable(profiled_program ${BITSLAB_INTEGRATION_DIR}/preload/profiled_program.cc)
target_compile_options(profiled_program PRIVATE -Wall -Wextra -O2 -fno-builtin -fomit-frame-pointer)
target_link_libraries(profiled_program PRIVATE Threads::Threads ${CMAKE_DL_LIBS})
add_dependencies(profiled_program bitslab)
foreach(case shares exact leak threads fork signal misuse python gxx)
  add_test(NAME profile.${case}
    COMMAND ${Python3_EXECUTABLE} ${BITSLAB_INTEGRATION_DIR}/scripts/profile_test.py ${case}
            $<TARGET_FILE:profiled_program> $<TARGET_FILE:bitslab>)
  set_tests_properties(profile.${case} PROPERTIES LABELS profile TIMEOUT 300)
endforeach()
# The same program linked with the static override: there the stacks come from libgcc's
# unwinder, our frames told apart by CFA (LIBRARY "none": nothing preloaded).
add_executable(profiled_program_override ${BITSLAB_INTEGRATION_DIR}/preload/profiled_program.cc)
target_compile_options(profiled_program_override PRIVATE -Wall -Wextra -O2 -fno-builtin -fomit-frame-pointer)
target_compile_definitions(profiled_program_override PRIVATE PROFILED_OVERRIDE)
target_link_libraries(profiled_program_override PRIVATE bitslab_override Threads::Threads ${CMAKE_DL_LIBS})
foreach(case shares exact leak misuse)
  add_test(NAME profile.override_${case}
    COMMAND ${Python3_EXECUTABLE} ${BITSLAB_INTEGRATION_DIR}/scripts/profile_test.py ${case}
            $<TARGET_FILE:profiled_program_override> none)
  set_tests_properties(profile.override_${case} PROPERTIES LABELS profile TIMEOUT 300)
endforeach()
if(BITSLAB_BUILD_HARDENED)  # the hardened library samples the same way
  foreach(case exact leak misuse)
    add_test(NAME hardened.profile_${case}
      COMMAND ${Python3_EXECUTABLE} ${BITSLAB_INTEGRATION_DIR}/scripts/profile_test.py ${case}
              $<TARGET_FILE:profiled_program> $<TARGET_FILE:bitslab-hardened>)
    set_tests_properties(hardened.profile_${case} PROPERTIES LABELS hardened TIMEOUT 300)
  endforeach()
endif()

# Options and statistics: BITSLAB_SHOW_STATS text and json, BITSLAB_VERBOSE, bad
# values, malloc_stats/mallinfo2/malloc_trim, all parsed.
add_test(NAME observe.stats_and_options
  COMMAND ${Python3_EXECUTABLE} ${BITSLAB_INTEGRATION_DIR}/scripts/observe_test.py
          $<TARGET_FILE:leaky_program> $<TARGET_FILE:bitslab>)
set_tests_properties(observe.stats_and_options PROPERTIES LABELS observe TIMEOUT 120)

# The fault-injection half of the out-of-memory test needs its switch set before start-up: it
# is marked skip() in the source, and this entry runs it alone with the switch on.
add_test(NAME preload.out_of_memory_injected
  COMMAND preload_out_of_memory_test --no-skip -tc=*fault*injection*)
set_tests_properties(preload.out_of_memory_injected PROPERTIES
  ENVIRONMENT "LD_PRELOAD=$<TARGET_FILE:bitslab>;BITSLAB_INJECT_OOM=64" LABELS preload TIMEOUT 60)

# The guard itself: without the preload a test program must refuse to run,
# so none of the tests above can pass against glibc's malloc by accident.
add_test(NAME preload.requires_preload
  COMMAND ${BITSLAB_INTEGRATION_DIR}/scripts/expect.sh --status 2 --match "^FAIL: preload check failed"
          -- $<TARGET_FILE:preload_routing_test>)
set_tests_properties(preload.requires_preload PROPERTIES
  ENVIRONMENT_MODIFICATION "LD_PRELOAD=unset:"
  LABELS preload
  TIMEOUT 30)
# ...nor when another library's malloc is the program's, even with bitslab's hooks present.
find_library(BITSLAB_MIMALLOC NAMES mimalloc)  # scripts/setup installs libmimalloc-dev
add_test(NAME preload.requires_bitslab_malloc
  COMMAND ${BITSLAB_INTEGRATION_DIR}/scripts/expect.sh --status 2
          --match "^FAIL: preload check failed: malloc comes from .*mimalloc"
          -- $<TARGET_FILE:preload_routing_test>)
set_tests_properties(preload.requires_bitslab_malloc PROPERTIES
  ENVIRONMENT "LD_PRELOAD=${BITSLAB_MIMALLOC}:$<TARGET_FILE:bitslab>"
  LABELS preload
  TIMEOUT 30)

# ---------------------------------------------------------------------------
# Static override: bitslab_override linked first, no LD_PRELOAD.
add_executable(override_link_test ${BITSLAB_INTEGRATION_DIR}/preload/override_link_test.cc
               ${BITSLAB_INTEGRATION_DIR}/support/doctest_main.cc)
target_compile_options(override_link_test PRIVATE ${BITSLAB_INTEGRATION_FLAGS})
target_link_libraries(override_link_test PRIVATE bitslab_override doctest::doctest Threads::Threads)
target_include_directories(override_link_test PRIVATE ${PROJECT_SOURCE_DIR})
add_test(NAME preload.override_link COMMAND override_link_test)
set_tests_properties(preload.override_link PROPERTIES
  ENVIRONMENT_MODIFICATION "LD_PRELOAD=unset:"
  LABELS preload
  TIMEOUT 60)

# ---------------------------------------------------------------------------
# Real programs under LD_PRELOAD, driven by tests/programs/run_program.sh.
# A missing tool is passed on as *-NOTFOUND, and the runner then fails the
# test (it is never skipped): scripts/setup installs all of them.
find_program(BITSLAB_BASH bash)
find_program(BITSLAB_PYTHON3 python3)
find_program(BITSLAB_GXX g++)
find_program(BITSLAB_GIT git)
find_program(BITSLAB_SQLITE3 sqlite3)
foreach(tool BITSLAB_BASH BITSLAB_PYTHON3 BITSLAB_GXX BITSLAB_GIT BITSLAB_SQLITE3)
  if(NOT ${tool})
    message(WARNING "${tool}: program not found; its programs.* test will fail")
  endif()
endforeach()

# programs.<name> runs the workload <name> with the tool in the variable.
set(BITSLAB_PROGRAM_TESTS
  "python\;BITSLAB_PYTHON3"
  "gxx\;BITSLAB_GXX"
  "git\;BITSLAB_GIT"
  "sqlite3\;BITSLAB_SQLITE3"
  "bash\;BITSLAB_BASH")
foreach(entry IN LISTS BITSLAB_PROGRAM_TESTS)
  list(GET entry 0 program)
  list(GET entry 1 tool_variable)
  add_test(NAME programs.${program}
    COMMAND ${BITSLAB_BASH} ${BITSLAB_INTEGRATION_DIR}/programs/run_program.sh
            $<TARGET_FILE:bitslab> ${program} ${${tool_variable}})
  set_tests_properties(programs.${program} PROPERTIES
    LABELS programs
    TIMEOUT 60)
endforeach()
