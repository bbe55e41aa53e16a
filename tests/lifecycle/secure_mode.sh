#!/usr/bin/env bash
# Secure execution: in a set-user-ID program every BITSLAB_* option is ignored (core/base/
# options.cc), as glibc ignores MALLOC_* tunables there.
#   secure_mode.sh PROGRAM    (tests/lifecycle/secure_program.c, linked with the static override)
# PROGRAM is copied to a scratch directory, made set-user-ID root, and run twice with options
# that would show (stats, verbose, leak report), that would write a file (the heap profile, into
# a directory anyone may write) and that would break it (BITSLAB_INJECT_OOM=0: every
# reservation fails):
#   - as root, not secure: the options take effect (the control: the verbose line, the exit
#     reports of a statically linked program, the profile's file, and malloc fails);
#   - as nobody (setpriv): AT_SECURE=1, no bitslab line at all, no file, every malloc succeeds.
# Needs root (to make the program set-user-ID); otherwise exits 77, which ctest reports as skipped.
set -uo pipefail
program=$1
if [[ $(id -u) != 0 ]]; then
  echo "secure_mode: needs root to make a set-user-ID program"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
cp "$program" "$dir/secure_program"
chown root:root "$dir/secure_program"
chmod 4755 "$dir/secure_program"
mkdir -m 1777 "$dir/out"
options=(BITSLAB_SHOW_STATS=1 BITSLAB_VERBOSE=1 BITSLAB_LEAK_CHECK=1 BITSLAB_INJECT_OOM=0
         BITSLAB_PROFILE=1 BITSLAB_PROFILE_PREFIX="$dir/out/profile")
profile_only=(BITSLAB_PROFILE=1 BITSLAB_PROFILE_PREFIX="$dir/out/profile")
failures=0

control=$(env "${options[@]}" "$dir/secure_program" 2>&1)
echo "--- as root (not secure):"; echo "$control"
# (Not anchored: with every malloc failing, stdio has no buffer and its line runs into the next.)
grep -q 'at_secure=0 malloc failed' <<<"$control" || { echo "FAIL: the control should run unsecured with malloc failing"; failures=$((failures + 1)); }
for line in '^bitslab: default build, pid' 'bitslab: stats, pid' '^bitslab: leak check:'; do
  grep -q "$line" <<<"$control" || { echo "FAIL: the control printed no line matching $line: an option did not take effect"; failures=$((failures + 1)); }
done

# The profiler cannot start while every reservation fails (loading the unwinder allocates):
# its control runs without the injection.
env "${profile_only[@]}" "$dir/secure_program" >/dev/null 2>&1
ls "$dir"/out/profile.*.heap >/dev/null 2>&1 || { echo "FAIL: the control wrote no heap profile: BITSLAB_PROFILE did not take effect"; failures=$((failures + 1)); }
rm -f "$dir"/out/*

secure=$(env "${options[@]}" setpriv --reuid=65534 --regid=65534 --clear-groups "$dir/secure_program" 2>&1)
echo "--- set-user-ID root, run by nobody (secure):"; echo "$secure"
[[ $secure == "at_secure=1 malloc ok" ]] || { echo "FAIL: in secure mode the output must be exactly 'at_secure=1 malloc ok'"; failures=$((failures + 1)); }
if ls "$dir"/out/* >/dev/null 2>&1; then
  echo "FAIL: in secure mode the profiler wrote $(ls "$dir"/out)"; failures=$((failures + 1))
fi
exit $(( failures != 0 ))
