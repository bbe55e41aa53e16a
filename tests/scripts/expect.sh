#!/usr/bin/env bash
# Runs a command and passes only if it ended as expected: its exit status AND its output. CTest's
# PASS_REGULAR_EXPRESSION alone ignores the exit status, so a program that printed the expected
# line and then crashed, or whose stressor died, would pass; entries use this instead.
#
#   expect.sh [--status N] [--match ERE]... [--no-match ERE]... -- COMMAND [ARGS...]
#     --status N      the exit status required (default 0); a death by signal S is 128+S
#     --match ERE     a line of stdout+stderr must match (grep -E), for each one given
#     --no-match ERE  no line may match
# The command's output is passed through, so ctest's log shows it.
set -uo pipefail
status=0 matches=() no_matches=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --status) status=$2; shift 2 ;;
    --match) matches+=("$2"); shift 2 ;;
    --no-match) no_matches+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "expect.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[[ $# -gt 0 ]] || { echo "expect.sh: no command after --" >&2; exit 2; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" >"$out" 2>&1
got=$?
cat "$out"
fail=0
if [[ $got -ne $status ]]; then
  echo "expect.sh: '$1' exited with status $got, expected $status" >&2
  fail=1
fi
for re in "${matches[@]}"; do
  grep -Eq -- "$re" "$out" || { echo "expect.sh: no line matches /$re/" >&2; fail=1; }
done
for re in "${no_matches[@]}"; do
  ! grep -Eq -- "$re" "$out" || { echo "expect.sh: a line matches /$re/, which must not appear" >&2; fail=1; }
done
exit $fail
