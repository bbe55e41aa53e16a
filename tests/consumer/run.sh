#!/usr/bin/env bash
# run.sh STEP BUILD_DIR WORK_DIR — the install and its consumers, one ctest entry per step:
#   install      cmake --install BUILD_DIR into WORK_DIR/prefix (a fresh one)
#   cmake        configure tests/consumer with find_package(bitslab) against that prefix only;
#                build and run consumer_shared (bitslab::bitslab), consumer_override
#                (bitslab::override) and toolkit_consumer (bitslab::toolkit)
#   pkg-config   compile consumer.cc with `pkg-config bitslab` and `pkg-config bitslab-override`
#                from the prefix, c_consumer.c (C, no C++ runtime) with the latter, and
#                toolkit_consumer.cc with `pkg-config bitslab-toolkit`; run all
#   bitslab-run  the installed wrapper finds the installed library and passes the exit status on;
#                --profile reports through the installed bitslab-profile
set -euo pipefail
# Output is captured before grep -q reads it: with pipefail, `cmd | grep -q` fails at random
# when grep exits at the first match and cmd dies of SIGPIPE.
step=$1 build_dir=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
prefix=$work/prefix
fail() { echo "consumer $step: FAILED: $*" >&2; exit 1; }

case "$step" in
  install)
    rm -rf "$prefix"
    cmake --install "$build_dir" --prefix "$prefix" >/dev/null
    for f in lib/libbitslab.so lib/libbitslab_override.a include/bitslab/bitslab.h bin/bitslab-run bin/bitslab-profile \
             lib/cmake/bitslab/bitslabConfig.cmake lib/pkgconfig/bitslab.pc lib/pkgconfig/bitslab-override.pc; do
      [ -e "$prefix/$f" ] || fail "$f was not installed"
    done
    grep -qx "prefix=$prefix" "$prefix/lib/pkgconfig/bitslab.pc" || fail "bitslab.pc does not name the prefix"
    for f in lib/libbitslab_toolkit.a include/bitslab/toolkit.h lib/pkgconfig/bitslab-toolkit.pc; do
      [ -e "$prefix/$f" ] || fail "$f was not installed"
    done
    # The toolkit is a library beside malloc, not a replacement: it must not define malloc.
    if grep -qw 'T malloc' <<<"$(nm --defined-only "$prefix/lib/libbitslab_toolkit.a" 2>/dev/null)"; then
      fail "libbitslab_toolkit.a defines malloc"
    fi
    echo "installed into $prefix"
    ;;
  cmake)
    out=$work/cmake-build
    rm -rf "$out"
    # The package registry is off, so only the prefix can supply bitslab.
    log=$(cmake -S "$here" -B "$out" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
          -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF 2>&1) || { echo "$log"; fail "configure"; }
    grep -q "consumer: bitslab 0.1.0 from $prefix/lib/cmake/bitslab" <<<"$log" ||
      { echo "$log"; fail "bitslab was not found in the prefix"; }
    cmake --build "$out" -j 2 >/dev/null || fail "build"
    grep -q "$prefix/lib/libbitslab.so" <<<"$(ldd "$out/consumer_shared")" ||
      fail "consumer_shared does not load the installed libbitslab.so"
    if grep -q libbitslab <<<"$(ldd "$out/consumer_override")"; then fail "consumer_override loads a shared bitslab"; fi
    "$out/consumer_shared" cmake-shared
    "$out/consumer_override" cmake-override
    "$out/toolkit_consumer" cmake-toolkit
    ;;
  pkg-config)
    out=$work/pkg-config-build
    rm -rf "$out" && mkdir -p "$out"
    export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
    libdir=$(pkg-config --variable=libdir bitslab)
    [ "$libdir" = "$prefix/lib" ] || fail "pkg-config gives libdir '$libdir'"
    # shellcheck disable=SC2046  # the flags are meant to split
    c++ -O2 -o "$out/consumer_shared" "$here/consumer.cc" $(pkg-config --cflags --libs bitslab) \
        -Wl,-rpath,"$libdir" || fail "compile against bitslab.pc"
    # shellcheck disable=SC2046
    c++ -O2 -o "$out/consumer_override" "$here/consumer.cc" $(pkg-config --cflags --libs bitslab-override) ||
        fail "compile against bitslab-override.pc"
    # shellcheck disable=SC2046
    cc -O2 -o "$out/c_consumer" "$here/c_consumer.c" $(pkg-config --cflags --libs bitslab-override) ||
        fail "compile a C program against bitslab-override.pc"
    if grep -q 'libstdc++' <<<"$(readelf -d "$out/c_consumer")"; then fail "the C program needs libstdc++"; fi
    # shellcheck disable=SC2046
    c++ -std=c++20 -O2 -o "$out/toolkit_consumer" "$here/toolkit_consumer.cc" \
        $(pkg-config --cflags --libs bitslab-toolkit) || fail "compile against bitslab-toolkit.pc"
    "$out/consumer_shared" pkg-config-shared
    "$out/consumer_override" pkg-config-override
    "$out/c_consumer"
    "$out/toolkit_consumer" pkg-config-toolkit
    ;;
  bitslab-run)
    run=$prefix/bin/bitslab-run
    # The wrapper preloads the installed library (not the build tree's)...
    maps=$("$run" cat /proc/self/maps)
    grep -q "$prefix/lib/libbitslab.so" <<<"$maps" || fail "the installed libbitslab.so is not mapped"
    grep -q "$prefix/lib/libbitslab-hardened.so" <<<"$("$run" --hardened cat /proc/self/maps)" ||
      fail "--hardened does not map the installed libbitslab-hardened.so"
    # ...passes the command's exit status through, and --stats prints at exit.
    set +e
    err=$("$run" --stats bash -c 'exit 7' 2>&1 >/dev/null)
    status=$?
    set -e
    [ $status -eq 7 ] || fail "exit status $status, expected 7"
    grep -q "^bitslab: stats, pid" <<<"$err" || { echo "$err"; fail "--stats printed no statistics"; }
    # --profile: the installed bitslab-profile reports on the command's profile, status kept.
    set +e
    err=$(cd "$work" && "$run" --profile=prof/run bash -c 'for i in $(seq 3000); do x=$x.$i; done; exit 5' 2>&1 >/dev/null)
    status=$?
    set -e
    [ $status -eq 5 ] || fail "--profile: exit status $status, expected 5"
    grep -q "allocated since start" <<<"$err" || { echo "$err"; fail "--profile printed no table"; }
    echo "installed bitslab-run: preloads $prefix/lib/libbitslab.so, exit status 7 passed through, --profile reports"
    ;;
  *) fail "unknown step (install, cmake, pkg-config, bitslab-run)" ;;
esac
