#!/usr/bin/env bash
# scripts/check-format passes a change written as clang-format writes it and fails one that is
# not, in a scratch git repository with this checkout's .clang-format; lines older than the
# .clang-format commit are not checked.
#   check_format_selftest.sh CHECK_FORMAT CLANG_FORMAT_FILE
set -uo pipefail
checker=$1 style=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
git init -q .
git() { command git -c user.name=selftest -c user.email=selftest@example.invalid "$@"; }
printf 'int  old_style( ){return 1;}\n' >old.cc  # before .clang-format: never checked
git add old.cc && git commit -qm old
cp "$style" .clang-format
git add .clang-format && git commit -qm style
failures=0
expect() {  # expect pass|fail NAME
  local status=0
  BITSLAB_FORMAT_ROOT=$work "$checker" >out.txt 2>&1 || status=$?
  local got=pass; (( status != 0 )) && got=fail
  if [[ $got != "$1" ]]; then echo "FAIL: $2: expected $1, got $got"; cat out.txt; failures=$((failures + 1));
  else echo "ok: $2 ($got)"; fi
}
printf 'int new_style() { return 2; }\n' >new.cc && git add new.cc && git commit -qm formatted
expect pass "a formatted change, and an old unformatted line"
printf 'int  bad( ){return 3;}\n' >>new.cc
expect fail "an unformatted line, uncommitted"
git commit -qam unformatted
expect fail "an unformatted line, committed"
exit $(( failures != 0 ))
