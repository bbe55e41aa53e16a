#!/usr/bin/env bash
# check_exports.sh LIB MAP — LIB's dynamic symbols are exactly those MAP lists: the C names
# (and mangled operators) as written, the C++ API by demangled name (MAP's extern "C++" block).
# Prints the difference and fails on any symbol missing or extra.
set -euo pipefail
lib=$1 map=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
nm -D --defined-only "$lib" | awk '{print $3}' > "$tmp/all"
# C++ API symbols are in namespace bitslab (_ZN7bitslab...); everything else is compared raw.
grep -v '^_ZN7bitslab' "$tmp/all" | sort > "$tmp/c.actual"
grep '^_ZN7bitslab' "$tmp/all" | c++filt | sort > "$tmp/cxx.actual"
sed -n '/extern "C++"/,/}/{/extern/d;p}' "$map" | grep -o '"[^"]*"' | tr -d '"' | sort > "$tmp/cxx.expected"
sed '/extern "C++"/,/}/d; s|/\*.*\*/||' "$map" | grep -v 'local:' |
  grep -o '[A-Za-z_][A-Za-z0-9_]*;' | tr -d ';' | sort > "$tmp/c.expected"
status=0
diff -u "$tmp/c.expected" "$tmp/c.actual" || status=1
diff -u "$tmp/cxx.expected" "$tmp/cxx.actual" || status=1
[ -s "$tmp/cxx.expected" ] || { echo "no C++ names read from $map"; status=1; }
echo "$(wc -l < "$tmp/c.actual") C symbols, $(wc -l < "$tmp/cxx.actual") C++ API symbols"
exit $status
