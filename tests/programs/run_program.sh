#!/usr/bin/env bash
# Runs a real program with the allocator preloaded and checks its output.
#
# Usage: run_program.sh LIB PROGRAM TOOL
#   LIB      absolute path of libbitslab.so (it goes into LD_PRELOAD)
#   PROGRAM  python | gxx | git | sqlite3 | bash
#   TOOL     the program's executable, as found by CMake's find_program
#            (a *-NOTFOUND value makes the test fail, never skip)
#
# Each workload lives next to this script, with its expected output in
# <workload>.expected. The program's stdout must equal that file and its
# stderr must be empty (so that e.g. an ld.so "cannot be preloaded" warning,
# or a message from the allocator, fails the test).
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: $0 LIB PROGRAM TOOL" >&2
  exit 2
fi
LIB=$1
PROGRAM=$2
TOOL=$3
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

[[ $LIB == /* ]] || fail "the library path must be absolute (got '$LIB')"
[[ -f $LIB ]] || fail "library not found: $LIB"
[[ -x $TOOL ]] || fail "'$PROGRAM' executable not found (got '$TOOL'); install it (scripts/setup)"
LIB_REAL=$(readlink -f "$LIB")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bitslab-${PROGRAM}.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# run_preloaded NAME COMMAND...: runs COMMAND with the library preloaded,
# stdout to $WORK/NAME.out, stderr to $WORK/NAME.err; fails on a non-zero
# exit status or any stderr output.
run_preloaded() {
  local name=$1
  shift
  local status=0
  LD_PRELOAD=$LIB "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || status=$?
  if ((status != 0)); then
    if ((status > 128)); then
      echo "'$*' was killed by signal $((status - 128)) under LD_PRELOAD" >&2
    fi
    echo "--- stderr of $name:" >&2
    cat "$WORK/$name.err" >&2
    fail "$name: '$*' exited with status $status under LD_PRELOAD=$LIB"
  fi
  if [[ -s $WORK/$name.err ]]; then
    echo "--- stderr of $name:" >&2
    cat "$WORK/$name.err" >&2
    fail "$name: unexpected output on stderr under LD_PRELOAD=$LIB"
  fi
}

# check_output NAME EXPECTED_FILE [UNPRELOADED COMMAND...]: compares
# $WORK/NAME.out with the expected file. On a mismatch, runs the command
# again without the preload (if given) to tell an allocator bug from an
# outdated expected file.
check_output() {
  local name=$1 expected=$2
  shift 2
  if diff -u "$expected" "$WORK/$name.out" >"$WORK/$name.diff"; then
    echo "ok: $name"
    return 0
  fi
  echo "--- diff (expected vs. preloaded run) for $name:" >&2
  head -n 60 "$WORK/$name.diff" >&2
  if [[ $# -gt 0 ]]; then
    if "$@" 2>/dev/null | diff -q "$expected" - >/dev/null; then
      fail "$name: output differs under LD_PRELOAD but matches without it: allocator bug"
    else
      fail "$name: output differs even without LD_PRELOAD: $expected may be outdated for this system"
    fi
  fi
  fail "$name: output differs from $expected"
}

# The library must really be loadable: ld.so only warns and carries on when
# a preload fails, which would turn every test below into a test of glibc.
LD_PRELOAD=$LIB /bin/cat /proc/self/maps >"$WORK/maps" 2>"$WORK/maps.err" || true
if [[ -s $WORK/maps.err ]] || ! grep -qF "$LIB_REAL" "$WORK/maps"; then
  cat "$WORK/maps.err" >&2
  fail "$LIB is not mapped into a process started with LD_PRELOAD=$LIB"
fi

case $PROGRAM in
  python)
    export PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
    # Default allocator: objects > 512 bytes and all buffers come from malloc.
    # The script also checks that the library is mapped and that
    # bitslab_owns() agrees with the routing rules.
    run_preloaded python "$TOOL" "$HERE/python_workload.py" --expect-preload "$LIB_REAL"
    check_output python "$HERE/python_workload.expected" "$TOOL" "$HERE/python_workload.py"
    # PYTHONMALLOC=malloc: every object, however small, goes through malloc.
    run_preloaded python-malloc env PYTHONMALLOC=malloc "$TOOL" "$HERE/python_workload.py" \
      --expect-preload "$LIB_REAL"
    check_output python-malloc "$HERE/python_workload.expected" \
      env PYTHONMALLOC=malloc "$TOOL" "$HERE/python_workload.py"
    ;;
  gxx)
    # The whole toolchain (driver, cc1plus, as, collect2, ld) runs preloaded.
    run_preloaded gxx-compile "$TOOL" -std=c++17 -O1 \
      -o "$WORK/gxx_program" "$HERE/gxx_program.cc"
    [[ -x $WORK/gxx_program ]] || fail "g++ produced no executable"
    run_preloaded gxx-run "$WORK/gxx_program"
    check_output gxx-run "$HERE/gxx_program.expected" "$WORK/gxx_program"
    ;;
  git)
    # The workload script (bash, coreutils and every git process) runs preloaded.
    mkdir "$WORK/git"
    run_preloaded git "$BASH" "$HERE/git_workload.sh" "$TOOL" "$WORK/git"
    rm -rf "$WORK/git-plain" && mkdir "$WORK/git-plain"
    check_output git "$HERE/git_workload.expected" \
      "$BASH" "$HERE/git_workload.sh" "$TOOL" "$WORK/git-plain"
    ;;
  sqlite3)
    run_preloaded sqlite3 "$TOOL" "$WORK/test.db" <"$HERE/sqlite_workload.sql"
    rm -f "$WORK/plain.db"
    check_output sqlite3 "$HERE/sqlite_workload.expected" \
      "$TOOL" "$WORK/plain.db" <"$HERE/sqlite_workload.sql"
    ;;
  bash)
    run_preloaded bash "$TOOL" "$HERE/bash_workload.sh"
    check_output bash "$HERE/bash_workload.expected" "$TOOL" "$HERE/bash_workload.sh"
    ;;
  *)
    fail "unknown program '$PROGRAM' (expected python, gxx, git, sqlite3 or bash)"
    ;;
esac
